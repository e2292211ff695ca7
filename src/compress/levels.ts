/**
 * The compression levels of the forms made for cached answers, chosen by measurement
 * (bench/compression-levels.ts; the table is in docs/compression.md). A form is made once per
 * cached entry and then sent to every client that accepts it, so the level trades one
 * compression per entry version against bytes on every answer.
 */
import zlib from 'node:zlib'

/** brotli quality (0–11) */
export const brotli = 4
/** gzip level (1–9) */
export const gzip = 6
/** bodies smaller than this are always sent identity: their compressed form saves less than its headers cost */
export const MIN_COMPRESS_BYTES = 1024

export function brotliOptions (size: number): zlib.BrotliOptions {
  return {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: brotli,
      [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: size
    }
  }
}

export const gzipOptions: zlib.ZlibOptions = { level: gzip }
