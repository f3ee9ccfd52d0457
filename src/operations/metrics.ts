// Prometheus metrics of one proxy (prom-client), in a registry of its own (tests run several
// proxies in one process). Nothing here runs per request: every value is read at scrape time,
// from ProxyCounters (plain numbers) and the control plane's state, and what lives in Redis
// (expiry index, target lengths) is sampled then, with bounded work. The names are a public
// interface (README, Operating it: Metrics); under --workers the primary aggregates the
// workers' registries with each metric's `aggregator`.
import type { Redis } from 'ioredis';
import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { ControlPlane } from '../notify/control-plane.js';
import { inDatabases, type ControlCommand } from '../notify/redis-control.js';
import { EXPIRY_LAG_BUCKETS, type ProxyCounters } from './proxy-counters.js';

/** Most target lists whose length one sample reads (LLEN each, one pipeline); more take turns. */
export const TARGET_SAMPLE_MAX = 1000;
/** Samples of Redis (index, targets) are reused for this long (several scrapers). */
const SAMPLE_REUSE_MS = 1000;
/** A sample or PING that Redis does not answer within this long counts as no answer. */
export const REDIS_ANSWER_TIMEOUT_MS = 1000;

export interface MetricSources {
  controlPlane: ControlPlane;
  /** Open client connections. */
  connections(): number;
}

/** Resolves to the promise's value, or to `fallback` once `ms` have passed. */
function within<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
    timer.unref();
  });
  return Promise.race([promise.catch(() => fallback), late]).finally(() => clearTimeout(timer));
}

/** Does Redis answer a PING on the control connection (not queued while it is down)? */
export function upstreamAnswers(control: Redis): Promise<boolean> {
  if (control.status !== 'ready') return Promise.resolve(false);
  return within(control.ping().then((reply) => reply === 'PONG'), REDIS_ANSWER_TIMEOUT_MS, false);
}

/** A value computed at most once per SAMPLE_REUSE_MS (concurrent callers share it). */
function reused<T>(make: () => Promise<T>): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | null = null;
  return () => {
    if (last === null || Date.now() - last.at > SAMPLE_REUSE_MS) last = { at: Date.now(), value: make() };
    return last.value;
  };
}

interface IndexSample {
  db: number;
  entries: number;
  overdue: number;
  /** Events MAXLEN dropped in this database (the library's count, shared by every proxy). */
  dropped: number;
}

/** ZCARD and overdue ZCOUNT of each watched database's expiry index, and its MAXLEN drop count, in one pipeline. */
async function sampleExpiryIndex(controlPlane: ControlPlane): Promise<IndexSample[]> {
  const databases = controlPlane.watchedDatabases();
  if (!controlPlane.isActive || databases.length === 0) return [];
  const now = Math.floor(controlPlane.reaper.redisNow());
  const expiry = controlPlane.names.expiry;
  const replies = await inDatabases(
    controlPlane.control,
    databases.map((db) => ({
      db,
      commands: [['zcard', expiry], ['zcount', expiry, '-inf', `(${now}`], ['hget', controlPlane.names.stats, 'dropped']] as ControlCommand[],
    })),
  );
  return databases.map((db, i) => ({ db, entries: Number(replies[i][0]), overdue: Number(replies[i][1]), dropped: Number(replies[i][2] ?? 0) }));
}

/**
 * LLEN of the registrations' target lists (from the registry view: no read of the registry),
 * at most TARGET_SAMPLE_MAX per sample, in one pipeline; with more targets, each sample reads the
 * next ones (every target is read within a few samples).
 */
function targetSampler(controlPlane: ControlPlane): () => Promise<Array<{ db: number; target: string; length: number }>> {
  let offset = 0;
  return async () => {
    const seen = new Set<string>();
    const targets: Array<{ db: number; target: string; stream: boolean }> = [];
    for (const [db, , entry] of controlPlane.registry.entries()) {
      const id = `${db}\n${entry.list}`;
      if (!seen.has(id)) {
        seen.add(id);
        targets.push({ db, target: entry.list, stream: entry.options?.startsWith('stream') === true });
      }
    }
    if (targets.length === 0) return [];
    targets.sort((a, b) => a.db - b.db || (a.target < b.target ? -1 : a.target > b.target ? 1 : 0));
    offset = targets.length > TARGET_SAMPLE_MAX ? offset % targets.length : 0;
    const picked = [...targets, ...targets].slice(offset, offset + Math.min(TARGET_SAMPLE_MAX, targets.length));
    offset += picked.length;
    picked.sort((a, b) => a.db - b.db);
    // One group of LLENs (XLENs for stream targets) per database, in the order picked.
    const groups: Array<{ db: number; commands: ControlCommand[]; items: typeof picked }> = [];
    for (const item of picked) {
      let group = groups.at(-1);
      if (group?.db !== item.db) groups.push((group = { db: item.db, commands: [], items: [] }));
      group.commands.push([item.stream ? 'xlen' : 'llen', Buffer.from(item.target, 'latin1')]);
      group.items.push(item);
    }
    const replies = await inDatabases(controlPlane.control, groups);
    return groups.flatMap((group, g) => group.items.map((item, i) => ({ db: item.db, target: item.target, length: Number(replies[g][i]) })));
  };
}

