/**
 * The ticket of one request the breaker let through, and who asked: the *client* (key + address)
 * whose outcomes count as evidence for a trip, and the *partition* (the environment key, or the
 * address without one) that fair admission counts against.
 */
import { hash } from 'node:crypto'
import type { Admission as GateAdmission, GateClient, UpstreamOutcome } from '../upstream/gate.js'

/** The ticket of one admitted request: report its outcome with {@link Admission.finish}, exactly once. */
/** What an admission reports to (the breaker): an interface here, so that this file needs no import of it. */
export interface Settler { settle: (a: Admission, outcome: UpstreamOutcome) => void }

export class Admission implements GateAdmission {
  #done = false
  constructor (
    private readonly breaker: Settler,
    /** clock time at admission */
    readonly admittedAt: number,
    /** the breaker's epoch at admission: outcomes from before the last close are not recorded */
    readonly epoch: number,
    readonly trial: boolean,
    /** who asked: the client (key + address) for evidence, the partition for fairness */
    readonly client: string,
    readonly partition: string,
    /** requests in flight at admission, this one included (the adaptive limit's no-load samples) */
    readonly inFlightAtAdmit: number
  ) {}

  finish (outcome: UpstreamOutcome): void {
    if (this.#done) return
    this.#done = true
    this.breaker.settle(this, outcome)
  }
}

/** Attempts that name no client (internal ones without a request behind them) are one client. */
export const GATEWAY_CLIENT = '\u0000gateway'
/** Keys longer than this are partitioned by a digest: bounded memory per partition. */
const LONG_KEY = 64

export function clientId (c: GateClient | undefined): string {
  return c === undefined ? GATEWAY_CLIENT : `${c.key ?? ''}\n${c.ip}`
}

export function partitionOf (c: GateClient | undefined): string {
  if (c === undefined) return GATEWAY_CLIENT
  if (c.key === undefined || c.key === '') return 'ip:' + c.ip
  return c.key.length <= LONG_KEY ? 'k:' + c.key : 'h:' + hash('sha256', c.key, 'base64')
}
