/**
 * Reading a policy file from disk, for `flaggate validate`/`explain`, boot and reload. Like
 * {@link loadPolicy} it is total: a missing file, a directory, a FIFO, a file larger than the cap,
 * invalid UTF-8 or a file replaced while it is read all end in a list of positioned errors, never
 * an exception and never a wait (a FIFO would block a plain read until someone writes to it).
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs'
import { isUtf8 } from 'node:buffer'
import { loadPolicy, MAX_POLICY_BYTES, type PolicyError, type PolicyResult } from './load.js'

export type PolicyText = { ok: true; text: string } | { ok: false; errors: PolicyError[] }

const fileError = (file: string, message: string, line = 1, col = 1): PolicyText => ({ ok: false, errors: [{ file, line, col, path: '', message }] })

/** The file's text, or why it cannot be a policy. `file` is the name errors carry; `path` what is opened. */
export function readPolicyFile (file: string, path: string = file): PolicyText {
  let fd: number
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0))
  } catch (err) {
    return fileError(file, `cannot read the policy file: ${(err as Error).message}`)
  }
  try {
    const st = fstatSync(fd)
    if (st.isDirectory()) return fileError(file, 'cannot read the policy file: it is a directory')
    if (!st.isFile()) return fileError(file, 'cannot read the policy file: it is not a regular file')
    if (st.size > MAX_POLICY_BYTES) return fileError(file, `the policy file is larger than ${MAX_POLICY_BYTES / 1024 / 1024} MB`)
    // Read to the end rather than trusting the size: the file may grow or shrink under us; one
    // byte past the cap is enough to know it is too large.
    const buf = Buffer.allocUnsafe(MAX_POLICY_BYTES + 1)
    let n = 0
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null)
      if (got === 0) break
      n += got
      if (n > MAX_POLICY_BYTES) return fileError(file, `the policy file is larger than ${MAX_POLICY_BYTES / 1024 / 1024} MB`)
    }
    return decodePolicy(file, buf.subarray(0, n))
  } catch (err) {
    return fileError(file, `cannot read the policy file: ${(err as Error).message}`)
  } finally {
    closeSync(fd)
  }
}

/** The bytes of a policy file as text, or where they stop being UTF-8. */
export function decodePolicy (file: string, bytes: Uint8Array): PolicyText {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (buf.length > MAX_POLICY_BYTES) return fileError(file, `the policy file is larger than ${MAX_POLICY_BYTES / 1024 / 1024} MB`)
  if (!isUtf8(buf)) return invalidUtf8(file, buf)
  return { ok: true, text: buf.toString('utf8') }
}

/** Points at the first line that is not UTF-8 (a newline byte never occurs inside a UTF-8 sequence). */
function invalidUtf8 (file: string, bytes: Buffer): PolicyText {
  let start = 0
  let line = 1
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x0a, start)
    if (end === -1) end = bytes.length
    const chunk = bytes.subarray(start, end)
    if (!isUtf8(chunk)) {
      const col = chunk.toString('utf8').indexOf('\uFFFD') + 1
      return fileError(file, 'the policy file is not valid UTF-8 (save it as UTF-8 text)', line, Math.max(1, col))
    }
    start = end + 1
    line++
  }
  return fileError(file, 'the policy file is not valid UTF-8 (save it as UTF-8 text)')
}

/** decodePolicy then loadPolicy: from the bytes of a file to a verdict. */
export function loadPolicyBytes (file: string, bytes: Uint8Array, env: NodeJS.ProcessEnv = process.env): PolicyResult {
  const decoded = decodePolicy(file, bytes)
  if (!decoded.ok) return decoded
  return loadPolicy(file, decoded.text, env)
}

/** readPolicyFile then loadPolicy: the whole way from a path to a verdict. */
export function loadPolicyFile (file: string, path: string = file, env: NodeJS.ProcessEnv = process.env, version?: string): PolicyResult {
  const read = readPolicyFile(file, path)
  if (!read.ok) return read
  return loadPolicy(file, read.text, env, version)
}
