/** The baseline: a bare @fastify/http-proxy in front of the same upstream, nothing else. */
import Fastify from 'fastify'
import httpProxy from '@fastify/http-proxy'

const upstream = process.env.UPSTREAM_URL
if (upstream === undefined) throw new Error('UPSTREAM_URL is required')
const app = Fastify({ logger: false })
await app.register(httpProxy, { upstream, undici: { connections: 128, pipelining: 1 } })
await app.listen({ host: '127.0.0.1', port: 0 })
const addr = app.server.address() as { port: number }
process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${addr.port}` }) + '\n')
process.on('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
