// The proxy's internal key and channel names, defined once (the Lua library derives the same names
// from the same prefix, baked in when it is loaded: see librarySource). Keys are per database.
export interface InternalNames {
  readonly prefix: string;
  /** hash pattern -> tagged registration (event list, owner) */
  readonly registry: string;
  /** zset key -> absolute deadline (ms, Redis clock) */
  readonly expiry: string;
  /** hash key -> tag of its expiry entry (made with the secret: entries added by hand are ignored) */
  readonly expiryTags: string;
  /** hash events -> events pushed; <proxy counter>:<op> -> what one proxy's writes pushed, until it takes them */
  readonly stats: string;
  /** string: the deployment's secret, shared by the proxies (database 0 only; users must not get it) */
  readonly secret: string;
  /** string: the reaper lease, holder id and until when, tagged (database 0 only) */
  readonly reaperLease: string;
  /** hash pattern -> SCAN cursor of its pending backfill */
  readonly backfill: string;
  /** channel: registration changes, announcements and their acknowledgements */
  readonly changes: string;
  /** channel: a new earliest deadline */
  readonly wake: string;
}

export function internalNames(prefix: string): InternalNames {
  return {
    prefix,
    registry: `${prefix}registry`,
    expiry: `${prefix}expiry`,
    expiryTags: `${prefix}tags`,
    stats: `${prefix}stats`,
    secret: `${prefix}secret`,
    reaperLease: `${prefix}reaper`,
    backfill: `${prefix}backfill`,
    changes: `${prefix}changes`,
    wake: `${prefix}wake`,
  };
}

/** Redis's keyevent channel for expirations in one database. */
export function expiredChannel(db: number | '*'): string {
  return `__keyevent@${db}__:expired`;
}

export const EXPIRED_CHANNEL = /^__keyevent@(\d+)__:expired$/;

/** Redis's keyevent channel for evictions (maxmemory) in one database. */
export function evictedChannel(db: number | '*'): string {
  return `__keyevent@${db}__:evicted`;
}

export const EVICTED_CHANNEL = /^__keyevent@(\d+)__:evicted$/;
