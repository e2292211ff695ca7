/**
 * The command line: every command, its options and its help, in one table.
 *
 * commander rather than `node:util parseArgs`: parseArgs parses one flat list of options and
 * throws Node errors (ERR_PARSE_ARGS_UNKNOWN_OPTION) the caller must catch and word itself, with
 * no help, no "did you mean" for a mistyped command and no check of missing values or extra
 * arguments per subcommand. commander gives each subcommand its own options, `--help` and usage,
 * required options, choices, excess-argument errors and suggestions, and `exitOverride` lets
 * every usage error end the same way: the message, the command's usage on stderr, exit 2 (as
 * kubectl and `nginx -t` do), never a stack trace.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { VERSION } from './version.js'
import { DEFAULT_ADMIN_URL } from './admin-client.js'
import { DEFAULT_CONFIG, serve } from './serve.js'
import { validate } from './validate.js'
import { explain, METHODS, parseIpOption } from './explain.js'
import { purge, status } from './status.js'
import { block, blocks, top, unblock } from './blocks.js'
import { parseCidr } from '../shared/ip-index.js'
import { parseClient } from '../top/top-clients.js'
import { parseDuration } from '../shared/units.js'

/** exit status of bad arguments: usage, as opposed to 1, a failed operation */
export const USAGE_EXIT = 2

const adminOption = (): Option => new Option('--admin <url>', `admin API of the gateway (default $FLAGGATE_ADMIN_URL or ${DEFAULT_ADMIN_URL}); the token is read from $FLAGGATE_ADMIN_TOKEN`)

/** commander's argParser contract: return the value or throw InvalidArgumentError (reported as usage, exit 2) */
function checked<T> (parse: (v: string) => T): (v: string) => T {
  return (v) => {
    try { return parse(v) } catch (err) { throw new InvalidArgumentError((err as Error).message) }
  }
}

function positiveInt (max: number): (v: string) => number {
  return checked((v) => {
    if (!/^\d{1,6}$/.test(v) || Number(v) < 1 || Number(v) > max) throw new Error(`must be a whole number from 1 to ${max}`)
    return Number(v)
  })
}

// block's --ip and --ttl are checked here, as explain's --ip is, so a typo is a usage error even
// with no gateway running; the admin API checks them again (and the ttl's bounds) when it is
const ipOrCidr = checked((v) => {
  if (parseCidr(v) === undefined) throw new Error(`"${v}" is not an IP address or CIDR block (such as 203.0.113.7, 203.0.113.0/24 or 2001:db8::/32)`)
  return v
})
// --client is `top`'s CLIENT column: KEY@ADDRESS (blocks the key) or an ADDRESS
const topClient = checked((v) => {
  if (parseClient(v) === undefined) throw new Error(`"${v}" is not a client of \`flaggate top\` (KEY@ADDRESS, such as ser.abc@203.0.113.7, or an address)`)
  return v
})
const duration = checked((v) => {
  if (parseDuration(v) === undefined) throw new Error(`"${v}" is not a duration (such as 30s, 15m, 2h or 7d); leave --ttl out for a block that lasts until lifted`)
  return v
})

const method = checked((v) => {
  const m = v.toUpperCase()
  if (!METHODS.includes(m)) throw new Error(`must be one of ${METHODS.join(', ')}`)
  return m
})

const collect = (v: string, previous: string[] | undefined): string[] => [...(previous ?? []), v]

