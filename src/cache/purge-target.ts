/**
 * Which cached documents a purge names: all, one key (in clear on this replica, as a digest
 * between replicas), an environment or a project (read from the document body when stored).
 */
import { createHash } from 'node:crypto'
import type { CachedDocument, PurgeTarget } from './document.js'

/** sha256 of an environment key, base64url: names a key on the purge bus without revealing it */
export function keyDigestOf (envKey: string): string {
  return createHash('sha256').update(envKey).digest('base64url')
}

/** `digests` memoises keyDigestOf over one purge, where many entries share a key */
export function matches (target: PurgeTarget, envKey: string, doc: CachedDocument | undefined, digests?: Map<string, string>): boolean {
  if ('all' in target) return true
  if ('key' in target) return target.key === envKey
  if ('keyDigest' in target) {
    let d = digests?.get(envKey)
    if (d === undefined) { d = keyDigestOf(envKey); digests?.set(envKey, d) }
    return d === target.keyDigest
  }
  if ('envId' in target) return doc?.envId === target.envId
  return doc?.projectId === target.projectId
}

/** The environment and project a stored document belongs to, for purges by id. */
export function documentIds (body: Buffer): { envId: number | undefined; projectId: number | undefined } | undefined {
  let doc: unknown
  try { doc = JSON.parse(body.toString('utf8')) } catch { return undefined }
  if (typeof doc !== 'object' || doc === null) return { envId: undefined, projectId: undefined }
  const d = doc as { id?: unknown; project?: { id?: unknown } }
  return {
    envId: typeof d.id === 'number' ? d.id : undefined,
    projectId: typeof d.project === 'object' && d.project !== null && typeof d.project.id === 'number' ? d.project.id : undefined
  }
}
