/**
 * Sends one request for each key `ser.bench-<FROM>  … ser.bench-<N-1>` (autocannon's API with a
 * request count: wrk can stop a thread early but still waits out its duration), or as many as fit
 * in MAX_SECONDS. FROM (default 0) skips the keys an earlier pass already sent. Runs in its own
 * process and prints one JSON line:
 *   node --import tsx bench/warm-keys.ts URL N CONNECTIONS [MAX_SECONDS] [FROM]
 */
import autocannon from 'autocannon'

const [url, n, connections, maxSeconds, from] = process.argv.slice(2)
const N = Number(n)
const FROM = Math.min(N - 1, Number(from ?? 0))
const COUNT = N - FROM
let i = FROM
const t = performance.now()
const instance = autocannon({
  url: url!,
  // autocannon refuses more connections than requests
  connections: Math.min(COUNT, Number(connections ?? 50)),
  amount: COUNT,
  timeout: 30,
  requests: [{ setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'x-environment-key': `ser.bench-${i++ % N}` } }) }]
}, (err, result) => {
  if (err !== null && err !== undefined) throw err
  process.stdout.write(JSON.stringify({ seconds: (performance.now() - t) / 1000, requests: result.requests.total, non2xx: result.non2xx, errors: result.errors }) + '\n')
})
if (maxSeconds !== undefined && maxSeconds !== '') setTimeout(() => { instance.stop() }, Number(maxSeconds) * 1000).unref()
