/**
 * Blocks and the in-memory index every request is checked against. Pure: no fastify, no Redis,
 * no timers; time comes in as an argument.
 *
 * A block targets an environment key, an IP or CIDR, a User-Agent pattern, or (automatic blocks
 * of an `[environmentKey, ip]` limit) one key from one IP; optionally only on some routes.
 * Keys are held as a digest (the one the rate limiter uses) plus a redacted form for people:
 * blocks travel through Redis and a state file, where an environment key must not appear.
 *
 * Cost per request: nothing when the index is empty (the plugin checks `size` first); otherwise
 * one Map lookup per kind of target present, one hash lookup per CIDR prefix length present, and
 * one regex test per User-Agent block (those are few: a regex cannot be indexed).
 */
import { createHash } from 'node:crypto'
import { compileUserAgentPattern, MAX_USER_AGENT_CHARS, MAX_PATTERN_CHARS, type UserAgentPattern } from '../shared/ua-pattern.js'
import { keyDigest } from '../shared/key-digest.js'
import { redactKey } from '../shared/redact.js'
import { parseDuration } from '../shared/units.js'
import { parseCidr, PrefixIndex, type Cidr } from '../shared/ip-index.js'

export type BlockSource = 'static' | 'runtime' | 'abuse'

/** A block as stored (Redis, state file) and exchanged between replicas: plain JSON. */
export interface Block {
  id: string
  /** digest of the environment key (shared/key-digest.ts) */
  keyDigest?: string
  /** the key redacted, for people */
  key?: string
  /** canonical IP or CIDR */
  ip?: string
  /** a regular expression tested against the User-Agent header */
  userAgent?: string
  routes?: string[]
  reason: string
  /** shown to the blocked client in the 403 body */
  publicReason?: string
  source: BlockSource
  /** ms since the epoch */
  createdAt: number
  /** ms since the epoch; absent: until lifted */
  expiresAt?: number
  /** who made it: the admin token's name, `policy`, or `abuse` */
  actor: string
}

/** The wire form of `GET /admin/blocks`: ISO times, never the key's digest. */
export type BlockView = Omit<Block, 'keyDigest' | 'createdAt' | 'expiresAt'> & { createdAt: string; expiresAt?: string }

export function viewOf (b: Block): BlockView {
  return {
    id: b.id,
    ...(b.key !== undefined ? { key: b.key } : {}),
    ...(b.ip !== undefined ? { ip: b.ip } : {}),
    ...(b.userAgent !== undefined ? { userAgent: b.userAgent } : {}),
    ...(b.routes !== undefined ? { routes: b.routes } : {}),
    reason: b.reason,
    ...(b.publicReason !== undefined ? { publicReason: b.publicReason } : {}),
    source: b.source,
    createdAt: new Date(b.createdAt).toISOString(),
    ...(b.expiresAt !== undefined ? { expiresAt: new Date(b.expiresAt).toISOString() } : {}),
    actor: b.actor
  }
}

/** What a block targets, in words for logs and the CLI; never a key in full. */
export function describeTarget (b: Pick<Block, 'key' | 'ip' | 'userAgent' | 'routes'>): string {
  const parts: string[] = []
  if (b.key !== undefined) parts.push(`key ${b.key}`)
  if (b.ip !== undefined) parts.push(`${b.ip.includes('/') ? 'network' : 'ip'} ${b.ip}`)
  if (b.userAgent !== undefined) parts.push(`user-agent /${b.userAgent}/`)
  return `${parts.join(' from ')}${b.routes === undefined ? ' on every route' : ` on ${b.routes.join(', ')}`}`
}

export { MAX_USER_AGENT_CHARS, MAX_PATTERN_CHARS }
export const MAX_REASON_CHARS = 500
/** a runtime block lasts at most a year; longer belongs in the policy file */
export const MAX_TTL_MS = 365 * 86_400_000

/** Compiles a User-Agent pattern (linear time whatever the pattern: ua-pattern.ts) or says why not. */
export function compileUserAgent (pattern: string): UserAgentPattern | string {
  return compileUserAgentPattern(pattern)
}

export class BlockRequestError extends Error {
  readonly statusCode = 400
}

export interface BlockRequestContext {
  /** route names of the policy in force */
  routes: ReadonlySet<string>
  now: number
  actor: string
  /** a fresh id for a runtime block */
  newId: () => string
}

