/**
 * Summarises a V8 `.cpuprofile` (what `node --cpu-prof` writes): self time per function, and the
 * same grouped by package, in µs per request when the request count is known.
 * CLI: node --import tsx bench/cpuprofile.ts FILE [REQUESTS] [TOP]
 */
import { readFileSync } from 'node:fs'

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

export interface Summary {
  /** µs of non-idle samples */
  busyUs: number
  idleUs: number
  top: Array<{ name: string; where: string; selfUs: number; share: number }>
  byPackage: Array<{ name: string; selfUs: number; share: number }>
  /** flaggate's own functions with everything they call (what each hook costs, all in) */
  inclusive: Array<{ name: string; where: string; totalUs: number; share: number }>
}

function where (cf: CallFrame): string {
  if (cf.url === '') return ''
  const u = cf.url.replace(/^file:\/\//, '')
  const nm = u.lastIndexOf('node_modules/')
  const short = nm !== -1 ? u.slice(nm + 'node_modules/'.length) : u.includes('/dist/') ? u.slice(u.indexOf('/dist/') + 1) : u.startsWith('node:') ? u : u.split('/').slice(-2).join('/')
  return `${short}:${cf.lineNumber + 1}`
}

function packageOf (cf: CallFrame): string {
  const u = cf.url
  if (u === '') return cf.functionName === '(garbage collector)' ? '(gc)' : cf.functionName.startsWith('(') ? cf.functionName : '(native)'
  if (u.startsWith('node:')) return 'node core'
  const nm = u.lastIndexOf('node_modules/')
  if (nm !== -1) {
    const rest = u.slice(nm + 'node_modules/'.length).split('/')
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!
  }
  if (u.includes('/dist/')) return 'flaggate'
  return 'other'
}

/**
 * `window`: [from, to] in µs of CLOCK_MONOTONIC (process.hrtime.bigint() / 1000n in any process
 * of the machine, which is the clock V8 stamps samples with on Linux): only samples taken in it.
 */
export function summarise (profile: Profile, top = 25, window?: [number, number]): Summary {
  const byId = new Map<number, ProfileNode>()
  for (const n of profile.nodes) byId.set(n.id, n)
  const self = new Map<number, number>()
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0
    if (window !== undefined && (t < window[0] || t > window[1])) continue
    const id = profile.samples[i]!
    // timeDeltas[i] is the time before sample i; the sample stands for the interval after it
    const dt = profile.timeDeltas[i + 1] ?? 0
    self.set(id, (self.get(id) ?? 0) + dt)
  }
  let busy = 0
  let idle = 0
  const fn = new Map<string, { name: string; where: string; selfUs: number }>()
  const pkg = new Map<string, number>()
  for (const [id, us] of self) {
    const cf = byId.get(id)!.callFrame
    if (cf.functionName === '(idle)') { idle += us; continue }
    busy += us
    const k = `${cf.functionName}@${cf.url}:${cf.lineNumber}`
    const e = fn.get(k) ?? { name: cf.functionName === '' ? '(anonymous)' : cf.functionName, where: where(cf), selfUs: 0 }
    e.selfUs += us
    fn.set(k, e)
    const p = packageOf(cf)
    pkg.set(p, (pkg.get(p) ?? 0) + us)
  }
  // inclusive time of flaggate's functions: a node's self time counts for every distinct
  // flaggate function on its path from the root (once, however deep the recursion)
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const incl = new Map<string, { name: string; where: string; totalUs: number }>()
  for (const [id, us] of self) {
    if (byId.get(id)!.callFrame.functionName === '(idle)') continue
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame
      if (packageOf(cf) !== 'flaggate') continue
      const k = `${cf.functionName}@${cf.url}:${cf.lineNumber}`
      if (seen.has(k)) continue
      seen.add(k)
      const e = incl.get(k) ?? { name: cf.functionName === '' ? '(anonymous)' : cf.functionName, where: where(cf), totalUs: 0 }
      e.totalUs += us
      incl.set(k, e)
    }
  }
  return {
    inclusive: [...incl.values()].sort((a, b) => b.totalUs - a.totalUs).slice(0, top).map((e) => ({ ...e, share: e.totalUs / busy })),
    busyUs: busy,
    idleUs: idle,
    top: [...fn.values()].sort((a, b) => b.selfUs - a.selfUs).slice(0, top).map((e) => ({ ...e, share: e.selfUs / busy })),
    byPackage: [...pkg.entries()].sort((a, b) => b[1] - a[1]).map(([name, selfUs]) => ({ name, selfUs, share: selfUs / busy }))
  }
}

/** Markdown tables; µs per request when `requests` is given. */
export function render (s: Summary, requests?: number): string {
  const per = (us: number) => requests === undefined ? '' : ` | ${(us / requests).toFixed(2)}`
  const head = requests === undefined ? '' : ' | µs/req'
  const sep = requests === undefined ? '' : '|---:'
  const out = [`Busy (non-idle) samples: ${(s.busyUs / 1000).toFixed(0)} ms${requests === undefined ? '' : ` for ${requests.toLocaleString('en-US')} requests = ${(s.busyUs / requests).toFixed(1)} µs/req`}.`, '']
  out.push(`| package | self %${head} |`, `|---|---:${sep}|`)
  for (const p of s.byPackage.slice(0, 12)) out.push(`| ${p.name} | ${(p.share * 100).toFixed(1)}${per(p.selfUs)} |`)
  out.push('', `| function | where | self %${head} |`, `|---|---|---:${sep}|`)
  for (const f of s.top) out.push(`| ${f.name.replace(/\|/g, '\\|')} | ${f.where} | ${(f.share * 100).toFixed(1)}${per(f.selfUs)} |`)
  out.push('', `| flaggate function, inclusive | where | total %${head} |`, `|---|---|---:${sep}|`)
  for (const f of s.inclusive.slice(0, 15)) out.push(`| ${f.name.replace(/\|/g, '\\|')} | ${f.where} | ${(f.share * 100).toFixed(1)}${per(f.totalUs)} |`)
  return out.join('\n')
}

if (process.argv[1]?.endsWith('cpuprofile.ts') === true) {
  const [file, requests, top] = process.argv.slice(2)
  // without a window the whole profile counts, start-up included
  if (file === undefined) { console.error('usage: node --import tsx bench/cpuprofile.ts FILE [REQUESTS] [TOP]'); process.exit(2) }
  const s = summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile, Number(top ?? 25))
  console.log(render(s, requests === undefined ? undefined : Number(requests)))
}
