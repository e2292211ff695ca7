/**
 * The delaying TCP proxy (bench/support/delay-proxy.ts) as a process, to put in front of the
 * real Core's PostgreSQL:
 *
 *   node --import tsx bench/delay-proxy.ts --target 127.0.0.1:5432 --port 15432 --control-port 15433 [--delay-ms 0]
 *
 * prints one JSON line `{"port", "target", "control", "delayMs"}` and runs until SIGTERM/SIGINT.
 * Then start Core with DATABASE_URL=postgresql://…@127.0.0.1:15432/… and drive the delay with
 * `curl -XPOST -d '{"delayMs":30}' http://127.0.0.1:15433/delay` or a scenario's
 * `--db-delay-proxy http://127.0.0.1:15433`.
 */
import { parseArgs } from 'node:util'
import { startDelayProxy } from './support/delay-proxy.js'

const { values } = parseArgs({
  options: {
    target: { type: 'string', default: '127.0.0.1:5432' },
    port: { type: 'string', default: '0' },
    'control-port': { type: 'string', default: '0' },
    'delay-ms': { type: 'string', default: '0' }
  }
})
const m = /^(.+):(\d+)$/.exec(values.target)
if (m === null) {
  process.stderr.write(`--target must be HOST:PORT, got ${values.target}\n`)
  process.exit(2)
}
const proxy = await startDelayProxy({
  targetHost: m[1]!, targetPort: Number(m[2]),
  port: Number(values.port), controlPort: Number(values['control-port']), delayMs: Number(values['delay-ms'])
})
process.stdout.write(JSON.stringify({ port: proxy.port, target: values.target, control: proxy.controlUrl, delayMs: proxy.delay() }) + '\n')
const stop = (): void => { void proxy.close().then(() => process.exit(0)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
