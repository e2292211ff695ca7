/** Helpers shared by the attack tests: requests "from" an address through a trusted proxy hop. */
import { raw, type RawResponse } from '../support/http.js'

/** The gateway under test trusts 127.0.0.1 and ::1 as proxies, so X-Forwarded-For names the client. */
export const TRUST_LOOPBACK = '  trustedProxies: [127.0.0.1, "::1"]'

export async function from (base: string, path: string, ip: string, opts: { key?: string; ua?: string; method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  const headers: Record<string, string> = { 'x-forwarded-for': ip, ...opts.headers }
  if (opts.key !== undefined) headers['x-environment-key'] = opts.key
  if (opts.ua !== undefined) headers['user-agent'] = opts.ua
  return await raw(base, path, { headers, ...(opts.method !== undefined ? { method: opts.method } : {}), ...(opts.body !== undefined ? { body: opts.body } : {}) })
}

/** Polls `what` until `ok` or the timeout (for effects that land in the background: a block after the 429 that made it). */
export async function until<T> (what: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await what()
    if (ok(v) || Date.now() > deadline) return v
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}
