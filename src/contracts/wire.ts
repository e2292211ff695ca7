/**
 * Names on the wire that every part of the gateway agrees on. `X-Flaggate-Upstream` names the
 * upstream that gave an answer (`core`, `edge`), or `none` when the gateway answered itself
 * (health, errors, blocks, limits, cache HITs say which upstream filled the document).
 */
export const UPSTREAM_HEADER = 'x-flaggate-upstream'
