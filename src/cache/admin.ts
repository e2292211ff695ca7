/**
 * The cache's part of the admin API: `POST /admin/cache/purge {key?}` and the
 * `cache` section of `/admin/status`. Routes run after the admin token check.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { AdminExtension } from '../contracts/capability.js'
import type { DocumentCache } from './core.js'
import { describeTarget, type PurgeBus, type PurgeLogger } from './purge.js'

export interface CacheAdminOptions {
  cache: DocumentCache
  bus: PurgeBus
  logger: PurgeLogger
  /** `fleet` when the purge bus reaches every replica (Redis), `replica` when it stays on this one */
  scope: 'fleet' | 'replica'
}

class BadPurgeRequest extends Error {
  readonly statusCode = 400
}

function purgeTargetOf (body: unknown): { key: string } | { all: true } {
  if (body === undefined || body === null || body === '') return { all: true }
  if (typeof body !== 'object' || Array.isArray(body)) throw new BadPurgeRequest('The body must be a JSON object: {} to purge everything, {"key": "<environment key>"} for one key.')
  const fields = Object.keys(body)
  // a misspelt field must not silently widen a one-key purge into a purge of everything
  const unknown = fields.filter((f) => f !== 'key')
  if (unknown.length > 0) throw new BadPurgeRequest(`Unknown field ${unknown.map((f) => `"${f}"`).join(', ')}: the only field is "key".`)
  const key = (body as { key?: unknown }).key
  if (key === undefined) return { all: true }
  if (typeof key !== 'string' || key === '') throw new BadPurgeRequest('"key" must be a non-empty string (an environment key).')
  return { key }
}

export function cacheAdminExtension (opts: CacheAdminOptions): AdminExtension {
  const { cache, bus, logger } = opts
  return {
    routes (admin: FastifyInstance) {
      admin.post('/admin/cache/purge', async (request: FastifyRequest) => {
        const target = purgeTargetOf(request.body)
        const purged = bus.purge(target)
        const { who, why } = request as FastifyRequest & { who?: string; why?: string }
        logger.info({ who, why, action: 'cache.purge', target: describeTarget(target), purged }, 'cache purged')
        return { purged, scope: opts.scope }
      })
    },
    status () {
      const s = cache.stats()
      return { cache: { entries: s.entries, bytes: s.bytes, maxSize: s.maxSize, hits: s.hits, misses: s.misses, stale: s.stale, negativeEntries: s.negativeEntries, tooLargeEntries: s.tooLargeEntries } }
    }
  }
}
