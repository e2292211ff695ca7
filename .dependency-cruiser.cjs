/**
 * The layers of src/, kept by a machine (`npm run lint:deps`, and test/layering.test.ts in
 * `npm test`). From the ground floor up:
 *
 *   0  shared/, errors.ts,       pure helpers (clock, units, digests, redaction, logger interface);
 *      compress/                 content-codings: negotiation, forms, decoding (node:zlib, negotiator)
 *   1  policy/, metrics/         the policy model and the metrics registry
 *   2  contracts/, store/        what capabilities and the composition agree on; the shared Redis connection
 *   3  upstream/, top/           the upstream client (pools, gate, Edge fallback); the top-clients sketch
 *   4  routing/ edge/ blocking/ cache/ rate-limit/ breaker/ probes/   the capabilities;
 *      observe/ (request metrics, access log: read the per-request record after the answer)
 *   5  pipeline.ts, app.ts, admin/   the request pipeline and the two listeners
 *   6  gateway.ts                the composition root
 *   7  cli.ts, cli/              the command line (one file per command group)
 *
 * A module may import only from its own layer's folder or from lower layers; two capabilities
 * never import each other; no cycles at all.
 */
const layers = [
  ['^src/shared/', '^src/errors\\.ts$', '^src/compress/'],
  ['^src/policy/', '^src/metrics/'],
  ['^src/contracts/', '^src/store/'],
  ['^src/upstream/', '^src/top/'],
  ['^src/(routing|edge|blocking|cache|rate-limit|breaker|probes|observe)/'],
  ['^src/pipeline\\.ts$', '^src/app\\.ts$', '^src/admin/'],
  ['^src/gateway\\.ts$'],
  ['^src/cli(\\.ts$|/)']
]

const upward = []
layers.forEach((here, i) => {
  const above = layers.slice(i + 1).flat()
  if (above.length === 0) return
  upward.push({
    name: `layer-${i}-imports-up`,
    comment: `a module of layer ${i} imports from a higher layer`,
    severity: 'error',
    from: { path: here },
    to: { path: above }
  })
})

// folders of one layer stay apart too (policy/metrics, contracts/store, upstream/top, the
// pipeline/app/admin): what two of them share belongs a floor lower
const sideways = []
layers.forEach((here, i) => {
  if (here.length < 2) return
  here.forEach((from) => {
    sideways.push({
      name: `layer-${i}-sideways`,
      comment: `two parts of layer ${i} import each other`,
      severity: 'error',
      from: { path: from },
      to: { path: here.filter((p) => p !== from) }
    })
  })
})

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'an import cycle', from: {}, to: { circular: true } },
    ...upward,
    ...sideways,
    {
      name: 'capabilities-apart',
      severity: 'error',
      comment: 'one capability imports another: what they share belongs in a lower layer',
      from: { path: '^src/(routing|edge|blocking|cache|rate-limit|breaker|probes|observe|upstream|top|admin|policy|metrics|store|contracts|shared)/' },
      to: { path: '^src/(routing|edge|blocking|cache|rate-limit|breaker|probes|observe)/', pathNot: '^src/$1/' }
    },
    {
      name: 'outside-the-layers',
      severity: 'error',
      comment: 'a part of src/ that no layer names: add it to a layer in .dependency-cruiser.cjs',
      from: { path: '^src/', pathNot: layers.flat() },
      to: {}
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' }
  }
}
