/**
 * The edge split on its own (src/edge/core.ts): share, monotonicity, listed keys, reasons and
 * fallbacks, and a bucket function that never changes between processes, replicas or versions.
 */
import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { decideEdge, edgeBucket, edgeThreshold, EDGE_BUCKETS, type EdgeQuery, type EdgeRule } from '../../src/edge/core.js'

/** 10,000 distinct keys shaped like Flagsmith's: 22-character client keys and `ser.` server keys. */
function sampleKeys (n: number): string[] {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  let seed = 0x9e3779b9
  const next = (): number => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return seed }
  const keys = new Set<string>()
  while (keys.size < n) {
    let k = keys.size % 2 === 0 ? '' : 'ser.'
    for (let i = 0; i < 22; i++) k += alphabet[next() % alphabet.length]
    keys.add(k)
  }
  return [...keys]
}

const KEYS = sampleKeys(10_000)
const rule = (percent: number, keys: string[] = [], whenOpen = true): EdgeRule => ({ percent, keys: new Set(keys), whenOpen })
const get = (key: string | undefined, extra: Partial<EdgeQuery> = {}): EdgeQuery => ({ routeUpstream: 'core', method: 'GET', key, upstreamOpen: false, ...extra })

describe('edgeBucket', () => {
  // Golden values: the split must never change under a client (other replicas, restarts,
  // upgrades). If this test fails, keys would flip between Core and Edge in production.
  it.each([
    ['dev_client_key', 178],
    ['ser.dev_server_key', 2429],
    ['prod_client_key', 8976],
    ['ser.prod_server_key', 166],
    ['n9fbf9h3v4fFgH3U3ngWhb', 3147],
    ['ser.abc', 874]
  ])('%s is in bucket %i', (key, bucket) => {
    expect(edgeBucket(key)).toBe(bucket)
  })

  it('equals the documented recipe computed by another program (sha256sum: first 8 hex digits mod 10000)', () => {
    for (const key of KEYS.slice(0, 20)) {
      const out = spawnSync('sha256sum', { input: key, encoding: 'utf8' })
      expect(out.status).toBe(0)
      expect(edgeBucket(key)).toBe(parseInt(out.stdout.slice(0, 8), 16) % 10_000)
    }
  })

  it('gives the same buckets in a separate Node process', () => {
    const keys = KEYS.slice(0, 200)
    const script = `const { hash } = require('node:crypto'); const keys = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
      process.stdout.write(JSON.stringify(keys.map((k) => hash('sha256', k, 'buffer').readUInt32BE(0) % 10000)))`
    const out = spawnSync(process.execPath, ['-e', script], { input: JSON.stringify(keys), encoding: 'utf8' })
    expect(JSON.parse(out.stdout)).toEqual(keys.map(edgeBucket))
  })

  it('stays within 0..9999 and spreads keys evenly over ten deciles', () => {
    const deciles = new Array<number>(10).fill(0)
    for (const key of KEYS) {
      const b = edgeBucket(key)
      expect(Number.isInteger(b) && b >= 0 && b < EDGE_BUCKETS).toBe(true)
      deciles[Math.floor(b / 1000)]!++
    }
    for (const n of deciles) expect(Math.abs(n - 1000)).toBeLessThan(200)
  })
})

