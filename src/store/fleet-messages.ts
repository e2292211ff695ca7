/**
 * What replicas say to each other through Redis pub/sub, parsed against a schema before anything
 * reads a field. Anyone who can write to Redis can publish there: `PUBLISH <prefix>purge null`
 * made every replica read `null.v` and exit. A message that does not parse is ignored and
 * counted; the first of every minute is logged (with its size, never its bytes, which could hold
 * anything), so a flood of them cannot flood the log.
 */
import { z } from 'zod'

const MAX_MESSAGE_BYTES = 64 * 1024
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
  z.object({ v: z.literal(1), from: ID, version: z.number().int().nonnegative().safe(), op: z.literal('add'), block: z.record(z.string(), z.unknown()) }),
  z.object({ v: z.literal(1), from: ID, version: z.number().int().nonnegative().safe(), op: z.literal('remove'), id: ID })
])

export interface RejectLog { warn (obj: object, msg: string): void }

/** Parses one pub/sub message; undefined (logged at most once a minute per channel) when it is not one. */
export class FleetMessageParser<T> {
  #rejected = 0
  #loggedAt = -Infinity
  constructor (
    private readonly schema: z.ZodType<T>,
    private readonly channel: string,
    private readonly log: RejectLog,
    private readonly now: () => number = Date.now
  ) {}

  /** messages ignored so far */
  get rejected (): number { return this.#rejected }

  parse (raw: unknown): T | undefined {
    let reason: string
    if (typeof raw !== 'string') reason = 'not text'
    else if (raw.length > MAX_MESSAGE_BYTES) reason = 'too large'
    else {
      let json: unknown
      try { json = JSON.parse(raw) } catch { json = undefined; reason = 'not JSON' }
      if (json !== undefined) {
        const r = this.schema.safeParse(json)
        if (r.success) return r.data
        reason = `does not match the schema (${r.error.issues[0]?.path.join('.') || 'message'}: ${r.error.issues[0]?.message ?? '?'})`
      } else reason = 'not JSON'
    }
    this.#rejected++
    const t = this.now()
    if (t - this.#loggedAt >= 60_000) {
      this.#loggedAt = t
      this.log.warn({ channel: this.channel, reason, bytes: typeof raw === 'string' ? raw.length : 0, rejected: this.#rejected }, 'ignored a malformed message from Redis')
    }
    return undefined
  }
}
