// `node --import ./test/support/record-imports.mjs …`: appends to $RECORD_IMPORTS_FILE the URL of
// every module the process resolves whose URL contains $RECORD_IMPORTS_MATCH. For tests that a
// part of the gateway is not loaded at all unless the policy asks for it.
import { register } from 'node:module'

register('./record-imports-hooks.mjs', import.meta.url)
