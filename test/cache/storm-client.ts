/**
 * The buggy SDK fleet of the 2022 outage, in its own process so that its event loop is not the
 * one serving the requests: each client sends a request, gives up after a few milliseconds, and
 * asks again at once, until the fleet has made `attempts` attempts (or `maxMs` has passed, so a
 * wedged target cannot hold it forever). The storm is a number of attempts, not a duration: how
 * many attempts a busy machine manages in a given time is not what the test is about. Prints one
 * JSON line `{sent, answered, timedOut, errors, ms}` and exits.
 *
 * node --import tsx test/cache/storm-client.ts <baseUrl> <path> <clients> <attempts> <maxMs> <timeoutMs> <key,key,...>
 */
import http from 'node:http'

const [base, path, clientsArg, attemptsArg, maxMsArg, timeoutArg, keysArg] = process.argv.slice(2)
if (base === undefined || path === undefined || keysArg === undefined) {
  process.stderr.write('usage: storm-client <baseUrl> <path> <clients> <attempts> <maxMs> <timeoutMs> <keys>\n')
  process.exit(2)
}
const clients = Number(clientsArg)
const attempts = Number(attemptsArg)
const maxMs = Number(maxMsArg)
const timeoutMs = Number(timeoutArg)
const keys = keysArg.split(',')
const u = new URL(base)
const r = { sent: 0, answered: 0, timedOut: 0, errors: 0, ms: 0 }

async function client (key: string, until: number, agent: http.Agent): Promise<void> {
  while (r.sent < attempts && Date.now() < until) {
    r.sent++
    await new Promise<void>((resolve) => {
      let done = false
      const finish = (): void => { if (!done) { done = true; clearTimeout(timer); resolve() } }
      const req = http.request({ host: u.hostname, port: u.port, path, headers: { 'x-environment-key': key }, agent }, (res) => {
        res.resume()
        res.on('end', () => { if (!done) r.answered++; finish() })
        res.on('error', finish)
      })
      // the bug: a timeout meant in seconds, taken as milliseconds; the socket goes with it. The
      // clock starts once the request is on the wire: with dozens of clients in one process a timer
      // armed before the connect would fire before the request was ever written, which no fleet of
      // separate SDK processes does
      let timer: NodeJS.Timeout | undefined
      req.on('finish', () => { timer = setTimeout(() => { if (!done) { r.timedOut++; req.destroy() } finish() }, timeoutMs) })
      req.on('error', () => { if (!done) r.errors++; finish() })
      req.end()
    })
  }
}

const started = Date.now()
const until = started + maxMs
const agents = Array.from({ length: clients }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }))
await Promise.all(agents.map(async (agent, i) => { await client(keys[i % keys.length]!, until, agent) }))
for (const a of agents) a.destroy()
r.ms = Date.now() - started
process.stdout.write(`${JSON.stringify(r)}\n`)
