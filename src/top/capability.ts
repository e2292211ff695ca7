/**
 * `top` as a capability of its own: the top-talkers sketch of this replica (top-clients.ts), its
 * admin route `GET /admin/top`, and the recorder the deciding steps are given by the composition
 * (gateway.ts) to feed it. It owns no request step: whoever answers a request (blocking's
 * onResponse, which sees every routed answer and whether it was refused) calls `record`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AdminError, type Capability } from '../contracts/capability.js'
import type { Clock } from '../shared/clock.js'
import { TopClients, type TopBy, } from './top-clients.js'

/** What a step that decides is given to report one answered request. */
export type TopRecorder = (route: string, envKey: string | undefined, clientIp: string, rejected: boolean) => void

export interface TopDeps {
  capacity?: number
  clock?: Clock
  /** how often the sliding window moves on; default 1 s */
  tickMs?: number
}

export interface TopCapability extends Capability {
  top: TopClients
  record: TopRecorder
  close: () => void
}

export function createTop (deps: TopDeps = {}): TopCapability {
  const top = new TopClients({ ...(deps.capacity !== undefined ? { capacity: deps.capacity } : {}), ...(deps.clock !== undefined ? { clock: deps.clock } : {}) })
  const ticker = setInterval(() => { top.tick() }, deps.tickMs ?? 1000)
  ticker.unref()
  return {
    name: 'top',
    top,
    record: (route, envKey, clientIp, rejected) => { top.record(route, envKey, clientIp, rejected) },
    admin: {
      routes (admin: FastifyInstance) {
        admin.get('/admin/top', async (request: FastifyRequest<{ Querystring: Record<string, string | undefined> }>) => {
          const q = request.query
          const by = q.by ?? 'requests'
          if (by !== 'requests' && by !== 'rejections') throw new AdminError(400, '"by" must be requests or rejections.')
          const limitText = q.limit ?? '20'
          if (!/^\d{1,4}$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > 1000) throw new AdminError(400, '"limit" must be a whole number from 1 to 1000.')
          return top.top(by as TopBy, Number(limitText))
        })
      }
    },
    close: () => { clearInterval(ticker) }
  }
}
