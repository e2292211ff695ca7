/**
 * The flag-list bench's load generator, in its own process so that its CPU is not the bench
 * orchestrator's (the earlier in-process generator shared one event loop with the bookkeeping and
 * fell to 115-230 polls/s on a busy machine).
 *
 * `browsers` clients each poll `GET flags/` with one client key once a second, round-robin over the
 * given gateway URLs, one request at a time per browser, keep-alive. Each browser keeps a fixed
 * schedule (start + offset + n seconds) rather than sleeping "1 s minus the last latency", so a slow
 * answer delays one poll, not every later one; a browser whose answer took longer than its period
 * polls again at once (as a browser's setInterval would queue it), never twice at the same time.
 *
 * Usage: node --import tsx bench/poll-browsers.ts <seconds> <browsers> <key> <path> <url> [url...]
 * Prints one JSON line: { sent, failed, seconds, perSecond: number[], p99Ms }.
 */
import { Agent, request } from 'undici'

const [secondsArg, browsersArg, key, path, ...urls] = process.argv.slice(2)
const SECONDS = Number(secondsArg)
const BROWSERS = Number(browsersArg)
if (!(SECONDS > 0) || !(BROWSERS > 0) || key === undefined || path === undefined || urls.length === 0) {
  console.error('usage: poll-browsers.ts <seconds> <browsers> <key> <path> <url> [url...]')
  process.exit(2)
}

// One socket per browser at most (a browser keeps its own keep-alive connection); fewer are used
// when answers are fast, since a poll finishes well before the next browser's turn.
const agent = new Agent({ connections: BROWSERS, pipelining: 1, keepAliveTimeout: 30_000 })
const start = Date.now() + 200
const end = start + SECONDS * 1000
const perSecond = new Array<number>(Math.ceil(SECONDS)).fill(0)
const latencies: number[] = []
let sent = 0
let failed = 0

const sleepUntil = async (t: number): Promise<void> => { const d = t - Date.now(); if (d > 0) await new Promise((resolve) => setTimeout(resolve, d)) }

await Promise.all(Array.from({ length: BROWSERS }, async (_, i) => {
  const offset = (i * 1000) / BROWSERS
  for (let n = 0; ; n++) {
    const due = start + offset + n * 1000
    if (due >= end) return
    await sleepUntil(due)
    const t = Date.now()
    try {
      const r = await request(urls[(i + n) % urls.length]! + path, { dispatcher: agent, headers: { 'x-environment-key': key, 'accept-encoding': 'gzip, deflate, br' } })
      await r.body.dump()
      if (r.statusCode !== 200) failed++
    } catch { failed++ }
    sent++
    latencies.push(Date.now() - t)
    const s = Math.floor((t - start) / 1000)
    if (s >= 0 && s < perSecond.length) perSecond[s]!++
  }
}))
const seconds = (Date.now() - start) / 1000
await agent.close()
latencies.sort((a, b) => a - b)
console.log(JSON.stringify({ sent, failed, seconds, perSecond, p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? null }))
