/**
 * Bytes out of a streamed answer, for `flaggate_response_body_bytes_total{route,encoding}`. A
 * streamed answer's size is known only at its end (larger than the proxy's read-whole bound, or
 * unsized, or compressed on the fly), so it is counted then: the bytes the stream gave to the
 * client's response (fastify pipes it: every chunk emitted is written), once, when the stream
 * ends (or is destroyed because the client went away: what was written until then).
 *
 * Per chunk this costs one listener call and an add; the counter itself is touched once per answer.
 */
import type { Readable } from 'node:stream'

/**
 * The `encoding` label for an answer sent with `contentEncoding`: identity, br, gzip or deflate,
 * and `other` for anything else (the value comes from the upstream: the label set stays bounded).
 */
export function codingLabel (contentEncoding: string | string[] | undefined): string {
  if (contentEncoding === undefined) return 'identity'
  const c = (Array.isArray(contentEncoding) ? contentEncoding.join(',') : contentEncoding).trim().toLowerCase()
  switch (c) {
    case '': case 'identity': return 'identity'
    case 'br': case 'gzip': case 'deflate': return c
    case 'x-gzip': return 'gzip'
    default: return 'other'
  }
}

/** Counts what `stream` emits into `counter`, when it closes. Call before the stream is sent. */
export function countStreamed (stream: Readable, counter: { inc: (n: number) => void }): void {
  let bytes = 0
  stream.on('data', (chunk: Buffer) => { bytes += chunk.length })
  // a 'data' listener starts the flow at once; paused, nothing goes by before the response's pipe
  // (which resumes it) is attached, whenever fastify attaches it
  stream.pause()
  // at 'end', before the response's own end listener (added later, by the pipe) finishes the
  // answer: a scrape made after the client got the whole answer sees it. 'close' alone for a
  // stream destroyed before its end (the client went away)
  let counted = false
  const count = (): void => { if (!counted) { counted = true; if (bytes > 0) counter.inc(bytes) } }
  stream.once('end', count)
  stream.once('close', count)
}
