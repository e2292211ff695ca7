/**
 * One reader of a gateway's `/metrics` for every test: parses the Prometheus text exposition
 * format once into samples, then answers "the value of this metric with these labels".
 *
 * Written by hand because no maintained npm package parses the exposition format for a client
 * (prom-client only writes it); the tests need only samples, labels and values, which is what
 * this reads: `name{label="value",...} number [timestamp]`, with `\\`, `\"` and `\n` escapes in
 * label values, `# TYPE` lines kept (the metric's type), other comments skipped.
 */
import { raw } from './http.js'

export interface Sample { name: string; labels: Record<string, string>; value: number }

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/gy

function unescape (v: string): string {
  return v.replace(/\\(.)/g, (_m, c: string) => c === 'n' ? '\n' : c)
}

/** Every sample and `# TYPE` of a Prometheus text exposition. A line that is neither throws. */
export function parseExposition (text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>()
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (t !== null) { types.set(t[1]!, t[2]!); continue }
    if (line.trim() === '' || line.startsWith('#')) continue
    const m = SAMPLE.exec(line)
    if (m === null) throw new Error(`not a Prometheus sample: ${line}`)
    const labels: Record<string, string> = {}
    if (m[2] !== undefined && m[2] !== '') {
      LABEL.lastIndex = 0
      let consumed = 0
      for (let l = LABEL.exec(m[2]); l !== null; l = LABEL.exec(m[2])) { labels[l[1]!] = unescape(l[2]!); consumed = LABEL.lastIndex }
      if (consumed !== m[2].length) throw new Error(`bad labels in: ${line}`)
    }
    out.push({ name: m[1]!, labels, value: Number(m[3]) })
  }
  return { types, samples: out }
}

export interface Metrics {
  /** the exposition as served, for assertions on its text (names, absence of secrets) */
  text: string
  samples: Sample[]
  /** metric name → its `# TYPE` (counter, gauge, histogram, ...) */
  types: Map<string, string>
  /**
   * The value of the first sample of `name` whose labels include all of `labels`; 0 when there is
   * none (a counter never incremented is not exported until it is).
   */
  value: (name: string, labels?: Record<string, string>) => number
  /** The sum over every sample of `name` whose labels include all of `labels`. */
  sum: (name: string, labels?: Record<string, string>) => number
}

const matches = (s: Sample, name: string, labels: Record<string, string>): boolean =>
  s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)

export function metricsOf (text: string): Metrics {
  const { types, samples } = parseExposition(text)
  return {
    text,
    samples,
    types,
    value: (name, labels = {}) => samples.find((s) => matches(s, name, labels))?.value ?? 0,
    sum: (name, labels = {}) => samples.filter((s) => matches(s, name, labels)).reduce((a, s) => a + s.value, 0)
  }
}

/** Scrapes `GET /metrics` on an admin listener and parses it. */
export async function scrapeMetrics (adminUrl: string): Promise<Metrics> {
  const r = await raw(adminUrl, '/metrics')
  if (r.status !== 200) throw new Error(`GET ${adminUrl}/metrics answered ${r.status}`)
  return metricsOf(r.body.toString())
}
