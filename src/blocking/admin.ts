/**
 * Blocking's part of the admin API: `GET/POST /admin/blocks`,
 * `DELETE /admin/blocks/:id` and the `blocks` of `/admin/status`. Routes run
 * after the admin token check; every change is logged with who, what and why.
 */
import { randomBytes } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AdminError, type AdminExtension } from '../contracts/capability.js'
import type { Policy } from '../policy/compile.js'
import { describeTarget, parseBlockRequest, viewOf, type Block } from './core.js'
import type { BlockRegistry } from './registry.js'
import type { BlockLogger } from './backend.js'

export interface BlockingAdminOptions {
  registry: BlockRegistry
  policy: () => Policy
  logger: BlockLogger
  /** adds a block everywhere (registry + backend); why it could not be stored (and was undone), or undefined */
  add: (block: Block) => Promise<string | undefined>
  /** lifts a block everywhere; the block, or undefined when unknown */
  remove: (id: string) => Block | undefined
  status: () => Record<string, unknown>
  /** `fleet` when a shared store carries blocks to every replica, `replica` when they stay on this one */
  scope: 'fleet' | 'replica'
}

/** `admin-token`, or `admin-token (alice)` when the CLI says who runs it (X-Flaggate-Actor). */
function actorOf (request: FastifyRequest): string {
  const who = (request as FastifyRequest & { who?: string }).who ?? 'unknown'
  const named = request.headers['x-flaggate-actor']
  if (typeof named !== 'string' || !/^[\w.@+-]{1,64}$/.test(named)) return who
  return `${who} (${named})`
}

/** Short, unguessable, and recognisably a runtime block: `r-` + 10 base32-ish characters. */
function newRuntimeId (): string {
  return 'r-' + randomBytes(8).toString('base64url').replace(/[-_]/g, '').slice(0, 10).toLowerCase()
}

export function blockingAdminExtension (opts: BlockingAdminOptions): AdminExtension {
  const { registry, logger } = opts
  return {
    routes (admin: FastifyInstance) {
      admin.get('/admin/blocks', async () => registry.list().map(viewOf))

      admin.post('/admin/blocks', async (request: FastifyRequest, reply: FastifyReply) => {
        const actor = actorOf(request)
        const block = parseBlockRequest(request.body, {
          routes: new Set(opts.policy().routes.map((r) => r.name)),
          now: registry.clock(),
          actor,
          newId: newRuntimeId
        })
        const problem = await opts.add(block)
        if (problem !== undefined) {
          logger.error({ who: actor, action: 'block', target: describeTarget(block), err: problem }, 'admin: block refused, the state file cannot be written')
          throw new AdminError(503, `The block was not applied: it could not be saved (${problem}), so it would vanish at the next restart. Set blocking.stateFile (FLAGGATE_STATE_FILE in the shipped policy) to a writable path, or use a Redis store.`)
        }
        const view = viewOf(block)
        logger.info({ who: actor, action: 'block', id: block.id, target: describeTarget(block), expiresAt: view.expiresAt ?? null, reason: block.reason }, 'admin: client blocked')
        return await reply.code(201).send({ ...view, scope: opts.scope })
      })

      admin.delete('/admin/blocks/:id', async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
        const id = request.params.id
        if (registry.isStatic(id)) throw new AdminError(409, `Block ${id} comes from the policy file (blocklist): remove it there and reload.`)
        const actor = actorOf(request)
        const b = opts.remove(id)
        if (b === undefined) throw new AdminError(404, `No block ${id} (it may have expired); \`flaggate blocks\` (GET /admin/blocks) lists the blocks in force.`)
        logger.info({ who: actor, action: 'unblock', id, source: b.source, target: describeTarget(b), reason: b.reason }, 'admin: block lifted')
        return await reply.code(204).send()
      })
    },
    status: opts.status
  }
}