const REQUEST_FIELDS = new Set(['key', 'ip', 'userAgent', 'routes', 'ttl', 'reason', 'publicReason'])

function optionalString (o: Record<string, unknown>, field: string): string | undefined {
  const v = o[field]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string' || v.trim() === '') throw new BlockRequestError(`"${field}" must be a non-empty string.`)
  return v
}

/**
 * `POST /admin/blocks` body → a runtime block, or a {@link BlockRequestError} (400) saying what
 * is wrong: exactly one of key, ip, userAgent; a reason; a ttl such as "30m"; known routes.
 */
export function parseBlockRequest (body: unknown, ctx: BlockRequestContext): Block {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BlockRequestError('The body must be a JSON object: {"key"|"ip"|"userAgent": ..., "reason": "...", "ttl"?: "30m", "routes"?: [...], "publicReason"?: "..."}.')
  }
  const o = body as Record<string, unknown>
  const unknown = Object.keys(o).filter((f) => !REQUEST_FIELDS.has(f))
  if (unknown.length > 0) throw new BlockRequestError(`Unknown field ${unknown.map((f) => `"${f}"`).join(', ')}: the fields are key, ip, userAgent, routes, ttl, reason, publicReason.`)
  const key = optionalString(o, 'key')
  const ip = optionalString(o, 'ip')
  const userAgent = optionalString(o, 'userAgent')
  const targets = [key, ip, userAgent].filter((t) => t !== undefined).length
  if (targets === 0) throw new BlockRequestError('Say what to block: exactly one of "key" (an environment key), "ip" (an address or CIDR) or "userAgent" (a regular expression).')
  if (targets > 1) throw new BlockRequestError('A block has exactly one target: send one of "key", "ip" or "userAgent", not several (make one block each).')
  const reason = optionalString(o, 'reason')
  if (reason === undefined) throw new BlockRequestError('"reason" is required: say why, for the audit log and for whoever lifts the block.')
  if (reason.length > MAX_REASON_CHARS) throw new BlockRequestError(`"reason" is longer than ${MAX_REASON_CHARS} characters.`)
  const publicReason = optionalString(o, 'publicReason')
  if (publicReason !== undefined && publicReason.length > MAX_REASON_CHARS) throw new BlockRequestError(`"publicReason" is longer than ${MAX_REASON_CHARS} characters.`)

  let cidr: Cidr | undefined
  if (ip !== undefined) {
    cidr = parseCidr(ip)
    if (cidr === undefined) throw new BlockRequestError(`"ip": "${ip}" is not an IP address or CIDR block (examples: 203.0.113.7, 203.0.113.0/24, 2001:db8::/32).`)
  }
  if (userAgent !== undefined) {
    const re = compileUserAgent(userAgent)
    if (typeof re === 'string') throw new BlockRequestError(`"userAgent": the pattern ${re}.`)
  }

  let routes: string[] | undefined
  if (o.routes !== undefined && o.routes !== null) {
    if (!Array.isArray(o.routes) || o.routes.length === 0 || !o.routes.every((r) => typeof r === 'string')) {
      throw new BlockRequestError('"routes" must be a non-empty list of route names (omit it to block on every route).')
    }
    const unknownRoutes = (o.routes as string[]).filter((r) => !ctx.routes.has(r))
    if (unknownRoutes.length > 0) throw new BlockRequestError(`Unknown route ${unknownRoutes.map((r) => `"${r}"`).join(', ')} (routes: ${[...ctx.routes].join(', ')}).`)
    routes = [...new Set(o.routes as string[])]
  }

  let expiresAt: number | undefined
  if (o.ttl !== undefined && o.ttl !== null) {
    const ms = typeof o.ttl === 'string' ? parseDuration(o.ttl) : undefined
    if (ms === undefined) throw new BlockRequestError(`"ttl" must be a duration such as "30s", "15m", "2h" or "7d" (got ${JSON.stringify(o.ttl)}); omit it for a block that lasts until lifted.`)
    if (ms < 1000) throw new BlockRequestError('"ttl" must be at least 1s.')
    if (ms > MAX_TTL_MS) throw new BlockRequestError('"ttl" must be at most 365d; a permanent block belongs in the policy file (blocklist).')
    expiresAt = ctx.now + ms
  }

  return {
    id: ctx.newId(),
    ...(key !== undefined ? { keyDigest: keyDigest(key), key: redactKey(key)! } : {}),
    ...(cidr !== undefined ? { ip: cidr.text } : {}),
    ...(userAgent !== undefined ? { userAgent } : {}),
    ...(routes !== undefined ? { routes } : {}),
    reason,
    ...(publicReason !== undefined ? { publicReason } : {}),
    source: 'runtime',
    createdAt: ctx.now,
    ...(expiresAt !== undefined ? { expiresAt } : {}),
    actor: ctx.actor
  }
}

