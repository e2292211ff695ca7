/**
 * A fake OpenTelemetry collector: a real HTTP server that takes OTLP/HTTP JSON on
 * `POST /v1/traces` (what @opentelemetry/exporter-trace-otlp-http sends), as a collector's
 * `otlp` receiver on port 4318 does, and keeps the spans it received, decoded.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ReceivedSpan {
  traceId: string
  spanId: string
  /** '' for a root span */
  parentSpanId: string
  name: string
  /** OTLP enum: 1 internal, 2 server, 3 client */
  kind: number
  /** OTLP status code: 0 unset, 1 ok, 2 error */
  statusCode: number
  attributes: Record<string, string | number | boolean>
  resource: Record<string, string | number | boolean>
}

export interface FakeCollector {
  /** the base URL, as the policy's `tracing.otlp` */
  url: string
  readonly spans: ReceivedSpan[]
  /** POSTs received, by path (anything but /v1/traces is a mistake of the sender) */
  readonly posts: string[]
  /** resolves once `n` spans have arrived (polls; generous deadline) */
  waitForSpans: (n: number, timeoutMs?: number) => Promise<ReceivedSpan[]>
  close: () => Promise<void>
}

interface AnyValue { stringValue?: string; intValue?: string | number; doubleValue?: number; boolValue?: boolean }
interface KeyValue { key: string; value: AnyValue }

function valueOf (v: AnyValue): string | number | boolean {
  if (v.stringValue !== undefined) return v.stringValue
  if (v.intValue !== undefined) return Number(v.intValue)
  if (v.doubleValue !== undefined) return v.doubleValue
  if (v.boolValue !== undefined) return v.boolValue
  return ''
}

function attrs (list: KeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {}
  for (const kv of list ?? []) out[kv.key] = valueOf(kv.value)
  return out
}

export async function startFakeCollector (): Promise<FakeCollector> {
  const spans: ReceivedSpan[] = []
  const posts: string[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      posts.push(req.url ?? '')
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !String(req.headers['content-type']).startsWith('application/json')) {
        res.writeHead(404).end()
        return
      }
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { resourceSpans: Array<{ resource?: { attributes?: KeyValue[] }; scopeSpans: Array<{ spans: Array<{ traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; status?: { code?: number }; attributes?: KeyValue[] }> }> }> }
      for (const rs of body.resourceSpans) {
        const resource = attrs(rs.resource?.attributes)
        for (const ss of rs.scopeSpans) {
          for (const s of ss.spans) {
            spans.push({ traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? '', name: s.name, kind: s.kind, statusCode: s.status?.code ?? 0, attributes: attrs(s.attributes), resource })
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    posts,
    async waitForSpans (n, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs
      while (spans.length < n) {
        if (Date.now() > deadline) throw new Error(`the collector received ${spans.length} spans, expected ${n}`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      return spans
    },
    async close () {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
