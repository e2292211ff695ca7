/** A real gateway in front of a fake Core, with the environment document cached by `rule`. */
import { onTestFinished } from 'vitest'
import { startFakeCore, type FakeCore, type FakeCoreOptions } from '../support/fake-flagsmith.js'
import { policyYaml, startTestGateway, type PolicyOptions, type TestGateway } from '../support/gateway.js'
import { raw, type RawResponse } from '../support/http.js'

export const ENV_DOC = '/api/v1/environment-document/'
export const DEV_KEY = 'ser.dev_server_key'
export const PROD_KEY = 'ser.prod_server_key'
export const PROD_KEY_2 = 'ser.prod_server_key_2'
export const WEBHOOK_SECRET = 'webhook-secret-for-tests'

export interface CacheRuleYaml { ttl?: string; staleWhileRevalidate?: string; staleIfError?: string; maxEntrySize?: string }

export function cachedRoutes (rule: CacheRuleYaml = {}, limit?: string): string {
  const fields = Object.entries({ ttl: '30s', ...rule }).map(([k, v]) => `${k}: ${v}`).join(', ')
  return `  - name: environment-document
    match: { methods: [GET, HEAD], path: /api/v1/environment-document/ }
    upstream: core
    cache: { ${fields} }
${limit === undefined ? '' : `    limit: ${limit}\n`}  - name: default
    match: { pathPrefix: / }
    upstream: core`
}

export interface Setup { core: FakeCore; gw: TestGateway }

export async function startCached (opts: { rule?: CacheRuleYaml; limit?: string; core?: FakeCoreOptions; policy?: Partial<PolicyOptions>; extra?: string } = {}): Promise<Setup> {
  const core = await startFakeCore(opts.core)
  onTestFinished(core.close)
  const yaml = policyYaml({
    coreUrl: core.url,
    routes: cachedRoutes(opts.rule, opts.limit),
    extra: `webhooks:
  flagsmith:
    path: /webhooks/flagsmith
    secret: ${WEBHOOK_SECRET}
${opts.extra ?? ''}`,
    ...opts.policy
  })
  const gw = await startTestGateway(yaml, { watch: false })
  onTestFinished(gw.close)
  return { core, gw }
}

export async function envDoc (gw: { url: string }, key: string | undefined, headers: Record<string, string> = {}, path = ENV_DOC, method = 'GET'): Promise<RawResponse> {
  return await raw(gw.url, path, { method, headers: { ...(key === undefined ? {} : { 'x-environment-key': key }), ...headers } })
}

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Polls until `check` holds or `timeoutMs` passes; returns whether it held. */
export async function eventually (check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() >= deadline) return false
    await sleep(everyMs)
  }
}
