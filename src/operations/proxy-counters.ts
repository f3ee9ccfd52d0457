// The counters of one proxy, defined once: plain numbers incremented in place where each thing
// happens (sessions, the server, the control plane), read at scrape time by metrics.ts and by
// NOTIFYLIST.INFO, so both always show the same numbers. No library call on the hot path.

/** Who reported an expiry: the reaper, Redis's keyevent notification, or a client's write that
 * found the indexed incarnation expired (the library settles it before writing). */
export type ReportedBy = 'reaper' | 'keyevent' | 'write';

/** Upper bounds (seconds) of notifylist_expiry_lag_seconds: from a few ms (keyevent) to minutes
 * (every proxy down). */
export const EXPIRY_LAG_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export class ProxyCounters {
  /** Clients accepted (also those refused by protected mode, as Redis's total_connections_received). */
  clientConnectionsTotal = 0;
  /** Requests by what the proxy did with them. */
  readonly requests = { forwarded: 0, rewritten: 0, admin: 0 };
  /** Clients closed for a malformed request or one over Redis's limits. */
  protocolErrors = 0;
  /** Events this proxy's calls of the library pushed, by op (`set`, `expired`, ...). */
  readonly events = new Map<string, number>();
  /** Expired events, by who reported them. */
  readonly expiredReported: Record<ReportedBy, number> = { reaper: 0, keyevent: 0, write: 0 };
  /** The control connection connected again after it had been lost. */
  upstreamReconnects = 0;
  /** notifylist_expiry_lag_seconds: per bucket of EXPIRY_LAG_BUCKETS (not cumulative), then +Inf. */
  readonly expiryLagBuckets = new Array<number>(EXPIRY_LAG_BUCKETS.length + 1).fill(0);
  expiryLagCount = 0;
  expiryLagSum = 0;

  addEvents(op: string, count: number): void {
    if (count > 0) this.events.set(op, (this.events.get(op) ?? 0) + count);
  }

  /** Expired events pushed by one report (or the writes' share, taken from Redis). */
  addExpired(by: ReportedBy, count: number): void {
    if (count <= 0) return;
    this.expiredReported[by] += count;
    this.addEvents('expired', count);
  }

  /** One expiry's lag: from its deadline to its event being in the target. */
  observeExpiryLag(seconds: number): void {
    let bucket = 0;
    while (bucket < EXPIRY_LAG_BUCKETS.length && seconds > EXPIRY_LAG_BUCKETS[bucket]) bucket++;
    this.expiryLagBuckets[bucket]++;
    this.expiryLagCount++;
    this.expiryLagSum += seconds;
  }

  /** The same counters for NOTIFYLIST.INFO (`name:value` lines; names as the metrics'). */
  infoFields(): string[] {
    const events = [...this.events].sort(([a], [b]) => (a < b ? -1 : 1));
    return [
      `client_connections_total:${this.clientConnectionsTotal}`,
      `requests_forwarded:${this.requests.forwarded}`,
      `requests_rewritten:${this.requests.rewritten}`,
      `requests_admin:${this.requests.admin}`,
      `protocol_errors:${this.protocolErrors}`,
      `events:${events.map(([op, n]) => `${op}=${n}`).join(',')}`,
      `expired_reported:${Object.entries(this.expiredReported).map(([by, n]) => `${by}=${n}`).join(',')}`,
      `expiry_lag_count:${this.expiryLagCount}`,
      `expiry_lag_sum_seconds:${this.expiryLagSum.toFixed(3)}`,
      `upstream_reconnects:${this.upstreamReconnects}`,
    ];
  }
}