describe('decideEdge: the split', () => {
  it.each([0.5, 1, 5, 10, 20, 25, 33.3, 50, 75, 90, 99])('sends %s%% of 10,000 keys to Edge, within 2 points', (percent) => {
    let edge = 0
    for (const key of KEYS) if (decideEdge(rule(percent), get(key)).upstream === 'edge') edge++
    const share = edge / KEYS.length * 100
    expect(Math.abs(share - percent)).toBeLessThanOrEqual(2)
  })

  it('sends none at 0% and all at 100%', () => {
    for (const key of KEYS.slice(0, 1000)) {
      expect(decideEdge(rule(0), get(key))).toMatchObject({ upstream: 'core', reason: 'not-selected' })
      expect(decideEdge(rule(100), get(key))).toMatchObject({ upstream: 'edge', reason: 'hashed' })
    }
  })

  it('raising the percentage only moves keys from Core to Edge, never back', () => {
    const steps = [0, 0.01, 0.5, 1, 2, 5, 10, 10.5, 20, 30, 50, 70, 90, 99.99, 100]
    let previous = new Set<string>()
    for (const percent of steps) {
      const now = new Set(KEYS.filter((k) => decideEdge(rule(percent), get(k)).upstream === 'edge'))
      for (const k of previous) expect(now.has(k)).toBe(true)
      expect(now.size).toBeGreaterThanOrEqual(previous.size)
      previous = now
    }
    expect(previous.size).toBe(KEYS.length)
  })

  it('a key is on Edge exactly when its bucket is below percent × 100', () => {
    expect(edgeThreshold(10)).toBe(1000)
    expect(edgeThreshold(12.34)).toBe(1234)
    expect(edgeThreshold(0.01)).toBe(1)
    // ser.prod_server_key is in bucket 166: on Edge from 1.67 %, not at 1.66 %
    expect(decideEdge(rule(1.66), get('ser.prod_server_key'))).toEqual({ upstream: 'core', reason: 'not-selected', bucket: 166, fallback: undefined })
    expect(decideEdge(rule(1.67), get('ser.prod_server_key'))).toEqual({ upstream: 'edge', reason: 'hashed', bucket: 166, fallback: 'core' })
  })

  it('listed keys always go to Edge, whatever the percentage', () => {
    const listed = KEYS.slice(0, 50)
    for (const percent of [0, 10, 100]) {
      for (const key of listed) expect(decideEdge(rule(percent, listed), get(key))).toMatchObject({ upstream: 'edge', reason: 'listed' })
    }
    expect(decideEdge(rule(0, ['ser.abc']), get('ser.abd'))).toMatchObject({ upstream: 'core', reason: 'not-selected' })
  })

  it('requests without a key stay on the route\'s upstream, even at 100% or with it open', () => {
    expect(decideEdge(rule(100), get(undefined))).toEqual({ upstream: 'core', reason: 'no-key', bucket: undefined, fallback: undefined })
    expect(decideEdge(rule(100), get(undefined, { upstreamOpen: true }))).toMatchObject({ upstream: 'core', reason: 'no-key' })
  })
})

describe('decideEdge: fallbacks and the open breaker', () => {
  it('a read sent to Edge falls back to the route\'s upstream; a write never does', () => {
    for (const method of ['GET', 'HEAD']) {
      expect(decideEdge(rule(0, ['k']), get('k', { method })).fallback).toBe('core')
      expect(decideEdge(rule(100), get('k', { method })).fallback).toBe('core')
    }
    expect(decideEdge(rule(0, ['k']), get('k', { method: 'POST' }))).toEqual({ upstream: 'edge', reason: 'listed', bucket: undefined, fallback: undefined })
    expect(decideEdge(rule(100), get('k', { method: 'POST' }))).toMatchObject({ upstream: 'edge', reason: 'hashed', fallback: undefined })
  })

  it('without whenOpen, an open upstream sends nothing to Edge: percent 0 and no keys is Core only', () => {
    const open = { upstreamOpen: true }
    expect(decideEdge(rule(0, [], false), get('ser.abc', open))).toEqual({ upstream: 'core', reason: 'not-selected', bucket: undefined, fallback: undefined })
    for (const key of KEYS.slice(0, 200)) expect(decideEdge(rule(0, [], false), get(key, open)).upstream).toBe('core')
    // what an operator listed still goes
    expect(decideEdge(rule(0, ['ser.abc'], false), get('ser.abc', open))).toMatchObject({ upstream: 'edge', reason: 'listed' })
  })

  it('with the route\'s upstream open and whenOpen, reads go to Edge (without falling back to it); writes stay', () => {
    const open = { upstreamOpen: true }
    expect(decideEdge(rule(0), get('ser.abc', open))).toEqual({ upstream: 'edge', reason: 'breaker-open', bucket: undefined, fallback: undefined })
    expect(decideEdge(rule(5), get('ser.abc', { ...open, method: 'HEAD' }))).toEqual({ upstream: 'edge', reason: 'breaker-open', bucket: 874, fallback: undefined })
    expect(decideEdge(rule(0), get('ser.abc', { ...open, method: 'POST' }))).toMatchObject({ upstream: 'core', reason: 'not-selected' })
    // selected keys keep their reason, but there is nothing to fall back to
    expect(decideEdge(rule(0, ['ser.abc']), get('ser.abc', open))).toMatchObject({ upstream: 'edge', reason: 'listed', fallback: undefined })
  })

  it('works for a route whose upstream is not called core', () => {
    expect(decideEdge(rule(100), get('k', { routeUpstream: 'core-eu' }))).toMatchObject({ upstream: 'edge', fallback: 'core-eu' })
    expect(decideEdge(rule(0), get('k', { routeUpstream: 'core-eu' }))).toMatchObject({ upstream: 'core-eu', reason: 'not-selected' })
  })
})
