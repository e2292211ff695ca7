/** Everything that talks to an upstream (Core or Edge) goes through this module. */
export { UpstreamClient, type FetchRequest, type UpstreamResponse } from './client.js'
export { OPEN_GATE, type Admission, type UpstreamGate, type UpstreamOutcome, type GateClient } from './gate.js'
export { BodyTooLarge, toGatewayError } from './errors.js'
export { UPSTREAM_HEADER, VIA, fillRequestHeaders, keyedHeaders, proxyRequestHeaders, responseHeaders } from './headers.js'
export { Pools } from './pools.js'
export { planFallback, rebasePath, takeFallback, type FallbackPlan } from './fallback.js'
export { elapsedMs, timeUpstream, type UpstreamTimer } from './timing.js'
