/**
 * The `block` step (contracts/pipeline.ts), first after routing, so a blocked request costs no
 * token, no cache work and no upstream request.
 *
 * onRequest: with no block in force the cost is one branch; otherwise the in-memory index (see
 * core.ts), never Redis. onResponse: reports the answer to the injected recorder (`top`) and feeds the abuse counter after the answer is sent.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { GatewayError } from '../errors.js'
import type { Block } from './core.js'
import type { BlockRegistry } from './registry.js'
import type { AbuseDetector } from './abuse.js'
import type { TopRecorder } from '../top/capability.js'
import { decisionOf } from '../contracts/request.js'

export interface BlockingPluginOptions {
  registry: BlockRegistry
  /** told of every routed answer and whether it was refused (the `top` capability's recorder) */
  recordOutcome: TopRecorder
  abuse: AbuseDetector
}

/** The 403 of a blocked client: Retry-After until the block ends (none for a permanent one). */
export function blockedError (b: Block, now: number): GatewayError {
  const text = b.publicReason === undefined ? 'This client is blocked.' : `This client is blocked: ${b.publicReason}${/[.!?]$/.test(b.publicReason) ? '' : '.'}`
  if (b.expiresAt === undefined) return new GatewayError('FLAGGATE_BLOCKED', text)
  const retryAfter = Math.max(1, Math.ceil((b.expiresAt - now) / 1000))
  return new GatewayError('FLAGGATE_BLOCKED', `${text} The block ends in ${retryAfter} s.`, { 'retry-after': String(retryAfter) })
}

async function blocking (app: FastifyInstance, opts: BlockingPluginOptions): Promise<void> {
  const { registry, recordOutcome, abuse } = opts
  const index = registry.index
  const clock = registry.clock

  app.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
    if (index.size === 0) { done(); return }
    const gw = request.gateway
    const route = gw?.route
    if (route === undefined) { done(); return }
    const now = clock()
    const b = index.match(route.name, gw.envKey, gw.clientIp, request.headers['user-agent'], now, gw.clientNet)
    if (b === undefined) { done(); return }
    gw.blocked = true
    done(blockedError(b, now))
  })

  app.addHook('onResponse', (request: FastifyRequest, _reply: FastifyReply, done: () => void) => {
    const gw = request.gateway
    const route = gw?.route
    if (route === undefined) { done(); return }
    const decision = decisionOf(gw)
    recordOutcome(route.name, gw.envKey, gw.clientNet, decision === 'limited' || decision === 'blocked')
    if (decision === 'limited' && gw.limitedClient !== undefined) abuse.record(gw.limitedClient, route.name, gw.limitedBy ?? route.name)
    done()
  })
}

export default fp(blocking, { name: 'gateway-blocking', fastify: '5.x', dependencies: ['gateway-routing'] })
