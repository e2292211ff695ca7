/**
 * The one duration formatter: a length of time in milliseconds as text, in the style a reader of
 * that output expects. Each style is pinned by the tests of the output that uses it.
 *
 * - `precise` (`flaggate explain`: a bucket's refill time): 250ms, 1.5s, 12.5m, 3.2h
 * - `coarse` (`flaggate status`: how long ago): 42s, 5m, 3h, 2d, whole units rounded down
 * - `compound` (`flaggate blocks`: time left): 42s, 5m3s, 1h5m
 * - `setting` (a policy window in a message): 5m when whole minutes, else 90s
 */
export type DurationStyle = 'precise' | 'coarse' | 'compound' | 'setting'

export function formatDuration (ms: number, style: DurationStyle): string {
  switch (style) {
    case 'precise': {
      const s = ms / 1000
      if (s < 1) return `${Math.round(ms)}ms`
      if (s < 120) return `${Number(s.toFixed(2))}s`
      if (s < 7200) return `${Number((s / 60).toFixed(1))}m`
      return `${Number((s / 3600).toFixed(1))}h`
    }
    case 'coarse': {
      const s = Math.max(0, Math.round(ms / 1000))
      if (s < 60) return `${s}s`
      if (s < 3600) return `${Math.floor(s / 60)}m`
      if (s < 86_400) return `${Math.floor(s / 3600)}h`
      return `${Math.floor(s / 86_400)}d`
    }
    case 'compound': {
      const s = Math.max(0, Math.round(ms / 1000))
      if (s >= 3600) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`
      return s >= 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s}s`
    }
    case 'setting':
      return ms % 60_000 === 0 ? `${ms / 60_000}m` : `${Math.round(ms / 1000)}s`
  }
}
