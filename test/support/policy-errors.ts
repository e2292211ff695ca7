/** The smallest valid policy, and a policy's errors as `flaggate validate` prints them: shared by the policy tests. */
import { formatPolicyError, loadPolicy } from '../../src/policy/load.js'

export const BASE_POLICY = `upstreams:
  core: { url: "http://127.0.0.1:9" }
routes:
  - name: all
    match: { pathPrefix: / }
    upstream: core
`

export function errorsOf (yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  const r = loadPolicy('p.yaml', yaml, env)
  if (r.ok) throw new Error('expected the policy to be invalid')
  return r.errors.map(formatPolicyError)
}
