/**
 * The fixture most gateway tests open with: an upstream on an ephemeral port (a fake Core by
 * default, or any other fake such as the recording upstream), an in-process gateway in front of
 * it, both started before the tests of the enclosing `describe` (or file) and closed after them.
 *
 *   const t = useGateway()                                           // fake Core, default policy
 *   const t = useGateway({ upstream: startRecordingUpstream })        // another upstream
 *   const t = useGateway({ policy: (url) => policyYaml({ coreUrl: url, routes }) })
 *   it('...', async () => { await raw(t.gw.url, ...); expect(t.upstream.counts()).toBe(1) })
 *
 * `scope: 'each'` starts a fresh pair for every test instead of one for the whole block.
 */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest'
import { startFakeCore, type FakeCore } from './fake-flagsmith.js'
import { policyYaml, startTestGateway, type TestGateway } from './gateway.js'

interface Closable { url: string; close: () => Promise<unknown> }

export interface GatewayFixtureOptions<U extends Closable> {
  /** starts the upstream the gateway proxies to; a fake Core unless said otherwise */
  upstream?: () => Promise<U>
  /** the policy, given the upstream's URL; `policyYaml({ coreUrl })` unless said otherwise */
  policy?: (upstreamUrl: string) => string
  /** options of `startTestGateway` (environment, whether to watch the policy file) */
  gateway?: Parameters<typeof startTestGateway>[1]
  /** one pair for the whole block (`all`, the default) or a fresh pair for each test */
  scope?: 'all' | 'each'
}

export interface GatewayFixture<U> {
  readonly upstream: U
  readonly gw: TestGateway
}

export function useGateway (opts?: Omit<GatewayFixtureOptions<FakeCore>, 'upstream'>): GatewayFixture<FakeCore>
export function useGateway<U extends Closable> (opts: GatewayFixtureOptions<U> & { upstream: () => Promise<U> }): GatewayFixture<U>
export function useGateway<U extends Closable> (opts: GatewayFixtureOptions<U> = {}): GatewayFixture<U> {
  let upstream: U | undefined
  let gw: TestGateway | undefined
  const start = async (): Promise<void> => {
    upstream = await (opts.upstream ?? (startFakeCore as unknown as () => Promise<U>))()
    gw = await startTestGateway((opts.policy ?? ((url) => policyYaml({ coreUrl: url })))(upstream.url), opts.gateway)
  }
  const stop = async (): Promise<void> => {
    await gw?.close()
    await upstream?.close()
    gw = undefined
    upstream = undefined
  }
  if (opts.scope === 'each') { beforeEach(start); afterEach(stop) } else { beforeAll(start); afterAll(stop) }
  const started = <T>(what: string, x: T | undefined): T => {
    if (x === undefined) throw new Error(`useGateway: the ${what} is used outside a test (it starts before the tests and closes after them)`)
    return x
  }
  return {
    get upstream () { return started('upstream', upstream) },
    get gw () { return started('gateway', gw) }
  }
}
