// The module-resolution hook of record-imports.mjs (runs on Node's loader thread).
import { appendFileSync } from 'node:fs'

export async function resolve (specifier, context, next) {
  const resolved = await next(specifier, context)
  const file = process.env.RECORD_IMPORTS_FILE
  const match = process.env.RECORD_IMPORTS_MATCH
  if (file !== undefined && match !== undefined && resolved.url.includes(match)) appendFileSync(file, resolved.url + '\n')
  return resolved
}
