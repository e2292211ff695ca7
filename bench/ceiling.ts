/**
 * The ceiling: a bare fastify answering the environment document from memory with the headers
 * flaggate sends on a HIT, and nothing else. It copies bytes and headers from a flaggate HIT at
 * start (GATEWAY_URL), so both answer exactly the same thing.
 *
 * TURN=1: the answers are written at the end of the event-loop turn that read their requests,
 * one setImmediate per turn, as flaggate writes its answers from memory (cache/plugin.ts
 * TurnWriter): the like-for-like reference for that scheduling.
 */
import Fastify, { type FastifyReply } from 'fastify'

const gateway = process.env.GATEWAY_URL
const key = process.env.ENV_KEY ?? 'ser.dev_server_key'
if (gateway === undefined) throw new Error('GATEWAY_URL is required')
const PATH = '/api/v1/environment-document/'
const res = await fetch(gateway + PATH, { headers: { 'x-environment-key': key } })
const body = Buffer.from(await res.arrayBuffer())
const headers: Record<string, string> = {}
res.headers.forEach((v, k) => { if (k !== 'content-length' && k !== 'date' && k !== 'connection' && k !== 'keep-alive') headers[k] = v })

const app = Fastify({ logger: false })
if (process.env.TURN === '1') {
  let pending: FastifyReply[] = []
  const flush = (): void => {
    const replies = pending
    pending = []
    for (const reply of replies) void reply.headers(headers).send(body)
  }
  app.get(PATH, (_req, reply) => {
    if (pending.push(reply) === 1) setImmediate(flush)
    return reply
  })
} else {
  app.get(PATH, (_req, reply) => { void reply.headers(headers).send(body) })
}
await app.listen({ host: '127.0.0.1', port: 0 })
const addr = app.server.address() as { port: number }
process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${addr.port}`, bytes: body.length, headers: Object.keys(headers) }) + '\n')
process.on('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
