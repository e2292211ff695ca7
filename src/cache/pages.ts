/**
 * Pages of paginated documents. Edge splits a large environment document into pages (`Link:
 * <…?page_id=…>; rel="next"`); Core never does, and answers every `page_id` with the one document.
 * So `page_id` is part of a document's cache key only for an upstream that paginates: for Core,
 * distinct `page_id`s would each be a cache entry and a Core build of the same document, and 100
 * of them evicted every other key's document (attack 10, docs/security.md).
 *
 * Which upstreams paginate: the one named `edge` (edge routing's name for Flagsmith's Edge API),
 * and any other whose document answer names a next page. The second is a safety net for a
 * deployment whose `core` upstream points at Edge's URL: without it, an SDK following `Link` would
 * be handed the first page again for every page it asks for, for ever. An SDK always asks for the
 * first page before any other, so the first page's answer teaches us before a page is looked up.
 *
 * How many pages of one key (and upstream) are cached: at most {@link MAX_PAGES_PER_KEY} at a
 * time. A page claims a slot when it is stored, for as long as the entry may be served (the
 * rule's whole lifetime); past the bound a page is not cached but still proxied, so an SDK
 * following `Link` through a very large document gets every page (the extra ones from the
 * upstream each time), and a client inventing `page_id`s can hold only that many entries.
 */
import { LRUCache } from 'lru-cache'
import { documentUrl, EDGE_UPSTREAM, isPageUrl } from '../shared/document-query.js'

/**
 * Pages past the first cached per key and upstream. Edge pages are up to 1 MB (about 500 identity
 * overrides each): 16 pages hold a document of some 8,000 overrides.
 */
export const MAX_PAGES_PER_KEY = 16
/** documents whose page slots are remembered; forgetting one only frees its slots early */
const MAX_PAGED_DOCUMENTS = 4096
const NEXT_PAGE = /;\s*rel\s*=\s*"?next"?/i

/** `key\nupstream\nurl` → `key\nupstream`: the document whose pages these are */
function documentOf (key: string): string {
  return key.slice(0, key.indexOf('\n', key.indexOf('\n') + 1))
}

function urlOf (key: string): string {
  return key.slice(key.indexOf('\n', key.indexOf('\n') + 1) + 1)
}

export class DocumentPages {
  readonly #paginating = new Set<string>([EDGE_UPSTREAM])
  /** document → its pages' cache keys → until when each holds its slot */
  readonly #slots = new LRUCache<string, Map<string, number>>({ max: MAX_PAGED_DOCUMENTS })

  /** The URL a document is keyed and filled by (shared/document-query.ts documentUrl). */
  url (url: string, upstream: string): string {
    return documentUrl(url, this.#paginating.has(upstream))
  }

  /** Notes an upstream that named a next page (cache key and the answer's `Link` header). */
  learn (key: string, link: string | undefined): void {
    if (link === undefined || !NEXT_PAGE.test(link)) return
    const upstream = documentOf(key).slice(key.indexOf('\n') + 1)
    this.#paginating.add(upstream)
  }

  /** Whether `key` is a page past the first (its URL carries `page_id`). */
  isPage (key: string): boolean {
    return isPageUrl(urlOf(key))
  }

  /** Whether page `key` may be looked up in the cache: it holds a slot, or one is free. */
  admits (key: string, now: number): boolean {
    const slots = this.#slots.get(documentOf(key))
    if (slots === undefined) return true
    const until = slots.get(key)
    return (until !== undefined && until > now) || live(slots, now) < MAX_PAGES_PER_KEY
  }

  /** Takes (or renews) page `key`'s slot until `until`; false when every slot is taken. */
  claim (key: string, now: number, until: number): boolean {
    const doc = documentOf(key)
    let slots = this.#slots.get(doc)
    if (slots === undefined) this.#slots.set(doc, slots = new Map())
    const held = slots.get(key)
    if ((held === undefined || held <= now) && live(slots, now) >= MAX_PAGES_PER_KEY) return false
    slots.set(key, until)
    return true
  }

  /** Frees the slot of a page that was purged. */
  release (key: string): void {
    this.#slots.get(documentOf(key))?.delete(key)
  }

  /** Frees every slot (purge of everything). */
  clear (): void {
    this.#slots.clear()
  }
}

/** Slots still held (expired ones dropped): at most {@link MAX_PAGES_PER_KEY} entries remain. */
function live (slots: Map<string, number>, now: number): number {
  for (const [k, until] of slots) if (until <= now) slots.delete(k)
  return slots.size
}
