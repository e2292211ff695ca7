/**
 * Connections to the upstreams: one undici Agent whose factory gives each origin its own
 * keep-alive Pool, sized by that upstream's `maxConnections`. The factory reads the settings in
 * force when the pool is created, so an origin first used after any number of reloads gets its
 * configured size; a reload that changes an existing origin's settings swaps in a new Agent (the
 * old one closes once its requests are done). TLS certificates are verified unless the policy
 * says otherwise.
 */
import { Agent, Pool } from 'undici'
import type { Policy } from '../policy/compile.js'

interface PoolSettings { readonly connections: number; readonly rejectUnauthorized: boolean }

/** undici's own default for an Agent's pools; used only for an origin no policy names */
const DEFAULT_CONNECTIONS = 128

export class Pools {
  #settings = new Map<string, PoolSettings>()
  #agent: Agent

  constructor () { this.#agent = this.#newAgent() }

  /** the Agent new requests go to */
  get dispatcher (): Agent { return this.#agent }

  #newAgent (): Agent {
    return new Agent({
      factory: (origin, opts) => {
        // `this.#settings`, not a copy: the live map is what makes later origins get their size
        const s = this.#settings.get(new URL(String(origin)).origin)
        // keep-alive sockets idle for undici's default 4 s at most (a server hint may shorten it)
        return new Pool(origin, {
          ...opts,
          connections: s?.connections ?? DEFAULT_CONNECTIONS,
          pipelining: 1,
          connect: { rejectUnauthorized: s?.rejectUnauthorized ?? true }
        })
      }
    })
  }

  /** The pool settings an origin gets (for the admin view and tests). */
  settingsOf (origin: string): Readonly<PoolSettings> | undefined { return this.#settings.get(origin) }

  /** Called on every (re)load, before the policy serves requests. */
  configure (policy: Policy): void {
    const next = new Map<string, PoolSettings>()
    for (const u of Object.values(policy.upstreams)) {
      next.set(new URL(u.url).origin, { connections: u.maxConnections, rejectUnauthorized: u.tls?.rejectUnauthorized ?? true })
    }
    let changed = false
    for (const [origin, s] of this.#settings) {
      const n = next.get(origin)
      if (n !== undefined && (n.connections !== s.connections || n.rejectUnauthorized !== s.rejectUnauthorized)) changed = true
    }
    for (const [origin, s] of next) this.#settings.set(origin, s)
    if (changed) {
      const old = this.#agent
      this.#agent = this.#newAgent()
      void old.close().catch(() => {})
    }
  }

  /** Graceful when `force` is false; past the shutdown deadline, hung upstream requests are cut. */
  async close (force = false): Promise<void> {
    const agent = this.#agent
    if (force) { await agent.destroy().catch(() => {}); return }
    await agent.close().catch(async () => await agent.destroy())
  }
}
