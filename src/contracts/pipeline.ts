/**
 * The request pipeline in one table: every step of a proxied request, in the order it runs, the
 * fastify hook it uses and what it may decide. The public app (app.ts) registers the steps from
 * this table, in this order; nothing else orders them. Fastify runs hooks of one kind in the order
 * they were registered, and every onRequest hook before any preHandler, so the table's order is
 * the order a request meets the steps.
 *
 * The order is the product:
 * - a blocked client gets its 403 before anything else looks at it: no token, no cache, no Core;
 * - Edge is chosen before the cache and the limits, so the cache key, the fill and the proxy all
 *   see the upstream the request really goes to;
 * - a conditional request the cache can answer 304 costs no token (the client already holds the
 *   document; answering it is cheaper than refusing it);
 * - the rate limit comes before a fresh HIT: a HIT costs a token, so a client cannot read past
 *   its limit by asking for a cached document;
 * - the unknown-key budget comes after every step that can answer without the upstream, so it
 *   is spent only by requests that are going there (a HIT or a 304 never spends it);
 * - the cache lookup (preHandler) coalesces a MISS into one Core request per document;
 * - the proxy is the route handler: only what no step answered reaches Core.
 *
 * A step that answers ends the request there (fastify skips the rest of the chain). `decides`
 * lists the decisions (`decisionOf`, contracts/request.ts) a step's answer may be reported as;
 * a request no step answered is `allowed`, unless it was shed (the proxy's gate, or routing's
 * body budget).
 *
 * `local` (src/local) answers a listed environment's flags/ and identities/ from its document in
 * `mode: always` (an identity POST in preHandler, once its body is read); in `mode: fallback` it
 * only leaves `request.gateway.localFallback`, which the proxy and the error handler call when
 * the upstream fails. It runs after the limits and before a fresh HIT, so always mode answers
 * before any cache or Core is asked.
 */
export const PIPELINE = [
  { step: 'routing', hook: 'onRequest', component: 'routing', decides: ['shed'], does: 'matches the policy route, canonicalises the path, creates request.gateway; answers 404/400 itself, and 503 (shed) past the body budget' },
  { step: 'block', hook: 'onRequest', component: 'blocking', decides: ['blocked'], does: 'answers 403 to a blocked key, IP or user agent' },
  { step: 'edge', hook: 'onRequest', component: 'edge', decides: [], does: 'chooses Core or Edge for this request (and the read fallback)' },
  { step: 'conditional', hook: 'onRequest', component: 'cache', decides: ['cached'], does: 'answers 304 from the cache to If-None-Match / If-Modified-Since, costing no token' },
  { step: 'rate-limit', hook: 'onRequest', component: 'rate-limit', decides: ['limited'], does: 'takes a token of every limit in force, or answers 429' },
  { step: 'local', hook: 'onRequest', component: 'local', decides: ['local'], does: 'answers a listed environment\'s flags/ and identities/ from its document (always), or arms the answer to give when Core fails (fallback)' },
  { step: 'fresh-hit', hook: 'onRequest', component: 'cache', decides: ['cached'], does: 'answers a fresh cached document (a HIT costs a token)' },
  { step: 'unknown-keys', hook: 'onRequest', component: 'rate-limit', decides: ['limited'], does: 'spends the client address\'s unknownKeys budget for a key Core has not accepted, or answers 429; only requests no earlier step answered' },
  { step: 'lookup', hook: 'preHandler', component: 'cache', decides: ['cached', 'stale'], does: 'serves stale or fills the cache, one Core request per document' },
  { step: 'proxy', hook: 'handler', component: 'upstream', decides: ['shed'], does: 'streams the request to the chosen upstream (through its gate) and the answer back' }
] as const

export type PipelineStep = typeof PIPELINE[number]
export type StepName = PipelineStep['step']
/** the steps a capability plugs into; routing and the proxy belong to the public app itself */
export type CapabilityStep = Exclude<StepName, 'routing' | 'proxy'>
