/**
 * The one clock type: milliseconds since the epoch (or any origin, as long as one component uses
 * one clock). Every component that reads time takes one, so tests drive time instead of sleeping.
 * A function rather than lru-cache's `{ now() }` shape: the hot path calls it without a property
 * lookup; `{ now: clock }` adapts it where a library wants the object.
 */
export type Clock = () => number

export const systemClock: Clock = Date.now
