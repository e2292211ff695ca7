/**
 * Quoting for text the gateway prints for an operator to paste into a POSIX shell (`flaggate top`
 * prints the `flaggate block` command for its busiest client). A client chooses its key and, behind
 * a trusted proxy, its address, so those strings are hostile: each is wrapped in single quotes,
 * inside which a POSIX shell interprets nothing, and a single quote in the text is written as
 * `'\''` (close, escaped quote, reopen). Written by hand: it is these two lines, and the npm
 * packages for it (shell-quote, shescape) do more than needed (parsing, per-shell dialects).
 */

/** `x';touch y;echo '` → `'x'\''; touch y;echo '\'''`: one word whatever the text. */
export function shellQuote (text: string): string {
  return `'${text.replace(/'/g, "'\\''")}'`
}
