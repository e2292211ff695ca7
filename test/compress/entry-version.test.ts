/**
 * Compressed forms belong to one entry version (src/cache/core.ts attachForms with the real
 * compressor): a document that changes while its old version is being compressed never serves
 * the old version's bytes, and the byte bound counts every form.
 */
import { describe, expect, it } from 'vitest'
import zlib from 'node:zlib'
import { DocumentCache } from '../../src/cache/core.js'
import type { CacheRule, CachedDocument, Fill } from '../../src/cache/document.js'
import { compressForms, Compressor, type CompressedBodies } from '../../src/compress/forms.js'

const RULE: CacheRule = { ttl: 30_000, staleWhileRevalidate: 60_000, staleIfError: 600_000, maxEntrySize: 1024 * 1024 }
const KEY = 'ser.test-key'
const URL_ = '/api/v1/environment-document/'

function version (v: string): Buffer {
  return Buffer.from(JSON.stringify({ id: 1, api_key: 'client', project: { id: 7 }, version: v, pad: Array.from({ length: 300 }, (_, i) => `${v}-${i}`) }))
}
const fillWith = (body: Buffer): Fill => async () => ({ statusCode: 200, headers: { 'content-type': 'application/json' }, body })

async function stored (cache: DocumentCache, body: Buffer): Promise<CachedDocument> {
  const r = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: fillWith(body) })
  if (r.kind !== 'document') throw new Error(r.kind)
  return r.document
}

/** A compressor whose jobs finish when the test says (real compression, held back). */
function heldCompressor () {
  const held: Array<() => void> = []
  const compressor = new Compressor({ make: async (body) => { const forms = await compressForms(body); await new Promise<void>((resolve) => held.push(resolve)); return forms } })
  const releaseAll = async (): Promise<void> => {
    while (compressor.stats().running + compressor.stats().queued > 0) {
      held.splice(0).forEach((r) => r())
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }
  return { compressor, releaseAll }
}

describe('forms of one entry version', () => {
  it('a document that changes mid-compression never gets the old version\'s forms', async () => {
    const cache = new DocumentCache({ maxSize: 10 * 1024 * 1024 })
    const { compressor, releaseAll } = heldCompressor()
    const attached: Array<CachedDocument | undefined> = []
    const ask = (doc: CachedDocument): void => compressor.request(doc, doc.body, (b: CompressedBodies) => { attached.push(cache.attachForms(KEY, URL_, '', doc, b)) })

    const v1 = await stored(cache, version('one'))
    ask(v1)
    // the document changes while v1 is compressed: purged and filled again
    expect(cache.purge({ envId: 1 })).toBe(1)
    const v2 = await stored(cache, version('two'))
    ask(v2)
    await releaseAll()
    // v1's forms were refused; v2 got its own
    expect(attached[0]).toBeUndefined()
    expect(attached[1]).toBeDefined()
    const current = cache.fresh(KEY, URL_, RULE)!
    expect(current.forms).toBeDefined()
    expect(zlib.brotliDecompressSync(current.forms!.br.body).equals(version('two'))).toBe(true)
    expect(zlib.gunzipSync(current.forms!.gzip.body).equals(version('two'))).toBe(true)
    expect(current.forms!.br.etag).toBe(current.etag.slice(0, -1) + '.br"')
    expect(current.body.equals(version('two'))).toBe(true)
  })

  it('an entry replaced while its forms were made (a refresh with a new body) keeps the new body without forms', async () => {
    let clock = 1_000_000
    const cache = new DocumentCache({ maxSize: 10 * 1024 * 1024, clock: () => clock })
    const { compressor, releaseAll } = heldCompressor()
    const v1 = await stored(cache, version('one'))
    let result: CachedDocument | undefined | 'none' = 'none'
    compressor.request(v1, v1.body, (b) => { result = cache.attachForms(KEY, URL_, '', v1, b) })
    clock += RULE.ttl + 1
    // past the ttl: a refresh brings version two
    const r = await cache.lookup({ envKey: KEY, url: URL_, rule: RULE, fill: fillWith(version('two')) })
    expect(r.kind === 'document' && r.status).toBe('UPDATING')
    await new Promise((resolve) => setTimeout(resolve, 10))
    await releaseAll()
    expect(result).toBeUndefined()
    const now = cache.fresh(KEY, URL_, RULE)!
    expect(now.body.equals(version('two'))).toBe(true)
    expect(now.forms).toBeUndefined()
  })

  it('the byte bound counts every form; forms that do not fit are not kept', async () => {
    const body = version('one')
    const forms = await compressForms(body)
    const roomy = new DocumentCache({ maxSize: 10 * 1024 * 1024 })
    const doc = await stored(roomy, body)
    const before = roomy.bytes
    const withForms = roomy.attachForms(KEY, URL_, '', doc, forms)!
    expect(roomy.bytes - before).toBe(withForms.forms!.bytes)
    expect(withForms.forms!.bytes).toBeGreaterThanOrEqual(forms.br.length + forms.gzip.length)
    // the same document again cannot take forms twice
    expect(roomy.attachForms(KEY, URL_, '', withForms, forms)).toBeUndefined()
    expect(roomy.attachForms(KEY, URL_, '', doc, forms)).toBeUndefined()

    const tight = new DocumentCache({ maxSize: before + 10 })
    const d = await stored(tight, body)
    expect(tight.attachForms(KEY, URL_, '', d, forms)).toBeUndefined()
    expect(tight.fresh(KEY, URL_, RULE)).toBe(d)
    expect(tight.bytes).toBeLessThanOrEqual(before + 10)
  })
})
