/**
 * The one digest of an environment key for storage and messages: rate-limit bucket keys, block
 * records and the fleet's block messages name a key by it, never in clear (Redis is readable by
 * whoever operates it; a server key is a secret). The redacted display form (`ser.…1a2b3c4d`,
 * shared/redact.ts) is for people, not for matching.
 */
import { createHash } from 'node:crypto'
import { BoundedMemo } from './memo.js'

// Bucket keys live in Redis, where anyone with SCAN would read them: an environment key (a
// server key is a secret) goes in as a digest. 128 bits: no two keys share a bucket by chance.
// Memoised, since one busy key is hashed once, not once per request; bounded in bytes, since
// keys are client input (8 MiB: ~70,000 keys of a Flagsmith key's length).
const sha256 = (s: string): string => createHash('sha256').update(s).digest('base64url')
export const digest22 = (s: string): string => sha256(s).slice(0, 22)
export const keyDigests = new BoundedMemo(digest22, 8 * 1024 * 1024)
export function keyDigest (envKey: string): string {
  return keyDigests.get(envKey)
}


/**
 * The whole sha256 of a key (base64url, 43 characters), of which {@link keyDigest} is the first
 * 22. Key purges have always named a key this way on the wire, and replicas of the previous
 * release compare the whole string: a purge is still sent in this form so that they apply it.
 * Once no such replica runs, messages can carry keyDigest alone (matchesKeyDigest takes both).
 */
export function wireKeyDigest (envKey: string): string {
  return sha256(envKey)
}

/**
 * Whether a digest read from a message names the key whose {@link keyDigest} is `digest`: the
 * digest itself, or the whole sha256 that older replicas send (its first 22 characters are it).
 */
export function matchesKeyDigest (fromMessage: string, digest: string): boolean {
  return fromMessage === digest || (fromMessage.length === 43 && fromMessage.startsWith(digest))
}
