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
export const digest22 = (s: string): string => createHash('sha256').update(s).digest('base64url').slice(0, 22)
export const keyDigests = new BoundedMemo(digest22, 8 * 1024 * 1024)
export function keyDigest (envKey: string): string {
  return keyDigests.get(envKey)
}

