/** `flaggate status` and `flaggate purge`: thin clients of the admin API. */
import { renderStatus } from '../admin/status-text.js'
import { adminBase, adminCall, answerError, type AdminOptions } from './admin-client.js'

export async function status (opts: AdminOptions & { json?: boolean }): Promise<void> {
  const r = await adminCall(opts, 'GET', '/admin/status')
  if (r.status !== 200) answerError(r)
  process.stdout.write((opts.json === true ? JSON.stringify(r.json, null, 2) : renderStatus(r.json, { adminUrl: adminBase(opts.admin) })) + '\n')
}

export async function purge (opts: AdminOptions & { key?: string }): Promise<void> {
  const r = await adminCall(opts, 'POST', '/admin/cache/purge', opts.key === undefined ? {} : { key: opts.key })
  if (r.status !== 200) answerError(r)
  const answer = r.json as { purged: number; scope?: string }
  // without Redis a purge reaches this gateway only: say so, the operator may run several
  const where = answer.scope === 'replica' ? 'on this gateway only (no shared store: purge each replica)' : 'on every replica'
  process.stdout.write(`purged ${answer.purged} cached document(s)${opts.key === undefined ? '' : ' for that key'} ${where}\n`)
}
