/**
 * The first hook of every request: take the policy snapshot once, match the route (first match
 * wins, in our own code so routes reload live), and record who the client is. Also the body
 * parser: bodies are kept as raw bytes so they reach Core exactly as sent, within
 * `server.bodyLimit` as it is in the snapshot.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { matchRoute } from '../policy/compile.js'
import type { PolicyStore } from '../policy/store.js'
import { GatewayError } from '../errors.js'
import { clientChain } from './client.js'
import type { RequestGateway } from '../shared/types.js'

export interface RoutingOptions { store: PolicyStore }

async function routing (app: FastifyInstance, opts: RoutingOptions): Promise<void> {
  const { store } = opts
  app.decorateRequest('gateway', null as never)

  app.addHook('onRequest', (request, _reply, done) => {
    const policy = store.current
    const rawUrl = request.raw.url ?? '/'
    const q = rawUrl.indexOf('?')
    const path = q === -1 ? rawUrl : rawUrl.slice(0, q)
    const query = q === -1 ? '' : rawUrl.slice(q)
    const keyHeader = request.headers['x-environment-key']
    const envKey = typeof keyHeader === 'string' && keyHeader !== '' ? keyHeader : undefined
    const chain = clientChain(request.socket.remoteAddress, request.headers['x-forwarded-for'], policy.trustedProxies)
    const gw: RequestGateway = request.gateway = {
      policy,
      route: undefined,
      upstream: 'none',
      upstreamUrl: '',
      envKey,
      clientIp: chain[0]!,
      decision: 'allowed',
      cacheStatus: undefined,
      upstreamMs: undefined,
      limitedBy: undefined,
      startedAt: process.hrtime.bigint(),
      forwardedFor: chain.length > 1 ? chain.join(', ') : undefined
    }
    // Core decodes the path before routing, so we match on the decoded form too: otherwise
    // `/api/v1/%66lags/` would reach Core's flags view under the default route's limits.
    let matchPath = path
    if (path.includes('%')) {
      try { matchPath = decodeURIComponent(path) } catch {
        done(new GatewayError('FLAGGATE_BAD_REQUEST', 'The request path has an invalid percent-encoding.'))
        return
      }
    }
    const m = matchRoute(policy, request.method, matchPath)
    if (m === undefined) {
      done(new GatewayError('FLAGGATE_NOT_FOUND', `No route of the policy matches ${request.method} ${matchPath}.`))
      return
    }
    gw.route = m.route
    gw.upstream = m.route.upstream
    const target = policy.targets[m.route.upstream]!
    gw.upstreamUrl = target.basePath + (m.upstreamPath === matchPath ? path : m.upstreamPath) + query
    done()
  })

  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (request: FastifyRequest, payload, done) => {
    const limit = request.gateway.policy.data.server.bodyLimit
    const tooLarge = () => new GatewayError('FLAGGATE_BODY_TOO_LARGE', `The request body is larger than ${limit} bytes.`)
    const declared = Number(request.headers['content-length'])
    if (declared > limit) { done(tooLarge(), undefined); return }
    const chunks: Buffer[] = []
    let size = 0
    let failed = false
    payload.on('data', (chunk: Buffer) => {
      if (failed) return
      size += chunk.length
      if (size > limit) { failed = true; done(tooLarge(), undefined); return }
      chunks.push(chunk)
    })
    payload.on('end', () => { if (!failed) done(null, Buffer.concat(chunks, size)) })
    payload.on('error', (err) => { if (!failed) { failed = true; done(new GatewayError('FLAGGATE_BAD_REQUEST', 'The request body could not be read.', undefined, { cause: err }), undefined) } })
  })
}

export default fp(routing, { name: 'gateway-routing', fastify: '5.x' })