/** The proxy's registry of metrics (see the README for what each one means). */
export function createProxyMetrics(sources: MetricSources): Registry {
  const { controlPlane } = sources;
  const stats = controlPlane.stats;
  const registry = new Registry();
  const register = [registry];
  const indexSample = reused(() => within(sampleExpiryIndex(controlPlane), REDIS_ANSWER_TIMEOUT_MS, null));
  const sampleTargets = targetSampler(controlPlane);
  const targetSample = reused(() => within(sampleTargets(), REDIS_ANSWER_TIMEOUT_MS, null));

  /** A counter whose value is a plain number kept elsewhere. */
  const counterOf = (name: string, help: string, read: () => number): void => {
    new Counter({
      name,
      help,
      registers: register,
      aggregator: 'sum',
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  };
  const gaugeOf = (name: string, help: string, aggregator: 'sum' | 'max' | 'min', read: () => number | Promise<number>): void => {
    new Gauge({
      name,
      help,
      registers: register,
      aggregator,
      async collect() {
        this.set(await read());
      },
    });
  };

  gaugeOf('notifylist_client_connections', 'Open client connections.', 'sum', () => sources.connections());
  counterOf('notifylist_client_connections_total', 'Client connections accepted.', () => stats.clientConnectionsTotal);
  new Counter({
    name: 'notifylist_requests_total',
    help: 'Client requests, by what the proxy did: forwarded unchanged, rewritten into a call of the function library, or an admin command (NOTIFYLIST.*).',
    labelNames: ['path'],
    registers: register,
    aggregator: 'sum',
    collect() {
      this.reset();
      for (const [path, count] of Object.entries(stats.requests)) this.inc({ path }, count);
    },
  });
  counterOf('notifylist_protocol_errors_total', 'Clients closed for a malformed request or one over the limits.', () => stats.protocolErrors);
  new Counter({
    name: 'notifylist_events_total',
    help: "Events this proxy's calls of the function library pushed, by op.",
    labelNames: ['op'],
    registers: register,
    aggregator: 'sum',
    async collect() {
      await controlPlane.takeEventCounts();
      this.reset();
      for (const [op, count] of stats.events) this.inc({ op }, count);
    },
  });
  new Counter({
    name: 'notifylist_expired_reported_total',
    help: 'Expired events this proxy reported, by who found the expiry: the reaper, the keyevent subscription, or a write that settled it.',
    labelNames: ['by'],
    registers: register,
    aggregator: 'sum',
    async collect() {
      await controlPlane.takeEventCounts();
      this.reset();
      for (const [by, count] of Object.entries(stats.expiredReported)) this.inc({ by }, count);
    },
  });
  // (A histogram of values kept elsewhere: prom-client's registry only calls get() on it.)
  registry.registerMetric(expiryLagHistogram(stats) as unknown as Metric);
  gaugeOf('notifylist_registrations', 'Registrations in the proxy\'s registry view (every database).', 'max', () => {
    let total = 0;
    for (const count of controlPlane.registry.countsByDb().values()) total += count;
    return total;
  });
  const indexGauge = (name: string, help: string, pick: (sample: IndexSample) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['db'],
      registers: register,
      aggregator: 'max',
      async collect() {
        const samples = await indexSample();
        this.reset();
        for (const sample of samples ?? []) this.set({ db: String(sample.db) }, pick(sample));
      },
    });
  };
  indexGauge('notifylist_expiry_index_entries', 'Keys in the expiry index, per database.', (sample) => sample.entries);
  indexGauge('notifylist_expiry_overdue', 'Expiry index entries whose deadline has passed (not reported yet), per database.', (sample) => sample.overdue);
  indexGauge(
    'notifylist_events_dropped',
    'Events dropped by MAXLEN targets in each database since they were created (kept in Redis: the same for every proxy).',
    (sample) => sample.dropped,
  );
  new Gauge({
    name: 'notifylist_target_length',
    help: "Length of each registration's target list (consumer lag), sampled by the reaper leader only.",
    labelNames: ['db', 'target'],
    registers: register,
    aggregator: 'max',
    async collect() {
      const samples = controlPlane.reaper.isLeader ? await targetSample() : [];
      // Only the leader's series; a target that is no longer one disappears.
      this.reset();
      for (const sample of samples ?? []) this.set({ db: String(sample.db), target: sample.target }, sample.length);
    },
  });
  gaugeOf('notifylist_upstream_up', '1 if Redis answers the proxy (PING on its control connection).', 'min', async () =>
    (await upstreamAnswers(controlPlane.control)) ? 1 : 0,
  );
  gaugeOf('notifylist_keyevent_subscription_up', "1 if the keyevent subscriptions the proxy needs are up (0 while idle: none needed).", 'min', () =>
    controlPlane.keyeventSubscriptionUp ? 1 : 0,
  );
  gaugeOf('notifylist_reaper_leader', '1 while this proxy holds the reaper lease.', 'max', () => (controlPlane.reaper.isLeader ? 1 : 0));
  counterOf('notifylist_upstream_reconnects_total', "Reconnects of the proxy's control connection to Redis.", () => stats.upstreamReconnects);
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * notifylist_expiry_lag_seconds, from the plain buckets in ProxyCounters (observed where the
 * reports come back), in prom-client's format for a histogram.
 */
function expiryLagHistogram(stats: ProxyCounters): { name: string; get(): Promise<unknown> } {
  const name = 'notifylist_expiry_lag_seconds';
  const help = "Seconds from a key's deadline (its expiry index entry) to its expired event in the target, for each expiry this proxy reported.";
  return {
    name,
    async get() {
      const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
      let cumulative = 0;
      EXPIRY_LAG_BUCKETS.forEach((bound, i) => {
        cumulative += stats.expiryLagBuckets[i];
        values.push({ labels: { le: bound }, value: cumulative, metricName: `${name}_bucket` });
      });
      values.push({ labels: { le: '+Inf' }, value: stats.expiryLagCount, metricName: `${name}_bucket` });
      values.push({ labels: {}, value: stats.expiryLagSum, metricName: `${name}_sum` });
      values.push({ labels: {}, value: stats.expiryLagCount, metricName: `${name}_count` });
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    },
  };
}
