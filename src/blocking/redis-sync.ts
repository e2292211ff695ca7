/**
 * Runtime and automatic blocks shared by every replica through Redis:
 * - stored in one hash, `<keyPrefix>{blocks}` (field = block id, value = the block as JSON, the
 *   key as a digest only), with a version counter `<keyPrefix>{blocks}:version` bumped on every
 *   change (one hash tag, so both sit in one Cluster slot);
 * - pushed to the other replicas on `<keyPrefix>blocks` (pub/sub), which on a healthy Redis takes
 *   milliseconds;
 * - resynced every `resyncMs` (10 s): a replica whose subscription dropped, or that was down,
 *   catches up by comparing the version and, when it moved, reading the hash again (HSCAN in
 *   pages, so 10,000 blocks never make one slow command);
 * - loaded in full at start.
 * Requests never wait for Redis: matching reads the in-memory registry. While Redis is unusable,
 * blocks made here are in force here at once and queued; they are written (and published) when
 * it answers again. Hash fields cannot expire on Redis 7.0, so every replica deletes the blocks
 * whose time is up when it sweeps them (idempotent).
 *
 * A replica started while Redis is down enforces the blocks its state file last mirrored
 * (capability.ts); once Redis answers, Redis is the truth: those it no longer holds are dropped
 * by the first load, unless Redis holds no block history at all (lost its data), where the file
 * is the best copy left and is written back, as a running replica does.
 */
import { BlockMessageSchema } from '../store/fleet-messages.js'
import type { Cluster, Redis } from 'ioredis'
import type { FleetChannel, FleetTopic } from '../store/fleet-channel.js'
import { blockFromJson, describeTarget, type Block } from './core.js'
import type { BlockRegistry } from './registry.js'
import type { BlockBackend, BlockLogger } from './backend.js'

/** What this module needs from src/store/redis.ts's RedisStore. */
export interface BlockSyncRedis {
  readonly client: Redis | Cluster
  readonly keyPrefix: string
  readonly usable: boolean
  /** pub/sub between replicas: subscribe, skip own messages, catch up after a dropped subscription */
  readonly fleet: FleetChannel
  reportFailure (err: unknown): void
}

export interface RedisBlockSyncOptions {
  /** full check against Redis (version, then the hash if it moved); default 10 s */
  resyncMs?: number
  /** retry period while Redis is unusable and something waits to be written or loaded; default 250 ms */
  retryMs?: number
  /** how long start waits for the first load before serving anyway; default 1 s */
  readyTimeoutMs?: number
}

/**
 * `version`: the counter after this change, so a replica that saw every change needs no reload.
 * `from` is the sending replica's fleet channel id (the channel skips this replica's own).
 */
export type BlockMessage = { v: 1; from: string; version: number; op: 'add'; block: Block } | { v: 1; from: string; version: number; op: 'remove'; id: string }

/**
 * The blocks topic's check of a message: the one place a schema of it plugs in. A block is read
 * by blockFromJson, as from the hash; `version` is optional, as replicas have always treated it.
 */
export function parseBlockMessage (raw: unknown): BlockMessage | undefined {
  // anyone who can write to Redis can publish here: the schema first, before any field is read
  if (!BlockMessageSchema.safeParse(raw).success) return undefined
  const msg = raw as Record<string, unknown>
  if (msg.v !== 1 || typeof msg.from !== 'string') return undefined
  const version = typeof msg.version === 'number' ? msg.version : undefined
  if (msg.op === 'add') {
    const block = blockFromJson(msg.block)
    return block === undefined ? undefined : { v: 1, from: msg.from, version: version as number, op: 'add', block }
  }
  if (msg.op === 'remove' && typeof msg.id === 'string') return { v: 1, from: msg.from, version: version as number, op: 'remove', id: msg.id }
  return undefined
}

const SCAN_PAGE = 500

