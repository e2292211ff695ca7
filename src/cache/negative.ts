/**
 * The negative cache: a 401/403 answer remembered for a short ttl, per key, upstream and path, so a
 * bad or revoked key hammering the gateway costs Core one request per ttl, not one per request.
 */
import { LRUCache } from 'lru-cache'
import type { Clock } from '../shared/clock.js'
import type { PurgeTarget, UpstreamAnswer } from './document.js'
import { negativeKey, negativeSize } from './entry-size.js'
import { matches } from './purge-target.js'

export const DEFAULT_NEGATIVE_TTL_MS = 5_000
export const DEFAULT_NEGATIVE_MAX_BYTES = 8 * 1024 * 1024
/** a 403 body is a short JSON error; anything bigger is not worth remembering */
const NEGATIVE_MAX_BODY_BYTES = 4096

export class NegativeCache {
  readonly #lru: LRUCache<string, UpstreamAnswer>

  constructor (clock: Clock, maxBytes = DEFAULT_NEGATIVE_MAX_BYTES, ttlMs = DEFAULT_NEGATIVE_TTL_MS) {
    this.#lru = new LRUCache<string, UpstreamAnswer>({
      maxSize: maxBytes,
      sizeCalculation: negativeSize,
      ttl: ttlMs,
      ttlResolution: 0,
      perf: { now: clock }
    })
  }

  get size (): number { return this.#lru.size }
  get bytes (): number { return this.#lru.calculatedSize }

  /** `url` is the document key after the env key: the upstream's name, a newline, the URL */
  has (envKey: string, url: string): boolean {
    return this.#lru.size > 0 && this.#lru.has(negativeKey(envKey, url))
  }

  get (envKey: string, url: string): UpstreamAnswer | undefined {
    return this.#lru.get(negativeKey(envKey, url))
  }

  /** Remembers a 401/403 answer (short ones only); other answers are ignored. */
  remember (envKey: string, url: string, answer: UpstreamAnswer): void {
    if ((answer.statusCode === 403 || answer.statusCode === 401) && answer.body.length <= NEGATIVE_MAX_BODY_BYTES) {
      this.#lru.set(negativeKey(envKey, url), answer)
    }
  }

  /**
   * Forgets what `target` names; returns how many went. Only key purges (in clear or as a digest)
   * and purge-all name remembered answers: their bodies are never parsed, so an environment or a
   * project purge cannot, and they wait for their ttl.
   */
  purge (target: PurgeTarget, digests: Map<string, string>): number {
    if ('all' in target) {
      const n = this.#lru.size
      this.#lru.clear()
      return n
    }
    let n = 0
    for (const k of keysNamed(this.#lru.keys(), target, digests)) if (this.#lru.delete(k)) n++
    return n
  }
}

/** The keys (env key, newline, rest) of `keys` that a key or key-digest purge names. */
export function keysNamed (keys: Iterable<string>, target: PurgeTarget, digests: Map<string, string>): string[] {
  const named: string[] = []
  if ('key' in target) {
    const prefix = `${target.key}\n`
    for (const k of keys) if (k.startsWith(prefix)) named.push(k)
  } else if ('keyDigest' in target) {
    for (const k of keys) if (matches(target, k.slice(0, k.indexOf('\n')), undefined, digests)) named.push(k)
  }
  return named
}