export function buildProgram (): Command {
  const program = new Command('flaggate')
    .description('A rate-limiting reverse proxy gateway for the Flagsmith Core API.')
    .version(VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'print the help')
    .helpCommand('help [command]', 'print the help of a command')
    .addHelpText('after', `
Operator commands (status, purge, block, unblock, blocks, top) talk to the admin API at --admin URL
(default $FLAGGATE_ADMIN_URL or ${DEFAULT_ADMIN_URL}) with the token in $FLAGGATE_ADMIN_TOKEN.
Exit status: 0 ok, 1 the operation failed (invalid policy, admin API unreachable or refusing),
2 bad arguments.`)
    .showHelpAfterError()
    .showSuggestionAfterError()

  program.command('serve')
    .description('run the gateway until SIGTERM/SIGINT (drain, exit 0); SIGHUP reloads the policy')
    .option('-c, --config <file>', `policy file (default $FLAGGATE_CONFIG or ${DEFAULT_CONFIG})`)
    .addHelpText('after', '\nexample: flaggate serve --config config/gateway.yaml')
    .action(async (opts: { config?: string }) => { await serve(opts) })

  program.command('validate')
    .description('check policy files without starting anything; every error as FILE:LINE:COL: PATH: message')
    .argument('<file...>', 'policy files (YAML)')
    .addHelpText('after', '\nexit status: 0 when every file is valid, 1 when any is invalid\nexample: flaggate validate config/gateway.yaml deploy/compose/policy/*.yaml\n  (a policy that reads ${VAR} without a default is invalid while VAR is unset: set it as the deployment does)')
    .action((files: string[]) => { validate(files) })

  program.command('explain')
    .description('which route, upstream, limits and cache rule apply to one request (no gateway needed)')
    .option('-c, --config <file>', `policy file (default $FLAGGATE_CONFIG or ${DEFAULT_CONFIG})`)
    .requiredOption('--path <path>', 'request path, with its query if any, e.g. /api/v1/flags/')
    .option('--key <key>', 'environment key the client sends (X-Environment-Key)')
    .addOption(new Option('--method <method>', `HTTP method (${METHODS.join(', ')})`).default('GET').argParser(method))
    .addOption(new Option('--ip <address>', 'client address as the gateway would see it').argParser(checked(parseIpOption)))
    .addHelpText('after', '\nexample: flaggate explain --key ser.abc --path /api/v1/environment-document/')
    .action((opts: { config?: string; key?: string; path: string; method: string; ip?: string }) => { explain(opts) })

  program.command('status')
    .description('policy, store, upstreams, traffic, breakers, cache, blocks and probes of a running gateway')
    .addOption(adminOption())
    .option('--json', 'print the admin API\'s answer as JSON, for scripts')
    .action(async (opts: { admin?: string; json?: boolean }) => { await status(opts) })

  program.command('purge')
    .description('drop cached environment documents (one key, or all)')
    .addOption(adminOption())
    .option('--key <key>', 'only the documents of this environment key')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (opts: { admin?: string; key?: string; reason?: string }) => { await purge(opts) })

  program.command('block')
    .description('block a client (exactly one of --key, --ip, --user-agent, --client)')
    .addOption(adminOption())
    .option('--key <key>', 'an environment key')
    .addOption(new Option('--ip <ip-or-cidr>', 'an address or CIDR block').argParser(ipOrCidr))
    .option('--user-agent <regex>', 'a User-Agent pattern')
    .addOption(new Option('--client <client>', 'the CLIENT column of `flaggate top` (KEY@IP blocks the key)').argParser(topClient))
    .option('--route <name>', 'only on this route (repeatable; default every route)', collect)
    .addOption(new Option('--ttl <duration>', 'lift it after this long, e.g. 1h (default: until lifted)').argParser(duration))
    .requiredOption('--reason <text>', 'why (logged and listed by `flaggate blocks`)')
    .option('--public-reason <text>', 'what the blocked client is told')
    .addHelpText('after', '\nexample: flaggate block --key ser.abc --ttl 1h --reason "runaway loop, ticket 123"')
    .action(async (opts: Parameters<typeof block>[0]) => { await block(opts) })

  program.command('unblock')
    .description('lift a runtime or automatic block (IDs from `flaggate blocks`)')
    .argument('<id>', 'block ID')
    .addOption(adminOption())
    .option('--reason <text>', 'why, for the audit log')
    .action(async (id: string, opts: { admin?: string; reason?: string }) => { await unblock(id, opts) })

  program.command('blocks')
    .description('list the blocks in force')
    .addOption(adminOption())
    .action(async (opts: { admin?: string }) => { await blocks(opts) })

  program.command('top')
    .description('the busiest clients of the last minute on this gateway')
    .addOption(adminOption())
    .addOption(new Option('--by <what>', 'rank by').choices(['requests', 'rejections']).default('requests'))
    .addOption(new Option('--limit <n>', 'how many clients (1 to 1000)').default(10).argParser(positiveInt(1000)))
    .action(async (opts: { admin?: string; by: string; limit: number }) => { await top(opts) })

  // every usage problem of every command ends in run() below, with exit 2
  for (const c of [program, ...program.commands]) c.exitOverride()
  return program
}

/** Parses and runs; a usage error exits 2 (commander has printed the message and the usage). */
export async function run (argv: string[]): Promise<void> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv, { from: 'user' })
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err
    // --help, `help [command]`, --version: printed on stdout, success (commander's own exit code
    // is 0 for those; `flaggate` alone prints the help on stderr with 1, a usage error here)
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || (err.code === 'commander.help' && err.exitCode === 0)) process.exit(0)
    process.exit(USAGE_EXIT)
  }
}