export class RedisBlockSync implements BlockBackend {
  readonly hashKey: string
  readonly versionKey: string
  readonly channel: string
  readonly #redis: BlockSyncRedis
  readonly #registry: BlockRegistry
  readonly #log: BlockLogger
  readonly #resyncMs: number
  readonly #retryMs: number
  readonly #readyTimeoutMs: number
  readonly #pendingAdds = new Map<string, Block>()
  readonly #pendingRemoves = new Set<string>()
  /** local time each shared block was last written, received or loaded: a full load started before that must not drop it */
  readonly #seen = new Map<string, number>()
  #version: string | null | undefined
  #loaded = false
  #forceLoad = false
  #resolveReady: () => void = () => {}
  readonly #ready: Promise<void>
  #topic: FleetTopic | undefined
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #closed = false
  #lastSyncAt: number | undefined
  #fullLoads = 0
  #lastError: string | undefined
  /** blocks the state file gave at start, until Redis first answers */
  #restored: Block[] = []

  constructor (redis: BlockSyncRedis, registry: BlockRegistry, logger: BlockLogger, opts: RedisBlockSyncOptions = {}) {
    this.#redis = redis
    this.#registry = registry
    this.#log = logger
    this.#resyncMs = opts.resyncMs ?? 10_000
    this.#retryMs = opts.retryMs ?? 250
    this.#readyTimeoutMs = opts.readyTimeoutMs ?? 1000
    this.hashKey = `${redis.keyPrefix}{blocks}`
    this.versionKey = `${redis.keyPrefix}{blocks}:version`
    this.channel = `${redis.keyPrefix}blocks`
    this.#ready = new Promise((resolve) => { this.#resolveReady = resolve })
  }

