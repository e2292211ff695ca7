/**
 * The pure blocking core: every matcher, route scope, expiry on an injected clock, the request
 * validation the admin API answers 400 with, and the prefix index at 10,000 entries.
 */
import { describe, expect, it } from 'vitest'
import { BlockIndex, blockFromJson, compileUserAgent, parseBlockRequest, staticBlocks, BlockRequestError, type Block, type BlockRequestContext } from '../../src/blocking/core.js'
import { BlockRegistry } from '../../src/blocking/registry.js'
import { parseCidr, parseV4, parseV6 } from '../../src/shared/ip-index.js'
import { isIP } from 'node:net'
import { keyDigest } from '../../src/shared/key-digest.js'

let n = 0
const ctx = (over: Partial<BlockRequestContext> = {}): BlockRequestContext => ({
  routes: new Set(['flags', 'environment-document', 'default']), now: 1_000_000, actor: 'admin-token', newId: () => `r-${++n}`, ...over
})
const block = (body: Record<string, unknown>, c = ctx()): Block => parseBlockRequest({ reason: 'test', ...body }, c)
const indexOf = (...blocks: Block[]): BlockIndex => { const i = new BlockIndex(); for (const b of blocks) expect(i.add(b)).toBe(true); return i }

describe('matchers', () => {
  it('key: only that key, on every route; the key is held as a digest and shown redacted', () => {
    const b = block({ key: 'ser.abcdef123456' })
    expect(b.keyDigest).toBe(keyDigest('ser.abcdef123456'))
    expect(b.key).toMatch(/^ser\.…[0-9a-f]{8}$/)
    expect(JSON.stringify(b)).not.toContain('abcdef123456')
    const i = indexOf(b)
    expect(i.match('flags', 'ser.abcdef123456', '10.0.0.1', undefined, 0)?.id).toBe(b.id)
    expect(i.match('default', 'ser.abcdef123456', '10.0.0.1', 'x', 0)?.id).toBe(b.id)
    expect(i.match('flags', 'ser.abcdef123457', '10.0.0.1', undefined, 0)).toBeUndefined()
    expect(i.match('flags', undefined, '10.0.0.1', undefined, 0)).toBeUndefined()
  })

  it('IPv4 address and CIDR; host bits of a CIDR are cleared', () => {
    const one = block({ ip: '203.0.113.7' })
    const net = block({ ip: '198.51.100.77/24' })
    expect(net.ip).toBe('198.51.100.0/24')
    const i = indexOf(one, net)
    expect(i.match('flags', undefined, '203.0.113.7', undefined, 0)?.id).toBe(one.id)
    expect(i.match('flags', 'k', '203.0.113.8', undefined, 0)).toBeUndefined()
    expect(i.match('flags', 'k', '198.51.100.0', undefined, 0)?.id).toBe(net.id)
    expect(i.match('flags', 'k', '198.51.100.255', undefined, 0)?.id).toBe(net.id)
    expect(i.match('flags', 'k', '198.51.101.0', undefined, 0)).toBeUndefined()
    expect(i.match('flags', 'k', '::1', undefined, 0)).toBeUndefined()
    expect(i.match('flags', 'k', 'not-an-ip', undefined, 0)).toBeUndefined()
  })

  it('IPv6 address and CIDR, in any spelling; IPv4-mapped rules become IPv4', () => {
    const net = block({ ip: '2001:DB8:0:0::/32' })
    expect(net.ip).toBe('2001:db8::/32')
    const one = block({ ip: '2001:0db8:0000:0000:0000:0000:0000:0042' })
    expect(one.ip).toBe('2001:db8::42')
    const wide = block({ ip: 'fe80::/10' })
    const mapped = block({ ip: '::ffff:192.0.2.0/120' })
    expect(mapped.ip).toBe('192.0.2.0/24')
    const i = indexOf(net, one, wide, mapped)
    expect(i.match('flags', undefined, '2001:db8::42', undefined, 0)?.id).toBe(one.id) // most specific first
    expect(i.match('flags', undefined, '2001:db8:ffff::1', undefined, 0)?.id).toBe(net.id)
    expect(i.match('flags', undefined, '2001:db9::1', undefined, 0)).toBeUndefined()
    expect(i.match('flags', undefined, 'febf:1::1', undefined, 0)?.id).toBe(wide.id)
    expect(i.match('flags', undefined, 'fec0::1', undefined, 0)).toBeUndefined()
    expect(i.match('flags', undefined, '192.0.2.200', undefined, 0)?.id).toBe(mapped.id)
    const all = indexOf(block({ ip: '::/0' }))
    expect(all.match('flags', undefined, '1::', undefined, 0)).toBeDefined()
    expect(all.match('flags', undefined, '10.0.0.1', undefined, 0)).toBeUndefined()
  })

  it('User-Agent regex, on the first 512 characters only', () => {
    const b = block({ userAgent: '^BadBot/' })
    const i = indexOf(b)
    expect(i.match('flags', 'k', '10.0.0.1', 'BadBot/1.2', 0)?.id).toBe(b.id)
    expect(i.match('flags', 'k', '10.0.0.1', 'GoodBot/1.2 BadBot/', 0)).toBeUndefined()
    expect(i.match('flags', 'k', '10.0.0.1', undefined, 0)).toBeUndefined()
    const tail = indexOf(block({ userAgent: 'evil$' }))
    expect(tail.match('flags', 'k', '10.0.0.1', 'x'.repeat(600) + 'evil', 0)).toBeUndefined()
    expect(tail.match('flags', 'k', '10.0.0.1', 'x'.repeat(100) + 'evil', 0)).toBeDefined()
  })

  it('route scope: only the listed routes', () => {
    const b = block({ key: 'dev_key', routes: ['environment-document'] })
    const i = indexOf(b)
    expect(i.match('environment-document', 'dev_key', '10.0.0.1', undefined, 0)?.id).toBe(b.id)
    expect(i.match('flags', 'dev_key', '10.0.0.1', undefined, 0)).toBeUndefined()
    const ua = indexOf(block({ userAgent: 'curl', routes: ['flags'] }))
    expect(ua.match('flags', undefined, '10.0.0.1', 'curl/8', 0)).toBeDefined()
    expect(ua.match('default', undefined, '10.0.0.1', 'curl/8', 0)).toBeUndefined()
    const ip = indexOf(block({ ip: '10.0.0.0/8', routes: ['default'] }))
    expect(ip.match('default', undefined, '10.1.1.1', undefined, 0)).toBeDefined()
    expect(ip.match('flags', undefined, '10.1.1.1', undefined, 0)).toBeUndefined()
  })

  it('key from one IP (automatic blocks of an [environmentKey, ip] limit): neither alone', () => {
    const b: Block = { id: 'a-1', keyDigest: keyDigest('dev_key'), key: 'dev_…', ip: '10.0.0.1', reason: 'abuse', source: 'abuse', createdAt: 0, actor: 'abuse' }
    const i = indexOf(b)
    expect(i.match('flags', 'dev_key', '10.0.0.1', undefined, 0)?.id).toBe('a-1')
    expect(i.match('flags', 'dev_key', '10.0.0.2', undefined, 0)).toBeUndefined()
    expect(i.match('flags', 'other_key', '10.0.0.1', undefined, 0)).toBeUndefined()
    expect(i.match('flags', undefined, '10.0.0.1', undefined, 0)).toBeUndefined()
  })

  it('remove takes a block out of every structure', () => {
    const bs = [block({ key: 'a' }), block({ ip: '10.0.0.0/8' }), block({ ip: '2001:db8::/32' }), block({ userAgent: 'x' })]
    const i = indexOf(...bs)
    for (const b of bs) expect(i.remove(b.id)).toBe(true)
    expect(i.size).toBe(0)
    expect(i.match('flags', 'a', '10.0.0.1', 'x', 0)).toBeUndefined()
    expect(i.match('flags', 'a', '2001:db8::1', 'x', 0)).toBeUndefined()
    expect(i.remove('nope')).toBe(false)
  })
})

