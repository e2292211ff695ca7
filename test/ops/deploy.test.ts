/**
 * Everything under deploy/: each YAML and JSON file parses; the compose file and the Kubernetes
 * manifests have the properties a production deployment depends on (probe paths, a grace period
 * longer than the drain, the admin port kept private, a policy that validates, a ConfigMap mount
 * that can reload); the Prometheus rules pass `promtool` when it is installed; the dashboard and
 * the alerts use only metrics the gateway exports (test/ops/metric-names.ts).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments, parse as parseYaml } from 'yaml'
import { describe, expect, it } from 'vitest'
import { loadPolicy } from '../../src/policy/load.js'
import type { Policy } from '../../src/policy/compile.js'
import { SHIPPED_ADMIN_TOKEN_PLACEHOLDER } from '../../src/policy/placeholder.js'
import { baseMetricName, PENDING_METRICS, PROCESS_METRICS, SECTION7_METRICS } from './metric-names.js'

type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any -- manifests are free-form

function filesUnder (dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f)
    return statSync(p).isDirectory() ? filesUnder(p) : [p]
  })
}

const DEPLOY = filesUnder('deploy')
// merge keys (`<<: *flaggate`) as docker compose reads them
const yamlFile = (p: string): Obj => parseYaml(readFileSync(p, 'utf8'), { merge: true }) as Obj
const k8s = (kind: string): Obj => {
  const found = DEPLOY.filter((p) => p.startsWith('deploy/k8s/') && /\.ya?ml$/.test(p)).map(yamlFile).filter((d) => d.kind === kind)
  expect(found, `one ${kind} in deploy/k8s`).toHaveLength(1)
  return found[0]!
}

/** Validates a policy text as `flaggate validate` would, in the environment the deployment gives the process. */
function validPolicy (file: string, text: string, env: NodeJS.ProcessEnv): Policy {
  const result = loadPolicy(file, text, env)
  if (!result.ok) throw new Error(`${file} does not validate:\n${result.errors.map((e) => `${e.path}: ${e.message}`).join('\n')}`)
  return result.policy
}

const seconds = (s: string): number => {
  const m = /^(\d+)(s|m)$/.exec(s)
  if (m === null) throw new Error(`not a compose duration: ${s}`)
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1)
}

describe('deploy/', () => {
  it('every YAML and JSON file parses', () => {
    const parsed = DEPLOY.filter((p) => /\.(ya?ml|json)$/.test(p))
    expect(parsed.length).toBeGreaterThanOrEqual(9)
    for (const p of parsed) {
      const text = readFileSync(p, 'utf8')
      if (p.endsWith('.json')) { expect(() => JSON.parse(text), p).not.toThrow(); continue }
      const docs = parseAllDocuments(text, { merge: true })
      for (const d of Array.isArray(docs) ? docs : [docs]) expect(d.errors.map((e) => e.message), p).toEqual([])
    }
  })
})

