/**
 * An open-loop load generator in its own process: requests arrive at a fixed rate whatever
 * happens to the earlier ones (as SDK polls and page views do), each with a client timeout after
 * which the client gives up. Prints one JSON line per second and a summary line at the end.
 *
 * Written here rather than using autocannon because overload is exactly where autocannon measures
 * the wrong thing: its connections are closed-loop (a slow answer slows the offered load down, so
 * a collapsing server is offered less), and it reports totals, not goodput per second by status.
 *
 * A client "gives up" after TIMEOUT_MS: an answer that comes later counts as a timeout, never as
 * goodput. The socket is not torn down at that moment (that would cost a connect per request and
 * starve this process on a busy two-core machine, under-reporting everyone); the servers behind
 * do the same work either way, since neither Core nor the proxies stop a request whose client left.
 *
 * Env: URL (origin), PATHS (comma-separated, used in turn), HEADERS (JSON), RATE (requests/s),
 * DURATION_S, TIMEOUT_MS (client gives up), CONNECTIONS (sockets at most); CLIENTS (default 1):
 * requests say they come from that many client addresses in turn (X-Forwarded-For, believed by a
 * gateway whose trustedProxies include loopback: the breaker's trip needs 3 distinct clients, as
 * real traffic has); KEYS (comma-separated): environment keys used in turn.
 */
import { Pool } from 'undici'

const url = process.env.URL!
const paths = (process.env.PATHS ?? '/').split(',')
const headers = JSON.parse(process.env.HEADERS ?? '{}') as Record<string, string>
const rate = Number(process.env.RATE ?? 100)
const durationS = Number(process.env.DURATION_S ?? 10)
const timeoutMs = Number(process.env.TIMEOUT_MS ?? 1000)
const connections = Number(process.env.CONNECTIONS ?? 1000)
const clients = Number(process.env.CLIENTS ?? 1)
const keys = process.env.KEYS === undefined || process.env.KEYS === '' ? undefined : process.env.KEYS.split(',')

/** One second of sending, and what became of the requests sent in it. */
export interface Second {
  t: number
  sent: number
  /** 2xx answered within the client's timeout: the goodput */
  good: number
  /** answers by status (within the timeout) */
  status: Record<string, number>
  /** gave up waiting */
  timeouts: number
  /** connection errors */
  errors: number
  p50: number | null
  p99: number | null
}

const pool = new Pool(url, { connections, pipelining: 1, headersTimeout: 0, bodyTimeout: 0 })
// one request before the clock starts: undici loads its parts lazily, on the first request
await (await pool.request({ path: '/healthz', method: 'GET' })).body.dump()
const seconds: Second[] = []
const latencies: number[][] = []
const started = performance.now()
const secondOf = (at: number): Second => {
  const i = Math.floor((at - started) / 1000)
  latencies[i] ??= []
  return seconds[i] ??= { t: i + 1, sent: 0, good: 0, status: {}, timeouts: 0, errors: 0, p50: null, p99: null }
}

let n = 0
async function one (): Promise<void> {
  const path = paths[n % paths.length]!
  const h = clients <= 1 && keys === undefined ? headers : { ...headers }
  if (clients > 1) h['x-forwarded-for'] = `10.${(n % clients) >> 16 & 255}.${(n % clients) >> 8 & 255}.${n % clients & 255}`
  if (keys !== undefined) h['x-environment-key'] = keys[n % keys.length]!
  n++
  const t0 = performance.now()
  // every outcome is booked to the second the request was sent in: sent = answered + gave up + errors
  const s = secondOf(t0)
  s.sent++
  try {
    const res = await pool.request({ path, method: 'GET', headers: h })
    await res.body.dump()
    const t1 = performance.now()
    // an answer later than the timeout is one the client had already given up on
    if (t1 - t0 > timeoutMs) { s.timeouts++; return }
    s.status[res.statusCode] = (s.status[res.statusCode] ?? 0) + 1
    if (res.statusCode >= 200 && res.statusCode < 300) { s.good++; latencies[s.t - 1]!.push(t1 - t0) }
  } catch (err) {
    if (performance.now() - t0 > timeoutMs || (err as { code?: string }).code === 'UND_ERR_DESTROYED') s.timeouts++
    else s.errors++
  }
}

function pct (xs: number[], p: number): number | null {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  return Math.round(s[Math.max(0, Math.ceil(p * s.length) - 1)]! * 10) / 10
}

const inflight = new Set<Promise<void>>()
let credit = 0
let last = performance.now()
let printed = 0
const flush = (upTo: number): void => {
  for (; printed < upTo && printed < seconds.length; printed++) {
    const s = seconds[printed] ?? { t: printed + 1, sent: 0, good: 0, status: {}, timeouts: 0, errors: 0, p50: null, p99: null }
    s.p50 = pct(latencies[printed] ?? [], 0.5)
    s.p99 = pct(latencies[printed] ?? [], 0.99)
    process.stdout.write(JSON.stringify(s) + '\n')
  }
}
const tick = setInterval(() => {
  const now = performance.now()
  if (now - started >= durationS * 1000) return
  credit += ((now - last) / 1000) * rate
  last = now
  for (; credit >= 1; credit--) {
    const p = one()
    inflight.add(p)
    void p.finally(() => inflight.delete(p))
  }
  // a second is complete once every request sent in it has had its timeout to answer
  flush(Math.floor((now - started - timeoutMs) / 1000))
}, 5)

await new Promise((resolve) => setTimeout(resolve, durationS * 1000))
clearInterval(tick)
// whatever is still open after everyone's timeout has passed will not count: cut it
await Promise.race([Promise.all(inflight), new Promise((resolve) => setTimeout(resolve, timeoutMs + 100))])
await pool.destroy()
await Promise.all(inflight)
flush(Infinity)
const whole = seconds.filter((s) => s.t <= durationS)
const total = (f: (s: Second) => number): number => whole.reduce((a, s) => a + f(s), 0)
process.stdout.write(JSON.stringify({
  summary: {
    rate, durationS, timeoutMs,
    sent: total((s) => s.sent),
    good: total((s) => s.good),
    goodput: total((s) => s.good) / durationS,
    timeouts: total((s) => s.timeouts),
    errors: total((s) => s.errors),
    status: whole.reduce<Record<string, number>>((a, s) => { for (const [k, v] of Object.entries(s.status)) a[k] = (a[k] ?? 0) + v; return a }, {}),
    p50: pct(latencies.flat(), 0.5),
    p99: pct(latencies.flat(), 0.99)
  }
}) + '\n')
