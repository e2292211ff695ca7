import { describe, expect, it } from 'vitest'
import { Readable } from 'node:stream'
import { text } from 'node:stream/consumers'
import zlib from 'node:zlib'
import { negotiate } from '../../src/compress/negotiate.js'
import { decodeBody, DecodedTooLarge, UndecodableBody } from '../../src/compress/decode.js'
import { compressForms, Compressor, formEtag, type CompressedBodies } from '../../src/compress/forms.js'
import { clientHasRepresentation, entryForms, etagMatches } from '../../src/compress/representation.js'
import { compressProxied, typeMatches } from '../../src/compress/proxied.js'
import { flagListQuery, identitiesCacheProblem, isFlagListPath, isIdentitiesPath } from '../../src/shared/flag-list.js'

describe('Accept-Encoding negotiation', () => {
  it.each([
    [undefined, 'identity'],
    ['', 'identity'],
    ['gzip, deflate', 'gzip'], // what undici (the Node SDK) sends
    ['gzip, deflate, br', 'br'],
    ['gzip, br', 'br'], // equal q: the smaller one
    ['br;q=0.5, gzip', 'gzip'],
    ['br;q=0, gzip;q=0', 'identity'],
    ['gzip;q=0', 'identity'],
    ['identity', 'identity'],
    ['identity;q=1, br;q=0.5', 'identity'],
    ['identity;q=0, gzip', 'gzip'],
    ['*', 'br'],
    ['*;q=0', 'identity'], // nothing acceptable: identity anyway (documented)
    ['*, br;q=0', 'gzip'],
    ['zstd', 'identity'],
    ['GZIP', 'gzip'],
    [['gzip', 'br'], 'br']
  ] as const)('%j → %s', (header, want) => {
    expect(negotiate(header as string | string[] | undefined)).toBe(want)
    // remembered answers are the same answers
    expect(negotiate(header as string | string[] | undefined)).toBe(want)
  })

  it('a flood of distinct header values is answered correctly past the memo bound', () => {
    for (let i = 0; i < 1000; i++) expect(negotiate(`x-${i}, gzip;q=0.${(i % 9) + 1}`)).toBe('gzip')
    expect(negotiate('br' + ', x'.repeat(200))).toBe('br')
  })
})

describe('decoding an upstream body', () => {
  const body = Buffer.from(JSON.stringify({ id: 1, text: 'x'.repeat(5000) }))
  it('undoes gzip, br, deflate (zlib and raw) and stacked codings', async () => {
    expect(await decodeBody(zlib.gzipSync(body), 'gzip', 1e6)).toEqual(body)
    expect(await decodeBody(zlib.brotliCompressSync(body), 'br', 1e6)).toEqual(body)
    expect(await decodeBody(zlib.deflateSync(body), 'deflate', 1e6)).toEqual(body)
    expect(await decodeBody(zlib.deflateRawSync(body), 'deflate', 1e6)).toEqual(body)
    expect(await decodeBody(zlib.brotliCompressSync(zlib.gzipSync(body)), 'gzip, br', 1e6)).toEqual(body)
    expect(await decodeBody(body, undefined, 1e6)).toBe(body)
    expect(await decodeBody(body, 'identity', 1e6)).toBe(body)
  })
  it('a body that is not what its Content-Encoding says is UndecodableBody', async () => {
    await expect(decodeBody(body, 'gzip', 1e6)).rejects.toBeInstanceOf(UndecodableBody)
    // cut in the middle of its data (node:zlib forgives a missing gzip trailer alone)
    const varied = zlib.gzipSync(Buffer.from(JSON.stringify(Array.from({ length: 2000 }, (_, i) => i * 7919 % 1000))))
    await expect(decodeBody(varied.subarray(0, varied.length / 2), 'gzip', 1e6)).rejects.toBeInstanceOf(UndecodableBody)
    await expect(decodeBody(body, 'br', 1e6)).rejects.toBeInstanceOf(UndecodableBody)
    await expect(decodeBody(body, 'zstd', 1e6)).rejects.toBeInstanceOf(UndecodableBody)
  })
  it('stops at maxBytes decoded bytes (a decompression bomb costs at most that)', async () => {
    const bomb = zlib.gzipSync(Buffer.alloc(50 * 1024 * 1024))
    expect(bomb.length).toBeLessThan(100 * 1024)
    await expect(decodeBody(bomb, 'gzip', 1024 * 1024)).rejects.toBeInstanceOf(DecodedTooLarge)
    await expect(decodeBody(zlib.brotliCompressSync(Buffer.alloc(5e6)), 'br', 1e6)).rejects.toBeInstanceOf(DecodedTooLarge)
    expect((await decodeBody(zlib.gzipSync(Buffer.alloc(1000)), 'gzip', 1000)).length).toBe(1000)
  })
})

