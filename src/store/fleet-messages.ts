/**
 * What replicas say to each other through Redis pub/sub, parsed against a schema before anything
 * reads a field. Anyone who can write to Redis can publish there: `PUBLISH <prefix>purge null`
 * made every replica read `null.v` and exit. A message that does not parse is ignored; the fleet
 * channel (fleet-channel.ts) logs the first one per topic with its size, never its bytes (which
 * could hold anything), so a flood cannot flood the log.
 */
import { z } from 'zod'

/** the largest message a replica reads; a block or a purge is a few hundred bytes */
export const MAX_MESSAGE_BYTES = 64 * 1024
const ID = z.string().min(1).max(200)

/** A cache purge target on the wire (cache/core.ts PurgeTarget). */
export const PurgeTargetSchema = z.union([
  z.object({ all: z.literal(true) }),
  z.object({ key: z.string().min(1).max(8192) }),
  z.object({ keyDigest: z.string().regex(/^[A-Za-z0-9_-]{8,128}$/) }),  // base64url SHA-256 (cache/core.ts keyDigestOf)
  z.object({ envId: z.number().int().safe() }),
  z.object({ projectId: z.number().int().safe() })
])

export const PurgeMessageSchema = z.object({
  v: z.union([z.literal(1), z.literal(2)]),
  from: ID,
  target: PurgeTargetSchema
})

/** A block's fields are checked again by blockFromJson (blocking/core.ts), which knows what can be matched. */
export const BlockMessageSchema = z.discriminatedUnion('op', [
  z.object({ v: z.literal(1), from: ID, version: z.number().int().nonnegative().safe().optional(), op: z.literal('add'), block: z.record(z.string(), z.unknown()) }),
  z.object({ v: z.literal(1), from: ID, version: z.number().int().nonnegative().safe().optional(), op: z.literal('remove'), id: ID })
])