  start (): void {
    this.#topic = this.#redis.fleet.topic({
      name: 'blocks',
      parse: parseBlockMessage,
      receive: (msg) => { if (!this.#closed) this.#receive(msg) },
      // messages sent while the subscription was down are lost, so read everything again
      missed: () => { if (!this.#closed) { this.#forceLoad = true; this.#schedule(0) } },
      subscribeFailed: 'block subscription failed; blocks from other replicas arrive with the periodic resync until it reconnects'
    })
    this.#schedule(0)
  }

  /** The blocks the state file restored (in force until Redis answers; see the header). */
  restoredFromFile (blocks: readonly Block[]): void { this.#restored = [...blocks] }

  async ready (): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.#ready, new Promise<void>((resolve) => { timer = setTimeout(resolve, this.#readyTimeoutMs) })])
    clearTimeout(timer)
    if (!this.#loaded) this.#log.warn({ waitedMs: this.#readyTimeoutMs }, 'blocks not loaded from Redis yet: serving with the static blocks, loading in the background')
  }

  added (block: Block): void {
    this.#pendingRemoves.delete(block.id)
    this.#pendingAdds.set(block.id, block)
    this.#seen.set(block.id, this.#registry.clock())
    this.#schedule(0)
  }

  removed (id: string): void {
    this.#pendingAdds.delete(id)
    this.#pendingRemoves.add(id)
    this.#seen.delete(id)
    this.#schedule(0)
  }

  expired (blocks: readonly Block[]): void {
    for (const b of blocks) this.#seen.delete(b.id)
    if (!this.#redis.usable || blocks.length === 0) return
    this.#redis.client.hdel(this.hashKey, ...blocks.map((b) => b.id)).catch((err: unknown) => { this.#fail(err) })
  }

  status (): Record<string, unknown> {
    return {
      kind: 'redis',
      loaded: this.#loaded,
      pendingWrites: this.#pendingAdds.size + this.#pendingRemoves.size,
      fullLoads: this.#fullLoads,
      ...(this.#lastSyncAt !== undefined ? { lastSyncAt: new Date(this.#lastSyncAt).toISOString() } : {}),
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {})
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#topic?.close()
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    // one last attempt for blocks made while Redis was away; bounded by the command timeout
    if (this.#running !== undefined) await this.#running
    if (this.#pendingAdds.size + this.#pendingRemoves.size > 0 && this.#redis.usable) await this.#flush().catch(() => false)
    if (this.#pendingAdds.size + this.#pendingRemoves.size > 0) {
      this.#log.error({ pending: [...this.#pendingAdds.values()].map((b) => ({ id: b.id, target: describeTarget(b) })), removals: [...this.#pendingRemoves] }, 'blocks made or lifted while Redis was unreachable were never written: the other replicas do not know them')
    }
  }

  #schedule (delayMs: number): void {
    if (this.#closed) return
    if (this.#running !== undefined && delayMs === 0) { this.#forceAfter = true; return }
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#running = this.#tick().finally(() => {
        this.#running = undefined
        if (this.#forceAfter) { this.#forceAfter = false; this.#schedule(0) }
      })
    }, delayMs)
    this.#timer.unref()
  }

  #forceAfter = false

  async #tick (): Promise<void> {
    if (this.#closed) return
    // before the first load, poll briefly: the store turns usable right after its first heartbeat,
    // and start waits for this load
    if (!this.#redis.usable) { this.#schedule(!this.#loaded ? 50 : this.#needsRedis() ? this.#retryMs : this.#resyncMs); return }
    try {
      // Before writing anything: a block queued during the outage, written first, would start the
      // counter again from 1 and hide the loss, and the load below would drop every other block
      const held = await this.#redis.client.get(this.versionKey)
      if (!this.#loaded && held === null) {
        // no block history in Redis: it lost its data; what the file restored is all that is left
        for (const b of this.#restored) {
          const current = this.#registry.get(b.id)
          if (current !== undefined && !this.#pendingRemoves.has(b.id)) this.#pendingAdds.set(b.id, current)
        }
      }
      this.#restored = []
      if (this.#lostData(held)) {
        // Redis lost its data (restarted without persistence, flushed). What this replica holds
        // is the best copy left: write it back rather than drop it, then read what the others
        // wrote back and count from there.
        const shared = this.#registry.shared()
        this.#log.warn({ blocks: shared.length }, 'blocks vanished from Redis; writing back the ones this replica holds')
        for (const b of shared) if (!this.#pendingRemoves.has(b.id)) this.#pendingAdds.set(b.id, b)
        this.#forceLoad = true
      }
      if (!await this.#flush()) { this.#schedule(this.#retryMs); return }
      const version = await this.#redis.client.get(this.versionKey)
      if (!this.#loaded || this.#forceLoad || version !== this.#version) {
        this.#forceLoad = false
        await this.#fullLoad()
        this.#fullLoads++
        this.#version = version
      }
      this.#lastSyncAt = Date.now()
      this.#lastError = undefined
      if (!this.#loaded) {
        this.#loaded = true
        this.#log.info({ blocks: this.#registry.shared().length }, 'blocks loaded from Redis')
        this.#resolveReady()
      }
      this.#schedule(this.#resyncMs)
    } catch (err) {
      this.#fail(err)
      this.#schedule(this.#retryMs)
    }
  }

  /**
   * The counter only ever goes up while Redis keeps its data: gone, or below the version this
   * replica already holds, means Redis lost the hash (a replica that wrote first started it again).
   */
  #lostData (version: string | null): boolean {
    if (!this.#loaded || this.#version === undefined || this.#version === null || this.#version === '0') return false
    return version === null || Number(version) < Number(this.#version)
  }

  #needsRedis (): boolean {
    return !this.#loaded || this.#pendingAdds.size + this.#pendingRemoves.size > 0
  }

  /** Writes what waits; true when nothing is left. */
  async #flush (): Promise<boolean> {
    const client = this.#redis.client
    try {
      for (const [id, block] of [...this.#pendingAdds]) {
        const [, version] = await Promise.all([client.hset(this.hashKey, id, JSON.stringify(block)), client.incr(this.versionKey)])
        this.#advance(version)
        await this.#publish({ v: 1, version, op: 'add', block })
        if (this.#pendingAdds.get(id) === block) this.#pendingAdds.delete(id)
      }
      for (const id of [...this.#pendingRemoves]) {
        const [, version] = await Promise.all([client.hdel(this.hashKey, id), client.incr(this.versionKey)])
        this.#advance(version)
        await this.#publish({ v: 1, version, op: 'remove', id })
        this.#pendingRemoves.delete(id)
      }
      return true
    } catch (err) {
      this.#fail(err)
      return false
    }
  }

  /**
   * A change numbered `version` was applied here: when it directly follows the last version this
   * replica holds, it is still in step and the next resync needs no reload. A gap (a missed
   * message, a concurrent writer) leaves the version behind, and the resync reloads.
   */
  #advance (version: number): void {
    if (this.#version === undefined) return // not loaded yet: the first load reads the version
    const held = this.#version === null ? 0 : Number(this.#version)
    if (held + 1 === version) this.#version = String(version)
  }

  async #fullLoad (): Promise<void> {
    const startedAt = this.#registry.clock()
    const found = new Map<string, Block>()
    let cursor = '0'
    do {
      const [next, flat] = await this.#redis.client.hscan(this.hashKey, cursor, 'COUNT', SCAN_PAGE)
      cursor = next
      for (let i = 0; i + 1 < flat.length; i += 2) {
        let b: Block | undefined
        try { b = blockFromJson(JSON.parse(flat[i + 1]!)) } catch { b = undefined }
        if (b !== undefined && b.id === flat[i]) found.set(b.id, b)
      }
    } while (cursor !== '0')

    const now = this.#registry.clock()
    const expired: string[] = []
    for (const [id, b] of found) {
      if (this.#pendingRemoves.has(id)) continue
      if (b.expiresAt !== undefined && b.expiresAt <= now) { expired.push(id); continue }
      const mine = this.#registry.get(id)
      if (mine === undefined || JSON.stringify(mine) !== JSON.stringify(b)) this.#registry.upsert(b)
      this.#seen.set(id, startedAt)
    }
    for (const b of this.#registry.shared()) {
      if (found.has(b.id) || this.#pendingAdds.has(b.id)) continue
      // lifted (or expired) elsewhere while our message was lost; unless it arrived after the scan began
      if ((this.#seen.get(b.id) ?? 0) < startedAt) { this.#registry.delete(b.id); this.#seen.delete(b.id) }
    }
    if (expired.length > 0) await this.#redis.client.hdel(this.hashKey, ...expired)
  }

  /** the fleet channel stamps `from`; the topic exists once started (a change before start waits in the pending maps) */
  async #publish (message: BlockMessage extends infer M ? M extends BlockMessage ? Omit<M, 'from'> : never : never): Promise<void> {
    if (this.#topic === undefined) throw new Error('block sync not started')
    await this.#topic.publishNow(message)
  }

  #receive (msg: BlockMessage): void {
    if (typeof msg.version === 'number') this.#advance(msg.version)
    if (msg.op === 'add') {
      const b = msg.block
      if (this.#pendingRemoves.has(b.id)) return
      if (this.#registry.upsert(b)) {
        this.#seen.set(b.id, this.#registry.clock())
        this.#log.info({ id: b.id, source: b.source, target: describeTarget(b), actor: b.actor }, 'block from another replica')
      }
    } else {
      this.#pendingAdds.delete(msg.id)
      this.#seen.delete(msg.id)
      if (this.#registry.delete(msg.id) !== undefined) this.#log.info({ id: msg.id }, 'block lifted on another replica')
    }
  }

  #fail (err: unknown): void {
    this.#lastError = err instanceof Error ? err.message : String(err)
    this.#redis.reportFailure(err)
  }
}
