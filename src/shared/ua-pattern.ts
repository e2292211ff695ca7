/**
 * User-Agent block patterns on a linear-time engine. A pattern comes from the policy or, as a
 * runtime block, from Redis (anyone who can write there); the text it runs on comes from any
 * client. On V8's backtracking RegExp a pattern as innocent-looking as `^([a-z]|[0-9a-f])*-bot$`
 * (which safe-regex2, a star-height check, accepts) took 14.5 s on a 28-byte User-Agent, doubling
 * with each character, with the event loop blocked for every client. RE2's automaton matches in
 * time linear in the input whatever the pattern, so no pattern can do that.
 *
 * re2js is RE2 ported to pure JavaScript: it installs without a native build or a download (the
 * `re2` package needs node-gyp; `re2-wasm` ships a binary). It refuses what RE2 cannot do in
 * linear time (backreferences, lookaround) with a syntax error, which the policy and the admin
 * API report. Matching is a search, as RegExp.test is (`^` anchors explicitly). Cost measured in
 * docs/security.md.
 */
import { RE2JS } from 're2js'

/** Only so much of a User-Agent is tested: bounds the work of a match (linear in this). */
export const MAX_USER_AGENT_CHARS = 512
export const MAX_PATTERN_CHARS = 256

export interface UserAgentPattern {
  readonly source: string
  /** true when the pattern occurs in the (first MAX_USER_AGENT_CHARS characters of the) User-Agent */
  test: (userAgent: string) => boolean
}

/** Compiles a User-Agent pattern, or says why it cannot be one (a sentence fragment). */
export function compileUserAgentPattern (pattern: string): UserAgentPattern | string {
  if (pattern === '') return 'must not be empty'
  if (pattern.length > MAX_PATTERN_CHARS) return `is longer than ${MAX_PATTERN_CHARS} characters`
  let re: RE2JS
  try {
    re = RE2JS.compile(pattern)
  } catch (err) {
    return `is not a valid regular expression for the linear-time engine (RE2 syntax: no backreferences or lookaround): ${(err as Error).message}`
  }
  return {
    source: pattern,
    test: (userAgent) => re.matcher(userAgent.length > MAX_USER_AGENT_CHARS ? userAgent.slice(0, MAX_USER_AGENT_CHARS) : userAgent).find()
  }
}