/**
 * A stored block read back (Redis, state file, a message from another replica): checked field by
 * field, since a block that cannot be matched must not crash the index. Undefined when unusable.
 */
export function blockFromJson (v: unknown): Block | undefined {
  if (typeof v !== 'object' || v === null) return undefined
  const b = v as Partial<Block>
  if (typeof b.id !== 'string' || typeof b.reason !== 'string' || typeof b.createdAt !== 'number' || typeof b.actor !== 'string') return undefined
  if (b.source !== 'runtime' && b.source !== 'abuse' && b.source !== 'static') return undefined
  if (b.expiresAt !== undefined && typeof b.expiresAt !== 'number') return undefined
  if (b.keyDigest !== undefined && typeof b.keyDigest !== 'string') return undefined
  if (b.ip !== undefined && (typeof b.ip !== 'string' || parseCidr(b.ip) === undefined)) return undefined
  if (b.userAgent !== undefined && (typeof b.userAgent !== 'string' || typeof compileUserAgent(b.userAgent) === 'string')) return undefined
  if (b.routes !== undefined && (!Array.isArray(b.routes) || !b.routes.every((r) => typeof r === 'string'))) return undefined
  if (b.keyDigest === undefined && b.ip === undefined && b.userAgent === undefined) return undefined
  return b as Block
}

/** Static blocks of the policy (`blocklist`). Ids follow the content, so a reload keeps them. */
export function staticBlocks (list: ReadonlyArray<{ key?: string | undefined; ip?: string | undefined; userAgent?: string | undefined; routes?: string[] | undefined; reason: string; publicReason?: string | undefined }>, now: number): Block[] {
  const seen = new Set<string>()
  return list.map((s) => {
    const ip = s.ip === undefined ? undefined : parseCidr(s.ip)?.text
    let id = 's-' + createHash('sha256').update(JSON.stringify([s.key ?? null, ip ?? null, s.userAgent ?? null, s.routes ?? null])).digest('hex').slice(0, 10)
    while (seen.has(id)) id += 'x'
    seen.add(id)
    return {
      id,
      ...(s.key !== undefined ? { keyDigest: keyDigest(s.key), key: redactKey(s.key)! } : {}),
      ...(ip !== undefined ? { ip } : {}),
      ...(s.userAgent !== undefined ? { userAgent: s.userAgent } : {}),
      ...(s.routes !== undefined ? { routes: s.routes } : {}),
      reason: s.reason,
      ...(s.publicReason !== undefined ? { publicReason: s.publicReason } : {}),
      source: 'static' as const,
      createdAt: now,
      actor: 'policy'
    }
  })
}

/** A block compiled for matching. */
interface Entry {
  readonly block: Block
  readonly routes: ReadonlySet<string> | null
  /** Infinity when permanent */
  readonly expiresAt: number
  readonly cidr: Cidr | undefined
  readonly ua: UserAgentPattern | undefined
  /** `<keyDigest>` or `<keyDigest>\n<ip>` */
  readonly keySlot: string | undefined
}

/** Scratch state of one lookup: one object per index, reused (a lookup is synchronous). */
interface Probe { route: string; now: number }

function firstApplying (list: readonly Entry[], p: Probe): Entry | undefined {
  for (let i = 0; i < list.length; i++) {
    const e = list[i]!
    if (e.expiresAt > p.now && (e.routes === null || e.routes.has(p.route))) return e
  }
  return undefined
}

export class BlockIndex {
  readonly #byId = new Map<string, Entry>()
  /** key-only blocks, by key digest */
  readonly #keys = new Map<string, Entry[]>()
  /** key-and-ip blocks (automatic blocks of `[environmentKey, ip]` limits), by `digest\nip` */
  readonly #keyIps = new Map<string, Entry[]>()
  readonly #ips = new PrefixIndex<Entry>()
  #agents: Entry[] = []
  readonly #probe: Probe = { route: '', now: 0 }

