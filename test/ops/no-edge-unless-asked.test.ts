/**
 * The policies we ship — config/gateway.yaml, the compose policy and the Kubernetes ConfigMap —
 * send nothing to Flagsmith's hosted Edge API unless an operator lists keys or a percentage (a
 * self-hosted Flagsmith has no Edge API; its keys must never reach the hosted one), with Core's
 * breaker closed or open; and the deployments protect Core with breakers.
 */
import { readFileSync } from 'node:fs'
import { parse as parseYaml, parseAllDocuments } from 'yaml'
import { describe, expect, it } from 'vitest'
import { decideEdge } from '../../src/edge/core.js'
import { loadPolicy } from '../../src/policy/load.js'
import type { Policy } from '../../src/policy/compile.js'

type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any -- manifests are free-form

function load (file: string, text: string, env: NodeJS.ProcessEnv): Policy {
  const r = loadPolicy(file, text, env)
  if (!r.ok) throw new Error(`${file} does not validate:\n${r.errors.map((e) => `${e.path}: ${e.message}`).join('\n')}`)
  return r.policy
}

function shipped (): Policy {
  return load('config/gateway.yaml', readFileSync('config/gateway.yaml', 'utf8'), {})
}

function compose (): Policy {
  const services = (parseYaml(readFileSync('deploy/docker-compose.yml', 'utf8'), { merge: true }) as Obj).services as Obj
  const gateway = Object.values(services).find((s: Obj) => s.image === 'flaggate:local') as Obj
  const env = Object.fromEntries(Object.entries(gateway.environment as Record<string, string>).map(([k, v]) =>
    [k, v.replace(/\$\{(\w+):\?[^}]*\}/, 'q7Fz2kP9wL4mN8rT1vX6bC3dH5jS0aE').replace(/\$\{\w+:-([^}]*)\}/, '$1')]))
  return load('deploy/compose/policy/gateway.yaml', readFileSync('deploy/compose/policy/gateway.yaml', 'utf8'), env)
}

function kubernetes (): Policy {
  const docs = parseAllDocuments(readFileSync('deploy/k8s/configmap.yaml', 'utf8')).map((d) => d.toJS() as Obj)
  const secret = parseAllDocuments(readFileSync('deploy/k8s/secret.yaml', 'utf8')).map((d) => d.toJS() as Obj).find((d) => d.kind === 'Secret')!
  const deployment = parseAllDocuments(readFileSync('deploy/k8s/deployment.yaml', 'utf8')).map((d) => d.toJS() as Obj).find((d) => d.kind === 'Deployment')!
  const container = deployment.spec.template.spec.containers[0] as Obj
  // the Secret ships a placeholder the gateway refuses: an operator sets a real token
  const env = Object.fromEntries((container.env as Obj[]).map((e) => [e.name as string, e.value ?? (e.name === 'FLAGGATE_ADMIN_TOKEN' ? 'q7Fz2kP9wL4mN8rT1vX6bC3dH5jS0aE' : secret.stringData[e.valueFrom.secretKeyRef.key])]))
  const configMap = docs.find((d) => d.kind === 'ConfigMap')!
  return load('gateway.yaml', configMap.data['gateway.yaml'] as string, env)
}

const POLICIES: Array<[string, () => Policy]> = [['config/gateway.yaml', shipped], ['compose', compose], ['Kubernetes', kubernetes]]
const KEYS = ['ser.abcdefghijklmnopqrstuv', 'AbCdEfGhIjKlMnOpQrStUv', 'env-key-1', 'x', ...Array.from({ length: 300 }, (_, i) => `key-${i}`)]

describe('shipped policies: no Edge traffic unless an operator asks', () => {
  for (const [name, policy] of POLICIES) {
    it(`${name}: every route keeps every key on Core, with Core's breaker closed or open`, () => {
      const p = policy()
      for (const route of p.routes) {
        if (route.edge === undefined) continue
        expect(route.edge.keys.size, route.name).toBe(0)
        expect(route.edge.percent, route.name).toBe(0)
        expect(route.edge.whenOpen, route.name).toBe(false)
        for (const method of ['GET', 'HEAD', 'POST']) {
          for (const upstreamOpen of [false, true]) {
            for (const key of [...KEYS, undefined]) {
              expect(decideEdge(route.edge, { routeUpstream: route.upstream, method, key, upstreamOpen }).upstream).toBe(route.upstream)
            }
          }
        }
      }
    })

    it(`${name}: listing a key or a percentage is what would send traffic to Edge`, () => {
      const p = policy()
      const flags = p.routes.find((r) => r.name === 'flags')!
      const asked = { percent: 0, keys: new Set(['ser.listed']), whenOpen: false }
      expect(decideEdge(asked, { routeUpstream: flags.upstream, method: 'GET', key: 'ser.listed', upstreamOpen: false }).upstream).toBe('edge')
      expect(decideEdge({ ...asked, percent: 100 }, { routeUpstream: flags.upstream, method: 'GET', key: 'other', upstreamOpen: false }).upstream).toBe('edge')
    })
  }

  it('the shipped config keeps a commented-out edge example, marked for Flagsmith\'s hosted Core only, and its environment variables', () => {
    const text = readFileSync('config/gateway.yaml', 'utf8')
    expect(text).toMatch(/^\s*# edge: \{ percent: 0, keys: \[\], whenOpen: true \}/m)
    expect(text).toMatch(/hosted Core .*only/)
    for (const v of ['FLAGGATE_LISTEN', 'FLAGGATE_ADMIN_LISTEN', 'FLAGGATE_ADMIN_TOKEN', 'FLAGSMITH_CORE_URL', 'FLAGSMITH_EDGE_URL', 'FLAGGATE_STATE_FILE']) {
      expect(text).toMatch(new RegExp(`^[^#\\n]*\\$\\{${v}:-[^}]*\\}`, 'm'))
    }
  })
})

describe('shipped policies protect Core', () => {
  for (const [name, policy] of POLICIES) {
    it(`${name}: breakers.core with the recommended settings`, () => {
      const b = policy().data.breakers.core
      expect(b).toBeDefined()
      expect(b!.maxInFlight).toMatchObject({ auto: { min: 3 } })
      expect(b!.latency).toMatchObject({ percentile: 95, above: 1000 })
      expect(b!.errorRate).toMatchObject({ above: 0.5 })
      expect(b!.recovery).toBeGreaterThan(0)
    })
  }
})
