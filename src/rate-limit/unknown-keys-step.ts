/**
 * The `unknown-keys` step (contracts/pipeline.ts): after blocks, limits, 304s, local answers and
 * fresh HITs, so it is charged only for requests that are going to an upstream (unknown-keys.ts
 * says what it counts). A stale copy, a remembered 403 or a fill in flight answered by the cache
 * lookup afterwards may still spare Core: those are keys Core accepted once (stale), or the same
 * key from the same address again (charged once a minute at most).
 *
 * onResponse: learns, from what the upstream answered on an SDK path, which keys Core accepts.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { authenticatesKey, policyKeys, type UnknownKeys } from './unknown-keys.js'
import type { Policy } from '../policy/compile.js'
import { decisionOf } from '../contracts/request.js'

export interface UnknownKeysStepOptions { keys: UnknownKeys }

async function unknownKeysStep (app: FastifyInstance, opts: UnknownKeysStepOptions): Promise<void> {
  const { keys } = opts
  // the keys each policy names, computed once per policy (a reload is a new object)
  const named = new WeakMap<Policy, ReadonlySet<string>>()
  const namedBy = (p: Policy): ReadonlySet<string> => {
    let s = named.get(p)
    if (s === undefined) { s = policyKeys(p.data); named.set(p, s) }
    return s
  }

  app.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
    const gw = request.gateway
    const budget = gw?.policy.data.unknownKeys
    if (budget === undefined || gw.route === undefined || gw.envKey === undefined) { done(); return }
    const refused = keys.admit(gw.envKey, gw.clientNet, budget, namedBy(gw.policy))
    if (refused === undefined) { done(); return }
    gw.limitedBy = 'unknownKeys'
    // repeated refusals make an automatic block of the address (abuse), never of a key
    gw.limitedClient = { ip: gw.clientNet }
    done(refused)
  })

  app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const gw = request.gateway
    if (gw?.envKey === undefined || gw.policy.data.unknownKeys === undefined) { done(); return }
    const d = decisionOf(gw)
    // the upstream's answer (proxied, filled or cached from it), never one of ours
    if ((d === 'allowed' || d === 'cached' || d === 'stale') && authenticatesKey(gw.path)) keys.learn(gw.envKey, reply.statusCode)
    done()
  })
}

export default fp(unknownKeysStep, { name: 'gateway-unknown-keys', fastify: '5.x', dependencies: ['gateway-routing'] })
