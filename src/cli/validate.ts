/**
 * `flaggate validate FILE...`: checks policy files without starting anything, as `nginx -t` does.
 * Every file is checked (a CI step `validate policies/*.yaml` must not stop at the first), each
 * error printed as `FILE:LINE:COL: PATH: message`; exit 1 when any file is invalid.
 */
import { formatPolicyError } from '../policy/load.js'
import { loadPolicyFile } from '../policy/file.js'

export function validate (files: string[]): void {
  let invalid = 0
  for (const file of files) {
    // total (policy/file.ts): every outcome is a verdict, printed as FILE:LINE:COL lines
    const result = loadPolicyFile(file, file, process.env)
    if (!result.ok) {
      invalid++
      for (const e of result.errors) process.stderr.write(formatPolicyError(e) + '\n')
      process.stderr.write(`${file}: ${result.errors.length} error${result.errors.length === 1 ? '' : 's'}\n`)
      continue
    }
    process.stdout.write(`${file}: valid (policy version ${result.policy.version}, ${result.policy.routes.length} routes)\n`)
  }
  if (files.length > 1 && invalid > 0) process.stderr.write(`${invalid} of ${files.length} files invalid\n`)
  if (invalid > 0) process.exitCode = 1
}
