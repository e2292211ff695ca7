/**
 * Size caps on request headers, checked once per request before anything reads them (the rate
 * limiter, the cache, the log and their memos all key on client-chosen header values).
 *
 * - The whole header block: Node's `maxHeaderSize` (16 KiB by default), enforced by its parser;
 *   app.ts answers that overflow 431 too.
 * - One header line: {@link MAX_HEADER_BYTES}, as NGINX's `large_client_header_buffers 4 8k`.
 * - `X-Environment-Key`: {@link MAX_KEY_BYTES}. Flagsmith keys are a random id of a few dozen
 *   characters, `ser.`-prefixed for server keys; 256 leaves room for any
 *   future format.
 */
export const MAX_KEY_BYTES = 256
export const MAX_HEADER_BYTES = 8 * 1024

/**
 * The reason to answer 431, or undefined. `rawHeaders` is Node's flat [name, value, ...] list;
 * its strings are latin1, one character per byte, so `.length` is the byte count.
 */
export function oversizedHeader (rawHeaders: readonly string[], envKey: string | undefined): string | undefined {
  if (envKey !== undefined && envKey.length > MAX_KEY_BYTES) return `X-Environment-Key is longer than ${MAX_KEY_BYTES} bytes.`
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length + rawHeaders[i + 1]!.length > MAX_HEADER_BYTES) return `A request header is larger than ${MAX_HEADER_BYTES} bytes.`
  }
  return undefined
}