describe('expiry (injected clock)', () => {
  it('a block with a ttl stops matching at expiresAt, and the registry sweeps it', () => {
    let now = 1_000_000
    const reg = new BlockRegistry({ clock: () => now })
    const b = block({ key: 'dev_key', ttl: '30s' }, ctx({ now }))
    expect(b.expiresAt).toBe(now + 30_000)
    expect(reg.upsert(b)).toBe(true)
    expect(reg.index.match('flags', 'dev_key', '10.0.0.1', undefined, now + 29_999)).toBeDefined()
    expect(reg.index.match('flags', 'dev_key', '10.0.0.1', undefined, now + 30_000)).toBeUndefined()
    now += 29_999
    expect(reg.sweep()).toEqual([])
    now += 1
    expect(reg.sweep().map((x) => x.id)).toEqual([b.id])
    expect(reg.size).toBe(0)
    expect(reg.counts()).toEqual({ static: 0, runtime: 0, abuse: 0 })
    // an already expired block (a late message from another replica) is not taken
    expect(reg.upsert(b)).toBe(false)
  })

  it('static blocks reload by content: unchanged ones keep their id and age; they cannot be deleted at runtime', () => {
    let now = 5
    const reg = new BlockRegistry({ clock: () => now })
    const list = [{ key: 'abcdef123', reason: 'retry storm' }, { ip: '203.0.113.0/24', reason: 'scraper' }]
    reg.setStatic(staticBlocks(list, now))
    const ids = [reg.list().find((b) => b.key !== undefined)!.id, reg.list().find((b) => b.ip !== undefined)!.id]
    expect(reg.counts()).toEqual({ static: 2, runtime: 0, abuse: 0 })
    now = 99
    reg.setStatic(staticBlocks([list[0]!, { userAgent: '^BadBot/', reason: 'bot' }], now))
    expect(reg.counts().static).toBe(2)
    const kept = reg.list().find((b) => b.id === ids[0])!
    expect(kept.createdAt).toBe(5)
    expect(reg.has(ids[1]!)).toBe(false)
    expect(reg.delete(ids[0]!)).toBeUndefined()
    expect(reg.isStatic(ids[0]!)).toBe(true)
  })
})

