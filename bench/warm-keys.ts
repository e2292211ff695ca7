/**
 * Sends exactly one request for each key `ser.bench-0 … ser.bench-<N-1>` (autocannon's API with a
 * request count: wrk can stop a thread early but still waits out its duration). Runs in its own
 * process: node --import tsx bench/warm-keys.ts URL N CONNECTIONS; prints one JSON line.
 */
import autocannon from 'autocannon'

const [url, n, connections] = process.argv.slice(2)
const N = Number(n)
let i = 0
const t = performance.now()
const result = await autocannon({
  url: url!,
  connections: Number(connections ?? 50),
  amount: N,
  timeout: 30,
  requests: [{ setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'x-environment-key': `ser.bench-${i++ % N}` } }) }]
})
process.stdout.write(JSON.stringify({ seconds: (performance.now() - t) / 1000, requests: result.requests.total, non2xx: result.non2xx, errors: result.errors }) + '\n')
