/**
 * OpenTelemetry tracing, with `tracing: { otlp, sampleRatio }` in the policy: one SERVER span per
 * proxied request, exported in batches over OTLP/HTTP (JSON) to `<otlp>/v1/traces`.
 *
 * Free when off: the composition root (gateway.ts) imports this module, and with it the
 * OpenTelemetry packages, only when the policy it starts with has a `tracing` section; without
 * one no hook is registered and no request does any tracing work (the upstream headers see no
 * `traceHeaders` on the record and pass the client's `traceparent` as it came).
 *
 * The span continues an incoming W3C `traceparent` (its parent is the caller's span) and is the
 * parent of what Core does: the record's `traceHeaders` (contracts/request.ts), written right
 * after routing, go upstream on the proxied request and on the cache fill it starts. Its
 * attributes are read from the per-request record after the answer, as the access log reads
 * them (the same redactions), so tracing decides and changes nothing about a request.
 *
 * Sampling is the trace id against `sampleRatio` (TraceIdRatioBased), whatever the sampled flag
 * of the incoming `traceparent` says: clients are untrusted, and a client that always sets the
 * flag must not make the gateway export every one of its requests. An unsampled request still
 * gets a span id and a `traceparent` (flag 00) for Core. Spans wait in a bounded queue (2,048;
 * beyond it they are dropped, never the request held up) and leave in batches of up to 512.
 *
 * Only the OpenTelemetry packages are used, none of their global registrations: no global
 * tracer provider, context manager or propagator is installed, so nothing else in the process
 * is traced by accident. Versions: the 2.x SDK line (0.2xx exporters), the last one supporting
 * Node 20; the 3.x line needs Node 22.
 */
import { hostname } from 'node:os'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, defaultTextMapGetter, defaultTextMapSetter, trace, type Attributes, type Context, type Span } from '@opentelemetry/api'
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BatchSpanProcessor, TraceIdRatioBasedSampler, TracerProvider, type ReadableSpan, type Sampler, type SamplingResult, type SpanExporter } from '@opentelemetry/sdk-trace'
import { ATTR_CLIENT_ADDRESS, ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION, ATTR_URL_PATH } from '@opentelemetry/semantic-conventions'
import type { Policy } from '../policy/compile.js'
import type { TracingData } from '../policy/schema.js'
import { decisionOf, upstreamOf, type RequestGateway } from '../contracts/request.js'
import { UPSTREAM_HEADER } from '../contracts/wire.js'
import { loggableUrl, redactions } from './access-log.js'

/** How long shutdown waits for the last batch to reach the collector. */
const SHUTDOWN_FLUSH_MS = 3000
/** At most one warning per this long about spans the collector did not take. */
const WARN_EVERY_MS = 60_000

export interface TracingOptions {
  tracing: TracingData
  version: string
  logger: Logger
  /** the breaker state of an upstream that has a `breakers` entry in the policy (undefined otherwise) */
  breakerState: (policy: Policy, upstream: string) => string | undefined
}

/** The hooks the public app registers (app.ts) and what the composition root calls. */
export interface RequestTracing {
  /** right after routing, before any other step: starts the span, writes `traceHeaders` */
  onRequest: (request: FastifyRequest, reply: FastifyReply, done: () => void) => void
  /** after the answer: the span's attributes from the record, then its end */
  onResponse: (request: FastifyRequest, reply: FastifyReply, done: () => void) => void
  /** a client that left before its answer: the span ends there */
  onRequestAbort: (request: FastifyRequest, done: () => void) => void
  /** on every policy reload: a new sampleRatio applies at once (otlp needs a restart) */
  reload: (policy: Policy) => void
  /** sends what is queued (bounded), then stops */
  close: () => Promise<void>
}

