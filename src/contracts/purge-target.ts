/** What a purge names: the cache drops it, local evaluation refreshes it (a Flagsmith webhook or an operator's purge). */
export type PurgeTarget =
  | { all: true }
  /** every document of this environment key (all paths and pages) */
  | { key: string }
  /**
   * the same, naming the key by the cache's `keyDigestOf`: how a key purge travels between replicas, so
   * Redis pub/sub never carries an environment key in clear
   */
  | { keyDigest: string }
  /** every document whose `id` is this environment id */
  | { envId: number }
  | { projectId: number }
