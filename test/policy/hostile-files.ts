/**
 * Policy files an attacker, a broken editor or a bad deploy could leave on disk, each with the
 * error it must produce. Shared by the unit test, the CLI test and the running-gateway test.
 */

/** the "billion laughs" shape: 9 levels of 9 aliases each, 9^9 strings when expanded */
export function billionLaughs (): string {
  const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
  for (let i = 1; i < 10; i++) {
    const prev = String.fromCharCode(96 + i)
    const name = String.fromCharCode(97 + i)
    lines.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`)
  }
  return lines.join('\n') + '\n'
}

export interface HostileFile {
  name: string
  bytes: Buffer
  /** the one error it must produce */
  message: RegExp
  /** where it points, when that is known exactly */
  at?: { line: number; col: number }
}

const text = (s: string) => Buffer.from(s, 'utf8')

export const HOSTILE_FILES: HostileFile[] = [
  { name: 'billion laughs', bytes: text(billionLaughs()), message: /aliases expand into too much data/, at: { line: 2, col: 8 } },
  { name: 'more than 100 aliases', bytes: text('x: &x 1\ny: [' + '*x, '.repeat(150) + ']\n'), message: /more than 100 aliases/ },
  { name: 'deeply nested flow sequences', bytes: text('['.repeat(5000) + ']'.repeat(5000)), message: /nested deeper than 64 levels/, at: { line: 1, col: 65 } },
  { name: 'deeply nested block mappings', bytes: text(Array.from({ length: 300 }, (_, i) => ' '.repeat(i) + 'a:').join('\n') + '\n'), message: /nested deeper than 64 levels/, at: { line: 65, col: 65 } },
  { name: 'larger than 1 MB', bytes: text('# ' + 'x'.repeat(1024 * 1024) + '\n'), message: /larger than 1 MB/ },
  { name: 'too many tokens', bytes: text('routes: [' + '1,'.repeat(60_000) + ']\n'), message: /more than 100000 YAML tokens/ },
  { name: 'a mapping with 5000 keys', bytes: text('routes:\n' + Array.from({ length: 5000 }, (_, i) => `  k${i}: 1\n`).join('')), message: /more than 1000 keys/, at: { line: 2, col: 3 } },
  { name: 'binary garbage', bytes: Buffer.from([0x00, 0x01, 0x02, 0x7f, 0x1b, 0x5b, 0x00, 0x0a, 0x00]), message: /./ },
  { name: 'invalid UTF-8', bytes: Buffer.concat([text('upstreams:\n  core: { url: "http://x'), Buffer.from([0xc3, 0x28, 0xff]), text('" }\n')]), message: /not valid UTF-8/, at: { line: 2, col: 25 } },
  { name: 'empty file', bytes: Buffer.alloc(0), message: /the policy file is empty/ },
  { name: 'comments only', bytes: text('# nothing here\n\n'), message: /the policy file is empty/ },
  { name: 'a BOM and nothing else', bytes: Buffer.from([0xef, 0xbb, 0xbf]), message: /the policy file is empty/ },
  { name: 'two documents', bytes: text('upstreams: {}\n---\nroutes: []\n'), message: /holds one YAML document/, at: { line: 2, col: 1 } },
  { name: 'duplicate keys', bytes: text('routes: []\nroutes: []\n'), message: /Map keys must be unique/, at: { line: 2, col: 1 } },
  { name: 'a scalar document', bytes: text('just a string\n'), message: /must be a mapping/ }
]
