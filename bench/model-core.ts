/**
 * The gunicorn-like Core model (test/support/gunicorn-core.ts) in its own process, for the
 * scenarios' `--core model`: prints {"url", "control"} and serves until killed. The control
 * listener: `GET /stats` (the model's counters, with `busy` for the scenarios), `POST /db`
 * (JSON `{"dbLatencyMs": n}`), `POST /reset`.
 *
 * EXTRA_KEYS (default 0: more environments with client keys fair_key_0…), WORKERS (default 2), BACKLOG (default 2048, gunicorn's), DB_LATENCY_MS (default 1), APP_SCALE (multiplies the
 * per-endpoint time outside the database; default 1)
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { DEFAULT_APP_MS, startGunicornCore, type CoreEndpoint } from '../test/support/gunicorn-core.js'
import { defaultEnvironments } from '../test/support/fake-flagsmith.js'

const scale = Number(process.env.APP_SCALE ?? 1)
const appMs = Object.fromEntries(Object.entries(DEFAULT_APP_MS).map(([k, v]) => [k, v * scale])) as Record<CoreEndpoint, number>
// EXTRA_KEYS=n: n more environments, client keys fair_key_0 … fair_key_{n-1} (bench/fairness.ts)
const extra = Number(process.env.EXTRA_KEYS ?? 0)
const base = defaultEnvironments()
const envs = extra > 0 ? [...base, ...Array.from({ length: extra }, (_, i) => ({ ...base[0]!, id: 1000 + i, name: `fair ${i}`, clientKey: `fair_key_${i}`, serverKeys: [`ser.fair_key_${i}`] }))] : undefined
const core = await startGunicornCore({
  ...(envs === undefined ? {} : { fake: { envs } }),
  workers: Number(process.env.WORKERS ?? 2),
  backlog: Number(process.env.BACKLOG ?? 2048),
  dbLatencyMs: Number(process.env.DB_LATENCY_MS ?? 1),
  appMs
})
const control = http.createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const reply = (status: number, body: unknown): void => { res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body)) }
    try {
      if (req.method === 'POST' && req.url === '/db') core.setDbLatency((JSON.parse(Buffer.concat(chunks).toString()) as { dbLatencyMs: number }).dbLatencyMs)
      else if (req.method === 'POST' && req.url === '/reset') core.reset()
      else if (!(req.method === 'GET' && req.url === '/stats')) { reply(404, { error: 'GET /stats, POST /db, POST /reset' }); return }
    } catch (err) { reply(400, { error: (err as Error).message }); return }
    const s = core.stats()
    reply(200, { ...s, maxBusySeen: s.maxBusySeen, requests: s.accepted + s.refused })
  })
})
await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve))
process.stdout.write(JSON.stringify({ url: core.url, control: `http://127.0.0.1:${(control.address() as AddressInfo).port}` }) + '\n')
process.on('SIGTERM', () => { control.close(); void core.close().then(() => process.exit(0)) })