describe('forms of an entry', () => {
  it('compressForms makes forms that decode to the body', async () => {
    const body = Buffer.from(JSON.stringify(Array.from({ length: 500 }, (_, i) => ({ i, name: `feature-${i}` }))))
    const f = await compressForms(body)
    expect(zlib.brotliDecompressSync(f.br)).toEqual(body)
    expect(zlib.gunzipSync(f.gzip)).toEqual(body)
    expect(f.br.length).toBeLessThan(body.length / 5)
  })
  it('ETags per representation: distinct, strong, matched only by their own', () => {
    const id = '"abc"'
    const br = formEtag(id, 'br')
    const gz = formEtag(id, 'gzip')
    expect([br, gz]).toEqual(['"abc.br"', '"abc.gz"'])
    expect(etagMatches(br, '"abc.br"')).toBe(true)
    expect(etagMatches(br, 'W/"abc.br"')).toBe(true)
    expect(etagMatches(br, '"abc"')).toBe(false)
    expect(etagMatches(gz, '"abc.br"')).toBe(false)
    expect(etagMatches(id, '"x", "abc"')).toBe(true)
    expect(etagMatches(gz, '*')).toBe(true)
    expect(clientHasRepresentation(br, 1_700_000_000_000, undefined, new Date(1_700_000_000_000).toUTCString())).toBe(true)
    expect(clientHasRepresentation(br, 1_700_000_001_000, undefined, new Date(1_700_000_000_000).toUTCString())).toBe(false)
    // If-None-Match wins over If-Modified-Since
    expect(clientHasRepresentation(br, 0, '"abc"', new Date().toUTCString())).toBe(false)
    const forms = entryForms(id, { br: Buffer.alloc(10), gzip: Buffer.alloc(20) })
    expect(forms.bytes).toBe(30 + br.length + gz.length)
  })
  it('the compressor makes each entry once, one at a time, and survives a failing job and callback', async () => {
    let running = 0
    let peak = 0
    const releases: Array<() => void> = []
    const errors: unknown[] = []
    const c = new Compressor({
      make: async (body) => {
        running++
        peak = Math.max(peak, running)
        await new Promise<void>((resolve) => releases.push(resolve))
        running--
        if (body.toString() === 'fail') throw new Error('boom')
        return { br: body, gzip: body }
      },
      onError: (e) => errors.push(e)
    })
    const got: string[] = []
    const entries = [{}, {}, {}, {}]
    c.request(entries[0]!, Buffer.from('a'), (f: CompressedBodies) => got.push(`a:${f.br.toString()}`))
    c.request(entries[0]!, Buffer.from('a'), () => got.push('duplicate'))
    c.request(entries[1]!, Buffer.from('fail'), () => got.push('never'))
    c.request(entries[2]!, Buffer.from('c'), () => { throw new Error('callback') })
    c.request(entries[3]!, Buffer.from('d'), (f) => got.push(`d:${f.gzip.toString()}`))
    expect(c.stats()).toMatchObject({ running: 1, queued: 3 })
    expect(c.pending(entries[0]!)).toBe(true)
    while (c.stats().running > 0) {
      releases.splice(0).forEach((r) => r())
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect(peak).toBe(1)
    expect(got.sort()).toEqual(['a:a', 'd:d'])
    expect(errors.map((e) => (e as Error).message).sort()).toEqual(['boom', 'callback'])
    expect(c.pending(entries[0]!)).toBe(false)
    expect(c.stats()).toMatchObject({ made: 3, failed: 1, running: 0, queued: 0 })
  })
})

describe('compressing a proxied answer', () => {
  const rule = { minSize: 1024, types: ['application/json', 'text/*'] }
  const json = Buffer.from(JSON.stringify({ flags: 'y'.repeat(4000) }))
  it('compresses an eligible buffered answer and fixes its headers', async () => {
    const headers: Record<string, string | string[] | undefined> = { 'content-type': 'application/json', 'content-length': String(json.length), etag: '"up"', vary: 'Origin' }
    const r = await compressProxied(rule, 'gzip, br', 'GET', 200, headers, json)
    expect(r.encoding).toBe('br')
    expect(zlib.brotliDecompressSync(r.body as Buffer)).toEqual(json)
    expect(headers).toMatchObject({ 'content-encoding': 'br', 'content-length': String((r.body as Buffer).length), etag: 'W/"up"', vary: 'Origin, Accept-Encoding' })
    expect(r.identityBytes).toBe(json.length)
  })
  it('compresses a streamed answer', async () => {
    const headers: Record<string, string | string[] | undefined> = { 'content-type': 'text/plain; charset=utf-8' }
    const r = await compressProxied(rule, 'gzip', 'GET', 200, headers, Readable.from([json, json]))
    expect(headers['content-encoding']).toBe('gzip')
    expect(headers['content-length']).toBeUndefined()
    const chunks: Buffer[] = []
    for await (const c of r.body as Readable) chunks.push(c as Buffer)
    expect(zlib.gunzipSync(Buffer.concat(chunks))).toEqual(Buffer.concat([json, json]))
  })
  it.each([
    ['already encoded', 'GET', 200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, 'gzip'],
    ['too small', 'GET', 200, { 'content-type': 'application/json', 'content-length': '10' }, 'gzip'],
    ['other type', 'GET', 200, { 'content-type': 'image/png' }, 'gzip'],
    ['no type', 'GET', 200, {}, 'gzip'],
    ['no-transform', 'GET', 200, { 'content-type': 'application/json', 'cache-control': 'private, no-transform' }, 'gzip'],
    ['HEAD', 'HEAD', 200, { 'content-type': 'application/json' }, 'gzip'],
    ['204', 'GET', 204, { 'content-type': 'application/json' }, 'gzip'],
    ['304', 'GET', 304, { 'content-type': 'application/json' }, 'gzip'],
    ['client refuses', 'GET', 200, { 'content-type': 'application/json' }, 'gzip;q=0, br;q=0'],
    ['client sent nothing', 'GET', 200, { 'content-type': 'application/json' }, undefined]
  ] as const)('leaves alone: %s', async (_what, method, status, h, ae) => {
    const headers: Record<string, string | string[] | undefined> = { ...h }
    const body = (status === 200 && 'content-length' in h) ? Buffer.alloc(10) : json
    const r = await compressProxied(rule, ae, method, status, headers, body)
    expect(r.body).toBe(body)
    expect(r.encoding).toBe('identity')
    expect(headers['content-encoding']).toBe((h as Record<string, string>)['content-encoding'])
  })
  it('media ranges', () => {
    expect(typeMatches('application/json; charset=utf-8', ['application/json'])).toBe(true)
    expect(typeMatches('Text/HTML', ['text/*'])).toBe(true)
    expect(typeMatches('textual/html', ['text/*'])).toBe(false)
    expect(typeMatches('application/jsonx', ['application/json'])).toBe(false)
  })
  it('a stream the client abandons aborts its upstream body', async () => {
    const upstream = new Readable({ read () {} })
    upstream.push(json)
    const r = await compressProxied(rule, 'gzip', 'GET', 200, { 'content-type': 'application/json' }, upstream)
    ;(r.body as Readable).destroy()
    await new Promise((resolve) => setImmediate(resolve))
    expect(upstream.destroyed).toBe(true)
    expect(await text(Readable.from(['ok']))).toBe('ok')
  })
})

describe('flag-list keys', () => {
  it('keeps only feature, the last one', () => {
    expect(flagListQuery('')).toBe('')
    expect(flagListQuery('?')).toBe('')
    expect(flagListQuery('?cb=1')).toBe('')
    expect(flagListQuery('?feature=x')).toBe('?feature=x')
    expect(flagListQuery('?a=1&feature=x&b=2&feature=y')).toBe('?feature=y')
    expect(flagListQuery('?features=x&featurex=1')).toBe('')
    expect(flagListQuery('?feature')).toBe('?feature')
    expect(isFlagListPath('/api/v1/flags/')).toBe(true)
    expect(isFlagListPath('/api/v1/flags/1/multivariate-options/')).toBe(false)
  })
  it('identities/ routes cannot carry a cache rule', () => {
    expect(identitiesCacheProblem({ path: '/api/v1/identities/' })).toMatch(/cannot be cached/)
    // a broad prefix is allowed; its identities/ requests are never cached (isIdentitiesPath)
    expect(identitiesCacheProblem({ pathPrefix: '/' })).toBeUndefined()
    expect(isIdentitiesPath('/api/v1/identities/')).toBe(true)
    expect(isIdentitiesPath('/api/v1/flags/')).toBe(false)
    expect(identitiesCacheProblem({ pathPrefix: '/proxy/api/v1/identities/' })).toBeDefined()
    expect(identitiesCacheProblem({ path: '/api/v1/flags/' })).toBeUndefined()
    expect(identitiesCacheProblem({ pathPrefix: '/api/v1/environment-document/' })).toBeUndefined()
  })
})
