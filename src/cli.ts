#!/usr/bin/env node
/**
 * `flaggate <command>`: the package's bin. The commands live in src/cli/, one file per group;
 * src/cli/program.ts holds the table of commands and options.
 */
import { run } from './cli/program.js'

await run(process.argv.slice(2))
