/**
 * The first hook of every request: take the policy snapshot once, canonicalise the target and
 * match the route (policy/resolve.ts; first match wins, in our own code so routes reload live),
 * and record who the client is. Also the body
 * parser: bodies are kept as raw bytes so they reach Core exactly as sent, within
 * `server.bodyLimit` as it is in the snapshot.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { PolicyStore } from '../policy/store.js'
import { GatewayError } from '../errors.js'
import { clientChain } from './client.js'
import { countedAddress } from '../shared/ip-prefix.js'
import { resolveTarget } from '../policy/resolve.js'
import { oversizedHeader } from './header-limits.js'
import { BodyBudget } from './body-budget.js'
import type { RequestGateway } from '../contracts/request.js'

export interface RoutingOptions { store: PolicyStore }

async function routing (app: FastifyInstance, opts: RoutingOptions): Promise<void> {
  const { store } = opts
  app.decorateRequest('gateway', null as never)

  app.addHook('onRequest', (request, _reply, done) => {
    const policy = store.current
    const keyHeader = request.headers['x-environment-key']
    const envKey = typeof keyHeader === 'string' && keyHeader !== '' ? keyHeader : undefined
    const chain = clientChain(request.socket.remoteAddress, request.headers['x-forwarded-for'], policy.trustedProxies)
    const gw: RequestGateway = request.gateway = {
      policy,
      route: undefined,
      path: undefined,
      routeUrl: '',
      envKey,
      clientIp: chain[0]!,
      clientNet: countedAddress(chain[0]!, policy.data.server.ipv6Prefix),
      cacheStatus: undefined,
      upstreamMs: undefined,
      limitedBy: undefined,
      startedAt: process.hrtime.bigint(),
      forwardedFor: chain.length > 1 ? chain.join(', ') : undefined
    }
    const tooLarge = oversizedHeader(request.raw.rawHeaders, envKey)
    if (tooLarge !== undefined) {
      // nothing downstream (limiter, cache, log memos) ever sees an oversized key
      gw.envKey = undefined
      done(new GatewayError('FLAGGATE_HEADERS_TOO_LARGE', tooLarge))
      return
    }
    // the canonical path, once: what routes match is exactly what goes upstream (routing/path.ts)
    const r = resolveTarget(policy, request.method, request.raw.url ?? '/')
    if (r.kind === 'bad') { done(new GatewayError('FLAGGATE_BAD_REQUEST', r.message)); return }
    gw.path = r.path
    if (r.kind === 'none') {
      done(new GatewayError('FLAGGATE_NOT_FOUND', `No route of the policy matches ${request.method} ${r.path}.`))
      return
    }
    gw.route = r.route
    gw.routeUrl = r.upstreamUrl
    done()
  })

  // bodies held at once, all clients together (body-budget.ts): charged as they arrive, released
  // when the request is answered or abandoned
  const budget = new BodyBudget()
  const charged = new WeakMap<FastifyRequest, number>()
  const release = (request: FastifyRequest): void => {
    const n = charged.get(request)
    if (n !== undefined) { charged.delete(request); budget.release(request.gateway.clientNet, n) }
  }
  app.addHook('onResponse', (request, _reply, done) => { release(request); done() })
  app.addHook('onRequestAbort', (request, done) => { release(request); done() })
  const overBudget = () => new GatewayError('FLAGGATE_OVERLOADED', 'The gateway is receiving too many request bodies at once (server.bufferedBodies); retry after 1 s.', { 'retry-after': '1' })
  const charge = (request: FastifyRequest, bytes: number): boolean => {
    const s = request.gateway.policy.data.server
    if (!budget.charge(request.gateway.clientNet, bytes, s.bufferedBodies, s.bodyLimit)) return false
    charged.set(request, (charged.get(request) ?? 0) + bytes)
    return true
  }

  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (request: FastifyRequest, payload, done) => {
    const limit = request.gateway.policy.data.server.bodyLimit
    const tooLarge = () => new GatewayError('FLAGGATE_BODY_TOO_LARGE', `The request body is larger than ${limit} bytes.`)
    const declared = Number(request.headers['content-length'])
    if (declared > limit) { done(tooLarge(), undefined); return }
    // a declared length is charged whole before any byte is read; a chunked body as it comes
    let prepaid = declared > 0 ? declared : 0
    if (prepaid > 0 && !charge(request, prepaid)) { done(overBudget(), undefined); return }
    const chunks: Buffer[] = []
    let size = 0
    let failed = false
    payload.on('data', (chunk: Buffer) => {
      if (failed) return
      size += chunk.length
      if (size > limit) { failed = true; done(tooLarge(), undefined); return }
      if (size > prepaid) {
        if (!charge(request, size - prepaid)) { failed = true; done(overBudget(), undefined); return }
        prepaid = size
      }
      chunks.push(chunk)
    })
    payload.on('end', () => { if (!failed) done(null, Buffer.concat(chunks, size)) })
    payload.on('error', (err) => { if (!failed) { failed = true; done(new GatewayError('FLAGGATE_BAD_REQUEST', 'The request body could not be read.', undefined, { cause: err }), undefined) } })
  })
}

export default fp(routing, { name: 'gateway-routing', fastify: '5.x' })