describe('POST /admin/blocks validation', () => {
  const bad = (body: unknown, message: RegExp): void => {
    expect(() => parseBlockRequest(body, ctx())).toThrow(BlockRequestError)
    expect(() => parseBlockRequest(body, ctx())).toThrow(message)
  }
  it('refuses what cannot be a block, saying why', () => {
    bad(null, /JSON object/)
    bad([], /JSON object/)
    bad({ reason: 'x' }, /exactly one of "key"/)
    bad({ key: 'a', ip: '10.0.0.1', reason: 'x' }, /exactly one target/)
    bad({ key: 'a' }, /"reason" is required/)
    bad({ key: 'a', reason: '' }, /"reason" must be a non-empty string/)
    bad({ ip: '10.0.0.300', reason: 'x' }, /not an IP address or CIDR/)
    bad({ ip: '10.0.0.0/33', reason: 'x' }, /not an IP address or CIDR/)
    bad({ ip: '2001:db8::/129', reason: 'x' }, /not an IP address or CIDR/)
    bad({ ip: 'example.com', reason: 'x' }, /not an IP address or CIDR/)
    bad({ userAgent: '(unclosed', reason: 'x' }, /not a valid regular expression/)
    // RE2 (ua-pattern.ts) runs nested quantifiers in linear time; what it cannot do is refused
    bad({ userAgent: '(a)\\1', reason: 'x' }, /no backreferences or lookaround/)
    bad({ userAgent: '(?=a)b', reason: 'x' }, /no backreferences or lookaround/)
    bad({ key: 'a', reason: 'x', ttl: 'soon' }, /"ttl" must be a duration/)
    bad({ key: 'a', reason: 'x', ttl: 30 }, /"ttl" must be a duration/)
    bad({ key: 'a', reason: 'x', ttl: '0s' }, /at least 1s/)
    bad({ key: 'a', reason: 'x', ttl: '400d' }, /at most 365d/)
    bad({ key: 'a', reason: 'x', routes: [] }, /non-empty list/)
    bad({ key: 'a', reason: 'x', routes: ['flagz'] }, /Unknown route "flagz"/)
    bad({ key: 'a', reason: 'x', ttl: '1m', extra: 1 }, /Unknown field "extra"/)
  })

  it('accepts a well-formed block', () => {
    const b = parseBlockRequest({ ip: '10.0.0.0/8', routes: ['flags'], ttl: '15m', reason: 'scraper', publicReason: 'contact support' }, ctx())
    expect(b).toMatchObject({ ip: '10.0.0.0/8', routes: ['flags'], reason: 'scraper', publicReason: 'contact support', source: 'runtime', createdAt: 1_000_000, expiresAt: 1_000_000 + 900_000, actor: 'admin-token' })
  })

  it('compileUserAgent bounds what it accepts', () => {
    expect(typeof compileUserAgent('^curl/')).toBe('object')
    expect(typeof compileUserAgent('x'.repeat(300))).toBe('string')
  })

  it('blockFromJson refuses stored blocks that cannot be matched', () => {
    const good = block({ key: 'k' })
    expect(blockFromJson(JSON.parse(JSON.stringify(good)))).toEqual(good)
    expect(blockFromJson({ ...good, keyDigest: undefined })).toBeUndefined()
    expect(blockFromJson({ ...good, source: 'magic' })).toBeUndefined()
    expect(blockFromJson({ id: 'x', reason: 'r', createdAt: 0, actor: 'a', source: 'runtime', ip: 'nope' })).toBeUndefined()
    expect(blockFromJson('{')).toBeUndefined()
  })
})