  /** blocks in the index; 0 means every lookup can be skipped */
  get size (): number { return this.#byId.size }

  has (id: string): boolean { return this.#byId.has(id) }
  get (id: string): Block | undefined { return this.#byId.get(id)?.block }
  blocks (): Block[] { return [...this.#byId.values()].map((e) => e.block) }

  /** Adds a block, replacing one with the same id. False when the block cannot be matched. */
  add (block: Block): boolean {
    const cidr = block.ip === undefined ? undefined : parseCidr(block.ip)
    let ua: UserAgentPattern | undefined
    if (block.userAgent !== undefined) {
      const re = compileUserAgent(block.userAgent)
      if (typeof re === 'string') return false
      ua = re
    }
    if (block.ip !== undefined && cidr === undefined) return false
    if (block.keyDigest === undefined && cidr === undefined && ua === undefined) return false
    // a key with an ip is one client instance: one address, or one counted IPv6 network
    // (shared/ip-prefix.ts), looked up exactly
    if (block.keyDigest !== undefined && cidr !== undefined && cidr.family === 4 && cidr.prefix !== 32) return false
    this.remove(block.id)
    const entry: Entry = {
      block,
      routes: block.routes === undefined ? null : new Set(block.routes),
      expiresAt: block.expiresAt ?? Infinity,
      cidr,
      ua,
      keySlot: block.keyDigest === undefined ? undefined : cidr === undefined ? block.keyDigest : `${block.keyDigest}\n${cidr.text}`
    }
    this.#byId.set(block.id, entry)
    if (entry.keySlot !== undefined) {
      const map = cidr === undefined ? this.#keys : this.#keyIps
      const list = map.get(entry.keySlot)
      if (list === undefined) map.set(entry.keySlot, [entry]); else list.push(entry)
    } else if (cidr !== undefined) {
      this.#ips.add(cidr, entry)
    } else {
      this.#agents = [...this.#agents, entry]
    }
    return true
  }

  remove (id: string): boolean {
    const e = this.#byId.get(id)
    if (e === undefined) return false
    this.#byId.delete(id)
    if (e.keySlot !== undefined) {
      const map = e.cidr === undefined ? this.#keys : this.#keyIps
      const list = map.get(e.keySlot)!
      list.splice(list.indexOf(e), 1)
      if (list.length === 0) map.delete(e.keySlot)
    } else if (e.cidr !== undefined) {
      this.#ips.remove(e.cidr, e)
    } else {
      this.#agents = this.#agents.filter((a) => a !== e)
    }
    return true
  }

  /** Ids of blocks expired at `now`. */
  expired (now: number): string[] {
    const out: string[] = []
    for (const [id, e] of this.#byId) if (e.expiresAt <= now) out.push(id)
    return out
  }

  /**
   * The block that refuses this request, if any. `ip` is the client address after
   * trustedProxies (CIDR blocks match it); `net` the address as counted (shared/ip-prefix.ts),
   * which key-and-address blocks name. A block past its `expiresAt` no longer matches even
   * before it is swept.
   */
  match (route: string, envKey: string | undefined, ip: string, userAgent: string | undefined, now: number, net: string = ip): Block | undefined {
    const p = this.#probe
    p.route = route
    p.now = now
    let e: Entry | undefined
    if (envKey !== undefined && (this.#keys.size > 0 || this.#keyIps.size > 0)) {
      const d = keyDigest(envKey)
      const byKey = this.#keys.size === 0 ? undefined : this.#keys.get(d)
      if (byKey !== undefined) e = firstApplying(byKey, p)
      if (e === undefined && this.#keyIps.size > 0) {
        const byKeyIp = this.#keyIps.get(`${d}\n${net}`)
        if (byKeyIp !== undefined) e = firstApplying(byKeyIp, p)
      }
      if (e !== undefined) return e.block
    }
    if (this.#ips.size > 0) {
      e = this.#ips.find(ip, p, firstApplying)
      if (e !== undefined) return e.block
    }
    const agents = this.#agents
    if (agents.length > 0 && userAgent !== undefined) {
      for (let i = 0; i < agents.length; i++) {
        const a = agents[i]!
        if (a.expiresAt > now && (a.routes === null || a.routes.has(route)) && a.ua!.test(userAgent)) return a.block
      }
    }
    return undefined
  }
}
