/**
 * Secrets left at their example value. deploy/k8s/secret.yaml ships
 * `replace-me-with-48-random-hex-characters` as the admin token so the manifests apply as they are;
 * that value is long enough for the 16-character rule, so without this check a cluster applied
 * without editing the Secret would run with a token anyone can read in this repository.
 */

/** The placeholder deploy/k8s/secret.yaml ships (test/ops/deploy.test.ts keeps the two equal). */
export const SHIPPED_ADMIN_TOKEN_PLACEHOLDER = 'replace-me-with-48-random-hex-characters'

// Words people put where a secret goes, matched with separators removed and in lower case: a
// random token never contains them, so a real one is never refused.
const PLACEHOLDER_WORDS = ['replaceme', 'changeme', 'placeholder', 'yourtoken', 'yoursecret', 'youradmintoken', 'secrethere', 'tokenhere']

/** Why `token` is a placeholder rather than a secret, or undefined when it is not one. */
export function placeholderProblem (token: string): string | undefined {
  if (token === SHIPPED_ADMIN_TOKEN_PLACEHOLDER) return 'is the placeholder shipped in deploy/k8s/secret.yaml'
  const squashed = token.toLowerCase().replace(/[^a-z0-9]/g, '')
  const word = PLACEHOLDER_WORDS.find((w) => squashed.includes(w))
  if (word !== undefined) return `is a placeholder (it contains "${word}")`
  if (/^<.*>$/.test(token)) return 'is a placeholder (it is written in angle brackets)'
  if (/^(.)\1*$/.test(token)) return 'is a placeholder (one character repeated)'
  return undefined
}