describe('IP parsing', () => {
  it('parses and canonicalises', () => {
    expect(parseV4('1.2.3.4')).toBe(0x01020304)
    expect(parseV4('255.255.255.255')).toBe(0xffffffff)
    for (const bad of ['1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '', 'a.b.c.d', '1.2.3.4 ']) expect(parseV4(bad)).toBe(-1)
    expect(parseV6('::1')).toEqual([0, 0, 0, 0, 0, 0, 0, 1])
    expect(parseV6('1::')).toEqual([1, 0, 0, 0, 0, 0, 0, 0])
    expect(parseV6('::')).toEqual([0, 0, 0, 0, 0, 0, 0, 0])
    expect(parseV6('::ffff:1.2.3.4')).toEqual([0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304])
    expect(parseV6('fe80::1%eth0')).toEqual([0xfe80, 0, 0, 0, 0, 0, 0, 1])
    expect(parseV6('1:2:3::6:7:8')).toEqual([1, 2, 3, 0, 0, 6, 7, 8])
    expect(parseV6('ABCD:EF01:2345:6789:abcd:ef01:2345:6789')).toEqual([0xabcd, 0xef01, 0x2345, 0x6789, 0xabcd, 0xef01, 0x2345, 0x6789])
    // the hand-written parser accepts exactly what node:net accepts
    const samples = ['::1', '1::', '::', ':::', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '1::2::3', '1:', ':1', '1::2:', '12345::1',
      '::ffff:1.2.3.4', '::1.2.3.4', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '::ffff:1.2.3', '::ffff:256.1.1.1', 'g::1', '1::2::', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1.2.3.4', '', 'fe80::1%eth0']
    for (const s of samples) expect(parseV6(s) !== undefined, s).toBe(isIP(s) === 6)
    expect(parseCidr('2001:db8:0:1:0:0:0:1')?.text).toBe('2001:db8:0:1::1')
    expect(parseCidr('1:0:0:1:0:0:0:1')?.text).toBe('1:0:0:1::1')
    expect(parseCidr('10.0.0.1/0')?.text).toBe('0.0.0.0/0')
    expect(parseCidr('10.0.0.1/x')).toBeUndefined()
  })
})

describe('10,000 entries', () => {
  it('keys, addresses and networks are all found, and nothing else is', () => {
    const i = new BlockIndex()
    const c = ctx()
    for (let k = 0; k < 4000; k++) i.add(block({ key: `key-${k}` }, c))
    for (let k = 0; k < 3000; k++) i.add(block({ ip: `10.${(k >> 8) & 255}.${k & 255}.1` }, c))
    for (let k = 0; k < 2000; k++) i.add(block({ ip: `172.${16 + (k >> 8)}.${k & 255}.0/24` }, c))
    for (let k = 0; k < 1000; k++) i.add(block({ ip: `2001:db8:${k.toString(16)}::/48` }, c))
    expect(i.size).toBe(10_000)
    expect(i.match('flags', 'key-3999', '1.1.1.1', undefined, 0)).toBeDefined()
    expect(i.match('flags', 'key-4000', '1.1.1.1', undefined, 0)).toBeUndefined()
    expect(i.match('flags', undefined, '10.11.183.1', undefined, 0)?.ip).toBe('10.11.183.1')
    expect(i.match('flags', undefined, '10.11.183.2', undefined, 0)).toBeUndefined()
    expect(i.match('flags', undefined, '172.23.207.99', undefined, 0)?.ip).toBe('172.23.207.0/24')
    expect(i.match('flags', undefined, '172.24.0.1', undefined, 0)).toBeUndefined()
    expect(i.match('flags', undefined, '2001:db8:3e7:1::1', undefined, 0)?.ip).toBe('2001:db8:3e7::/48')
    expect(i.match('flags', undefined, '2001:db8:3e8::1', undefined, 0)).toBeUndefined()
  })
})
