/**
 * Which cached documents a purge names: all, one key (in clear on this replica, as a digest
 * between replicas), an environment or a project (read from the document body when stored).
 */
import type { CachedDocument, PurgeTarget } from './document.js'
import { keyDigest, matchesKeyDigest, wireKeyDigest } from '../shared/key-digest.js'

/** how a key purge names the key on the fleet channel (shared/key-digest.ts: the one digest, in the form every replica reads) */
export const keyDigestOf = wireKeyDigest

/** `digests` memoises keyDigest over one purge, where many entries share a key */
export function matches (target: PurgeTarget, envKey: string, doc: CachedDocument | undefined, digests?: Map<string, string>): boolean {
  if ('all' in target) return true
  if ('key' in target) return target.key === envKey
  if ('keyDigest' in target) {
    let d = digests?.get(envKey)
    if (d === undefined) { d = keyDigest(envKey); digests?.set(envKey, d) }
    return matchesKeyDigest(target.keyDigest, d)
  }
  if ('envId' in target) return doc?.envId === target.envId
  return doc?.projectId === target.projectId
}

interface EntryIds { envId: number | undefined; projectId: number | undefined; clientKey: string | undefined }

/**
 * What a purge can name a stored entry by. An environment document carries its `id`,
 * `project.id` and `api_key` (its client key); a flag list (an array of flags, or one flag for
 * `?feature=`) names its environment in each flag's `environment`. Undefined when the body is not
 * JSON (not stored).
 */
export function entryIds (body: Buffer, flagList: boolean): EntryIds | undefined {
  let doc: unknown
  try { doc = JSON.parse(body.toString('utf8')) } catch { return undefined }
  if (typeof doc !== 'object' || doc === null) return { envId: undefined, projectId: undefined, clientKey: undefined }
  if (flagList) {
    const first = (Array.isArray(doc) ? doc[0] : doc) as { environment?: unknown } | undefined
    return { envId: typeof first?.environment === 'number' ? first.environment : undefined, projectId: undefined, clientKey: undefined }
  }
  const d = doc as { id?: unknown; project?: { id?: unknown }; api_key?: unknown }
  return {
    envId: typeof d.id === 'number' ? d.id : undefined,
    projectId: typeof d.project === 'object' && d.project !== null && typeof d.project.id === 'number' ? d.project.id : undefined,
    clientKey: typeof d.api_key === 'string' ? d.api_key : undefined
  }
}