describe('docker-compose.yml', () => {
  const compose = yamlFile('deploy/docker-compose.yml')
  const services = compose.services as Obj
  const gateways = Object.entries(services).filter(([, s]) => s.image === 'flaggate:local')
  const policyText = readFileSync('deploy/compose/policy/gateway.yaml', 'utf8')
  // the compose file's environment, with what it demands from the shell (${VAR:?...}) filled in
  const composeEnv = Object.fromEntries(Object.entries(gateways[0]![1].environment as Record<string, string>).map(([k, v]) =>
    [k, v.replace(/\$\{(\w+):\?[^}]*\}/, '5f2b9c0e7a1d4b3c8e6f0a9d2c7b1e4f').replace(/\$\{\w+:-([^}]*)\}/, '$1')]))
  const policy = validPolicy('gateway.yaml', policyText, composeEnv)

  it('runs two gateway replicas sharing one Redis, behind a load balancer that knows both', () => {
    expect(gateways.map(([name]) => name)).toEqual(['flaggate-1', 'flaggate-2'])
    expect(services.redis.image).toMatch(/^redis:/)
    for (const [, g] of gateways) {
      expect(g.environment.REDIS_URL).toBe('redis://redis:6379')
      expect(g.depends_on.redis.condition).toBe('service_healthy')
      expect(g.build).toEqual({ context: '..', dockerfile: 'Dockerfile' })
    }
    expect(policy.data.store?.redis.url).toBe('redis://redis:6379')
    const nginx = readFileSync('deploy/compose/nginx.conf', 'utf8')
    const servers = [...nginx.matchAll(/^\s*server\s+([\w.-]+):(\d+)/gm)].map((m) => `${m[1]}:${m[2]}`)
    expect(servers).toEqual(gateways.map(([name]) => `${name}:${policy.data.server.listen.port}`))
    expect(services.lb.volumes).toContain('./compose/nginx.conf:/etc/nginx/nginx.conf:ro')
  })

  it('publishes only the load balancer to the world; admin ports on loopback only', () => {
    expect(services.lb.ports).toEqual(['8080:8080'])
    for (const [, g] of gateways) for (const p of g.ports as string[]) expect(p).toMatch(new RegExp(`^127\\.0\\.0\\.1:\\d+:${policy.data.admin.listen.port}$`))
    expect(services.redis.ports).toBeUndefined()
  })

  it('waits for the drain: stop_grace_period above server.shutdownTimeout; the policy trusts the compose network only', () => {
    for (const [, g] of gateways) expect(seconds(g.stop_grace_period) * 1000).toBeGreaterThan(policy.data.server.shutdownTimeout)
    const subnet = compose.networks.flaggate.ipam.config[0].subnet as string
    expect(policy.data.server.trustedProxies).toEqual([subnet])
    // a directory mount, so an edit (a rename) reaches the gateway's directory watch
    for (const [, g] of gateways) expect(g.volumes).toContain('./compose/policy:/etc/flaggate:ro')
  })

  it('gives each replica its own volume at the image\'s state directory (/var/lib/flaggate)', () => {
    const states = gateways.map(([, g]) => (g.volumes as string[]).find((v) => v.endsWith(':/var/lib/flaggate')))
    for (const v of states) expect(v).toBeDefined()
    expect(new Set(states).size).toBe(gateways.length)
    for (const v of states) expect(Object.keys(compose.volumes)).toContain(v!.split(':')[0])
  })
})

