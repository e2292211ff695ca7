/**
 * A closed-loop load client in its own process: CONNECTIONS clients, each sending its next request
 * as soon as its previous one is answered, for DURATION_S. What a server can sustain when nobody
 * queues in front of it: Core's capacity. Prints one JSON line `{rps, requests, status, errors}`.
 *
 * Used instead of autocannon against servers that close every connection (gunicorn sync workers
 * answer `Connection: close`): autocannon counts each reconnect as an error and its latencies there
 * are meaningless. undici reconnects after a `Connection: close` as any HTTP client does.
 *
 * Env: URL (origin), PATHS (comma-separated, used in turn), HEADERS (JSON), CONNECTIONS, DURATION_S.
 */
import { Pool } from 'undici'

const url = process.env.URL!
const paths = (process.env.PATHS ?? '/').split(',')
const headers = JSON.parse(process.env.HEADERS ?? '{}') as Record<string, string>
const connections = Number(process.env.CONNECTIONS ?? 4)
const durationS = Number(process.env.DURATION_S ?? 5)

const pool = new Pool(url, { connections, pipelining: 1 })
const status: Record<string, number> = {}
let ok = 0
let errors = 0
let n = 0
const started = performance.now()
const end = started + durationS * 1000

async function client (): Promise<void> {
  while (performance.now() < end) {
    const path = paths[n++ % paths.length]!
    try {
      const res = await pool.request({ path, method: 'GET', headers })
      await res.body.dump()
      status[res.statusCode] = (status[res.statusCode] ?? 0) + 1
      if (res.statusCode >= 200 && res.statusCode < 300) ok++
    } catch {
      errors++
    }
  }
}

await Promise.all(Array.from({ length: connections }, client))
const seconds = (performance.now() - started) / 1000
await pool.close()
process.stdout.write(JSON.stringify({ rps: ok / seconds, requests: ok, status, errors, seconds }) + '\n')