/** TraceIdRatioBased with a ratio a reload can change. */
class LiveRatioSampler implements Sampler {
  #inner: TraceIdRatioBasedSampler
  constructor (ratio: number) { this.#inner = new TraceIdRatioBasedSampler(ratio) }
  set ratio (r: number) { this.#inner = new TraceIdRatioBasedSampler(r) }
  shouldSample (context: Context, traceId: string): SamplingResult {
    return this.#inner.shouldSample(context, traceId)
  }

  toString (): string { return `LiveRatio(${this.#inner.toString()})` }
}

/** The exporter, with a warning (at most once a minute) when the collector refuses or cannot be reached. */
function warningExporter (inner: SpanExporter, logger: Logger, url: string): SpanExporter {
  let lastWarn = -Infinity
  return {
    export (spans: ReadableSpan[], done: (r: ExportResult) => void): void {
      inner.export(spans, (r) => {
        if (r.code !== ExportResultCode.SUCCESS && Date.now() - lastWarn >= WARN_EVERY_MS) {
          lastWarn = Date.now()
          logger.warn({ url, spans: spans.length, error: r.error?.message }, 'trace export failed: spans dropped (warned at most once a minute)')
        }
        done(r)
      })
    },
    shutdown: async () => { await inner.shutdown() },
    forceFlush: async () => { await inner.forceFlush?.() }
  }
}

/** `<otlp>/v1/traces`, whether or not the base URL ends with a slash. */
export function tracesUrl (otlp: string): string {
  return otlp.replace(/\/+$/, '') + '/v1/traces'
}

/** hrtime (process.hrtime.bigint) → epoch milliseconds, for a span that starts when routing did. */
function epochMsOf (hr: bigint): number {
  return Date.now() - Number(process.hrtime.bigint() - hr) / 1e6
}

function spanName (method: string, gw: RequestGateway): string {
  // semantic conventions: `{method} {route}`, the route being a low-cardinality name (the policy's)
  return gw.route === undefined ? method : `${method} ${gw.route.name}`
}

/** The span's attributes: HTTP semantic conventions, then the gateway's own under `flaggate.`. */
export function spanAttributes (request: FastifyRequest, reply: FastifyReply, gw: RequestGateway, breaker: string | undefined): Attributes {
  const raw = request.raw.url ?? ''
  const q = raw.indexOf('?')
  const upstream = reply.getHeader(UPSTREAM_HEADER)
  const status = reply.statusCode
  const a: Attributes = {
    [ATTR_HTTP_REQUEST_METHOD]: request.method,
    [ATTR_HTTP_RESPONSE_STATUS_CODE]: status,
    // the canonical path with keys and identifiers redacted, as in the access log; no query
    [ATTR_URL_PATH]: loggableUrl(gw.path ?? (q === -1 ? raw : raw.slice(0, q)), ''),
    [ATTR_CLIENT_ADDRESS]: gw.clientIp,
    'flaggate.request_id': request.id,
    'flaggate.route': gw.route?.name ?? 'none',
    'flaggate.decision': decisionOf(gw),
    'flaggate.upstream': upstream === undefined ? 'none' : String(upstream)
  }
  if (gw.cacheStatus !== undefined) a['flaggate.cache.status'] = gw.cacheStatus
  if (gw.limitedBy !== undefined) a['flaggate.limit'] = gw.limitedBy
  if (breaker !== undefined) a['flaggate.breaker.state'] = breaker
  if (gw.upstreamMs !== undefined) a['flaggate.upstream.latency_ms'] = Math.round(gw.upstreamMs * 10) / 10
  if (gw.upstreamError !== undefined) a['flaggate.upstream.error'] = gw.upstreamError
  if (gw.envKey !== undefined) a['flaggate.environment_key'] = redactions.keys.get(gw.envKey)
  // server spans: only 5xx is an error (a 429 or 403 is the gateway doing its job)
  if (status >= 500) a[ATTR_ERROR_TYPE] = String(status)
  return a
}

export function createTracing (opts: TracingOptions): RequestTracing {
  const url = tracesUrl(opts.tracing.otlp)
  const sampler = new LiveRatioSampler(opts.tracing.sampleRatio)
  const exporter = warningExporter(new OTLPTraceExporter({ url, timeoutMillis: 10_000 }), opts.logger, url)
  const provider = new TracerProvider({
    sampler,
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'flaggate', [ATTR_SERVICE_VERSION]: opts.version, 'host.name': hostname() }),
    spanProcessors: [new BatchSpanProcessor({ exporter, maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 5000, exportTimeoutMillis: 10_000 })]
  })
  const tracer = provider.getTracer('flaggate', opts.version)
  const propagator = new W3CTraceContextPropagator()
  // the request's span until it ends; null once ended (an aborted request may still be answered)
  const spans = new WeakMap<FastifyRequest, Span | null>()

  const start = (request: FastifyRequest, gw: RequestGateway): Span => {
    const parent = propagator.extract(ROOT_CONTEXT, request.headers, defaultTextMapGetter)
    return tracer.startSpan(spanName(request.method, gw), { kind: SpanKind.SERVER, startTime: epochMsOf(gw.startedAt) }, parent)
  }

  const finish = (request: FastifyRequest, reply: FastifyReply | undefined, gw: RequestGateway, span: Span): void => {
    spans.set(request, null)
    if (span.isRecording()) {
      if (reply === undefined) {
        span.setAttributes({ [ATTR_HTTP_REQUEST_METHOD]: request.method, 'flaggate.request_id': request.id, 'flaggate.route': gw.route?.name ?? 'none', 'flaggate.decision': decisionOf(gw), 'flaggate.aborted': true })
      } else {
        const a = spanAttributes(request, reply, gw, upstreamOf(gw) === 'none' ? undefined : opts.breakerState(gw.policy, upstreamOf(gw)))
        span.setAttributes(a)
        if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR })
      }
    }
    span.end()
  }

  return {
    onRequest (request, _reply, done) {
      const gw = request.gateway
      const span = start(request, gw)
      spans.set(request, span)
      const carrier: Record<string, string> = {}
      propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter)
      gw.traceHeaders = carrier
      done()
    },
    onResponse (request, reply, done) {
      const gw = request.gateway as RequestGateway | null | undefined
      if (gw === null || gw === undefined) { done(); return }
      const span = spans.get(request)
      // undefined: routing answered (400, 404, 431) before this hook ran; the span starts when routing did
      if (span !== null) finish(request, reply, gw, span ?? start(request, gw))
      done()
    },
    onRequestAbort (request, done) {
      const span = spans.get(request)
      if (span !== null && span !== undefined) finish(request, undefined, request.gateway, span)
      done()
    },
    reload (policy) {
      const t = policy.data.tracing
      if (t !== undefined) sampler.ratio = t.sampleRatio
    },
    async close () {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        provider.shutdown().catch(() => {}),
        new Promise<void>((resolve) => { timer = setTimeout(resolve, SHUTDOWN_FLUSH_MS); timer.unref() })
      ])
      clearTimeout(timer)
    }
  }
}