describe('Kubernetes manifests', () => {
  const deployment = k8s('Deployment')
  const pod = deployment.spec.template.spec as Obj
  const container = pod.containers[0] as Obj
  const configMap = k8s('ConfigMap')
  const secret = k8s('Secret')
  const service = k8s('Service')
  const pdb = k8s('PodDisruptionBudget')
  // the container's env: literal values, and the Secret's values for secretKeyRefs
  const podEnv = Object.fromEntries((container.env as Obj[]).map((e) => [e.name as string,
    e.value ?? (e.valueFrom.secretKeyRef.name === secret.metadata.name ? secret.stringData[e.valueFrom.secretKeyRef.key] : undefined)]))
  // the Secret ships a placeholder admin token, which validation refuses (src/policy/placeholder.ts):
  // the policy validates once the Secret holds a real one
  const realToken = 'b1946ac92492d2347c6235b4d2611184a1c6f1d8e0b9c3a7'
  const policy = validPolicy('gateway.yaml', configMap.data['gateway.yaml'] as string, { ...podEnv, FLAGGATE_ADMIN_TOKEN: realToken })
  const port = (name: string): number => (container.ports as Obj[]).find((p) => p.name === name)!.containerPort as number

  it('the ConfigMap holds a policy that validates with the env the Deployment gives it', () => {
    expect(policy.data.store?.redis).toBeDefined()
    expect(policy.data.admin.token).toBe(realToken)
    expect(policy.data.upstreams.core!.url).toBe('https://api.flagsmith.com')
    expect(policy.data.probes.map((p) => p.name)).toEqual(['flags', 'environment-document'])
    expect(port('http')).toBe(policy.data.server.listen.port)
    expect(port('admin')).toBe(policy.data.admin.listen.port)
  })

  it('the Secret\'s placeholder admin token is refused: applying the manifests unedited does not start', () => {
    expect(secret.stringData['admin-token']).toBe(SHIPPED_ADMIN_TOKEN_PLACEHOLDER)
    const r = loadPolicy('gateway.yaml', configMap.data['gateway.yaml'] as string, podEnv)
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.errors.map((e) => `${e.path}: ${e.message}`)).toEqual([expect.stringMatching(/^admin\.token: .*placeholder shipped in deploy\/k8s\/secret\.yaml: set a random token/)])
  })

  it('probes: liveness /healthz, readiness /readyz, both on the public listener', () => {
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' })
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' })
  })

  it('gives the drain time: terminationGracePeriodSeconds above preStop + server.shutdownTimeout', () => {
    const preStop = container.lifecycle.preStop.exec.command as string[]
    expect(preStop[0]).toBe('sleep')
    const budgetMs = Number(preStop[1]) * 1000 + policy.data.server.shutdownTimeout
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(budgetMs)
  })

  it('mounts the ConfigMap as the directory the gateway reads and watches (never subPath, which does not update)', () => {
    const args = container.args as string[]
    const configPath = args[args.indexOf('--config') + 1]!
    const mount = (container.volumeMounts as Obj[]).find((m) => m.name === 'policy')!
    expect(mount.subPath).toBeUndefined()
    expect(configPath).toBe(`${mount.mountPath as string}/gateway.yaml`)
    expect((pod.volumes as Obj[]).find((v) => v.name === 'policy')!.configMap.name).toBe(configMap.metadata.name)
  })

  it('mounts a writable volume at the image\'s state directory (the root filesystem is read-only)', () => {
    const mount = (container.volumeMounts as Obj[]).find((m) => m.mountPath === '/var/lib/flaggate')
    expect(mount).toBeDefined()
    expect(mount!.readOnly).not.toBe(true)
    expect((pod.volumes as Obj[]).find((v) => v.name === mount!.name)!.emptyDir).toBeDefined()
  })

  it('the Service exposes the public port only, never the admin API', () => {
    const targets = (service.spec.ports as Obj[]).map((p) => p.targetPort as string | number)
    expect(targets).toEqual(['http'])
    expect(targets).not.toContain('admin')
    expect(targets).not.toContain(port('admin'))
    expect(service.spec.type).toBe('ClusterIP')
    expect(service.spec.selector).toEqual(deployment.spec.template.metadata.labels)
  })

  it('admin token and Redis URL come from the Secret; the PDB covers the pods; the pod runs as non-root', () => {
    const fromSecret = (name: string) => (container.env as Obj[]).find((e) => e.name === name)?.valueFrom?.secretKeyRef
    for (const v of ['FLAGGATE_ADMIN_TOKEN', 'REDIS_URL', 'FLAGGATE_PROBE_CLIENT_KEY', 'FLAGGATE_PROBE_SERVER_KEY']) {
      const ref = fromSecret(v)
      expect(ref?.name, v).toBe(secret.metadata.name)
      expect(Object.keys(secret.stringData), v).toContain(ref.key)
    }
    expect(secret.stringData['admin-token'].length).toBeGreaterThanOrEqual(16)
    expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels)
    expect(pdb.spec.maxUnavailable).toBeLessThan(deployment.spec.replicas)
    expect(deployment.spec.strategy.rollingUpdate.maxUnavailable).toBe(0)
    expect(pod.securityContext.runAsNonRoot).toBe(true)
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true)
    expect(deployment.spec.template.metadata.annotations['prometheus.io/port']).toBe(String(port('admin')))
  })
})

