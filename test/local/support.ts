/** Helpers of the local-evaluation gateway tests. */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { policyYaml, type TestGateway } from '../support/gateway.js'
import { json, raw } from '../support/http.js'

export function localYaml (coreUrl: string, local: string, extra = ''): string {
  return policyYaml({ coreUrl, coreTimeout: '2s', adminToken: 'a-very-long-admin-token', extra: `localEvaluation:\n${local}\n${extra}` })
}

export function stateDir (): string { return mkdtempSync(join(tmpdir(), 'flaggate-local-')) }

/** Waits (on the admin status, no fixed sleeps) until the environment's last refresh says `result`. */
export async function untilRefreshed (gw: TestGateway, result: string | RegExp = /ok|not-modified|shared/, index = 0): Promise<Record<string, unknown>> {
  for (let i = 0; i < 400; i++) {
    const s = json(await raw(gw.adminUrl, '/admin/status', { headers: { authorization: 'Bearer a-very-long-admin-token' } })) as { localEvaluation: { environments: Array<Record<string, unknown>> } }
    const env = s.localEvaluation.environments[index]!
    const last = env.lastRefresh as { result: string } | null
    if (last !== null && (typeof result === 'string' ? last.result === result : result.test(last.result))) return env
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error(`the document never refreshed with ${String(result)}`)
}