/** Metric names in PromQL expressions: identifiers followed by `{`, `[`, or used bare, minus functions and keywords. */
function metricsIn (expr: string): string[] {
  const noStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, '{}')
  return [...new Set([...noStrings.matchAll(/\b(flaggate_[a-z0-9_]+|up)\b/g)].map((m) => m[1]!))]
}
const EXPORTED = new Set<string>([...SECTION7_METRICS, ...PENDING_METRICS, ...PROCESS_METRICS, 'up'])

describe('Prometheus alert rules', () => {
  const rules = (yamlFile('deploy/prometheus/alerts.yml').groups as Obj[]).flatMap((g) => g.rules as Obj[])

  it('cover breaker open, probe failing, Redis fallback, the 5xx ratio and an automatic block, each with a runbook', () => {
    const names = rules.map((r) => r.alert as string)
    expect(names).toEqual(expect.arrayContaining(['FlaggateBreakerOpen', 'FlaggateProbeFailing', 'FlaggateRedisFallback', 'FlaggateHigh5xxRatio', 'FlaggateKeyAutoBlocked']))
    // a runbook annotation is `docs/<page>.md#<heading>`, the heading's anchor as GitHub makes it
    const anchorsOf = (file: string): Set<string> => new Set([...readFileSync(file, 'utf8').matchAll(/^#+ (.+)$/gm)]
      .map((m) => m[1]!.toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-')))
    for (const r of rules) {
      expect(['page', 'warning', 'ticket']).toContain(r.labels.severity)
      const [, file, anchor] = /^(docs\/[a-z-]+\.md)#(.+)$/.exec(r.annotations.runbook as string) ?? []
      expect(file, `${r.alert as string}: runbook ${r.annotations.runbook as string} names a page of docs/`).toBeDefined()
      expect(existsSync(file!) && anchorsOf(file!).has(anchor!), `${r.alert as string}: ${file} has a heading for #${anchor}`).toBe(true)
      for (const m of metricsIn(r.expr as string)) expect(EXPORTED.has(m), `${r.alert as string} uses ${m}`).toBe(true)
    }
  })

  const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' })
  const havePromtool = promtool.status === 0
  if (!havePromtool) console.info('promtool is not installed (Debian package `prometheus`): skipping `promtool check rules` and `promtool test rules`')

  it.skipIf(!havePromtool)('pass `promtool check rules`', () => {
    const r = spawnSync('promtool', ['check', 'rules', 'deploy/prometheus/alerts.yml'], { encoding: 'utf8' })
    expect(r.status, r.stdout + r.stderr).toBe(0)
  })

  it.skipIf(!havePromtool)('fire on the series they are meant for (`promtool test rules`)', () => {
    const r = spawnSync('promtool', ['test', 'rules', 'deploy/prometheus/alerts.test.yml'], { encoding: 'utf8' })
    expect(r.status, r.stdout + r.stderr).toBe(0)
  })
})

describe('Grafana dashboard', () => {
  const dash = JSON.parse(readFileSync('deploy/grafana/flaggate.json', 'utf8')) as Obj
  const panels = (dash.panels as Obj[]).filter((p) => p.type !== 'row')
  const exprs = panels.flatMap((p) => (p.targets as Obj[]).map((t) => t.expr as string))

  it('shows every metric of docs/operations.md ("Metrics"), and only metrics the gateway exports', () => {
    const used = new Set(exprs.flatMap(metricsIn).map(baseMetricName))
    for (const m of [...SECTION7_METRICS, ...PENDING_METRICS]) expect(used.has(m), `a panel shows ${m}`).toBe(true)
    for (const m of used) expect(EXPORTED.has(m), `${m} is exported`).toBe(true)
  })

  it('is importable: unique panel ids, a Prometheus datasource variable, every target on it', () => {
    const ids = (dash.panels as Obj[]).map((p) => p.id as number)
    expect(new Set(ids).size).toBe(ids.length)
    expect(dash.uid).toBe('flaggate')
    expect((dash.templating.list as Obj[]).find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' })
    for (const p of panels) {
      expect(p.datasource.uid).toBe('${datasource}')
      expect(p.gridPos.w).toBeGreaterThan(0)
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24)
    }
  })
})
