// Sentinel (issue "Production Redis", parts 4 and 5): three sentinels, one master, one replica,
// real processes, really killed. Writers go through the proxy: SET ... PX on registered keys (some
// without a TTL), then WAIT 1 100. Scenarios, in order, on one group: SIGKILL the master; the old
// master restarted (it comes back as a replica); SENTINEL FAILOVER (graceful) with clients
// connected. After each, on the master: every write acknowledged by WAIT has its event, every such
// key with a TTL exactly one `expired` (also keys whose deadline passed during the failover),
// nothing is reported twice, and an event is there exactly when its write is. The proxy never
// keeps a connection to a master that is no longer one. Also: start-up through the sentinels,
// their errors, a replica as --upstream without Sentinel, TLS and passwords for sentinels and Redis.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
import type { LogEntry, RunningProxy } from '../src/index.js';
import { endpointName } from '../src/upstream/endpoint.js';
import { SWITCH_CHANNEL } from '../src/upstream/sentinel.js';
import { runCli } from './helpers/cli.js';
import { startProxyWith } from './helpers/proxy.js';
import { freePort, type RedisServer } from './helpers/redis-server.js';
import { MASTER_NAME, SentinelGroup } from './helpers/sentinel-group.js';
import { removeTestCertificates, testCertificates } from './helpers/transport.js';
import { sleep, waitFor } from './helpers/wait.js';

interface Write {
  key: string;
  /** PX of the write; 0: no TTL. */
  ttl: number;
  /** Local time the write was sent. */
  at: number;
  /** SET replied OK. */
  written: boolean;
  /** WAIT 1 100 said a replica has it. */
  acknowledged: boolean;
}

/** Writes through the proxy: SET <key> v [PX ttl], then WAIT 1 100; counts what failed and when. */
class Writer {
  readonly writes: Write[] = [];
  readonly failures: Array<{ at: number; error: string }> = [];
  private readonly client: Redis;
  private running: Promise<void> | null = null;
  private stopping = false;
  private n = 0;

  constructor(
    port: number,
    private readonly prefix: string,
  ) {
    this.client = new Redis({
      port,
      connectionName: 'writer',
      // Every attempt is one SET on the connection there is: no queueing, no resending.
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 2000,
      retryStrategy: () => 20,
    });
    this.client.on('error', () => undefined);
  }

  start(): this {
    this.running = (async () => {
      while (!this.stopping) {
        const key = `${this.prefix}${this.n}`;
        // One key in three without a TTL: at the end it exists exactly when its `set` event does.
        const ttl = this.n % 3 === 0 ? 0 : 300 + ((this.n * 389) % 2200);
        this.n++;
        const at = Date.now();
        let written = false;
        try {
          await (ttl === 0 ? this.client.set(key, 'v') : this.client.set(key, 'v', 'PX', ttl));
          written = true;
          const replicas = Number(await this.client.call('WAIT', '1', '100'));
          this.writes.push({ key, ttl, at, written, acknowledged: replicas >= 1 });
        } catch (error) {
          this.writes.push({ key, ttl, at, written, acknowledged: false });
          this.failures.push({ at, error: (error as Error).message });
          await sleep(10);
        }
      }
    })();
    return this;
  }

  /** Local time of the first write sent at or after `since` that succeeded (its SET did). */
  firstSuccessSince(since: number): number | null {
    const failed = new Set(this.failures.map((f) => f.at));
    return this.writes.find((w) => w.at >= since && !failed.has(w.at))?.at ?? null;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
    this.client.disconnect();
  }
}

let group: SentinelGroup;
let proxy: RunningProxy;
/** The proxy's log lines (printed when a test fails), and its log entries. */
const proxyLog: string[] = [];
const proxyEntries: LogEntry[] = [];
beforeEach(() => {
  const from = proxyLog.length;
  onTestFailed(() => console.log(`proxy log:\n${proxyLog.slice(from).join('\n')}`));
});

const eventsOn = async (server: RedisServer, list: string): Promise<Array<{ key: string; op: string }>> => {
  const admin = group.admin(server);
  try {
    return (await admin.lrange(list, 0, -1)).map((entry) => JSON.parse(entry));
  } finally {
    admin.disconnect();
  }
};

/** Connections on `server` that belong to the proxy (its own, or its sessions' named `writer`). */
async function proxyConnectionsOn(server: RedisServer): Promise<string[]> {
  const admin = group.admin(server);
  try {
    const list = String(await admin.client('LIST'));
    return list.split('\n').filter((line) => / name=(notifylist-proxy:\S+|writer|idle-client) /.test(line));
  } catch {
    return [];
  } finally {
    admin.disconnect();
  }
}

/**
 * The checks of part 5 on `master`, once every deadline has passed: per key at most one `set` and
 * one `expired`, `expired` only after a `set`; every acknowledged write has its `set`, and its
 * `expired` if it had a TTL; a key without TTL exists exactly when its `set` is there; a key with a
 * TTL that was written (its `set` is there) is reported expired once; the index is empty.
 */
async function checkEvents(master: RedisServer, list: string, writes: Write[]): Promise<{ sets: number; expired: number; lost: number }> {
  const events = await eventsOn(master, list);
  const counts = new Map<string, { set: number; expired: number; order: string[] }>();
  for (const { key, op } of events) {
    const count = counts.get(key) ?? { set: 0, expired: 0, order: [] };
    if (op === 'set') count.set++;
    else if (op === 'expired') count.expired++;
    count.order.push(op);
    counts.set(key, count);
  }
  const admin = group.admin(master);
  try {
    for (const [key, count] of counts) {
      expect(count.set, `set events of ${key}`).toBe(1);
      expect(count.expired, `expired events of ${key}`).toBeLessThanOrEqual(1);
      expect(count.order[0], `first event of ${key}`).toBe('set');
    }
    for (const write of writes) {
      const count = counts.get(write.key);
      if (write.acknowledged) expect(count?.set, `acknowledged ${write.key}`).toBe(1);
      if (write.ttl === 0) {
        // Written exactly when its event is there: lost writes lose their events with them.
        expect(await admin.exists(write.key), `${write.key} exists iff its set event does`).toBe(count ? 1 : 0);
      } else if (count) {
        expect(count.expired, `expired of ${write.key} (acknowledged: ${write.acknowledged})`).toBe(1);
        expect(await admin.exists(write.key)).toBe(0);
      }
    }
    expect(await admin.zcard('notifylist:expiry')).toBe(0);
  } finally {
    admin.disconnect();
  }
  return {
    sets: events.filter((e) => e.op === 'set').length,
    expired: events.filter((e) => e.op === 'expired').length,
    // Writes Redis said OK to that are not on this master (and neither are their events).
    lost: writes.filter((w) => w.written && !counts.has(w.key)).length,
  };
}

/** Until every TTL written has run out and been reported (the index is empty). */
async function untilReported(master: RedisServer, writes: Write[]): Promise<void> {
  const lastDeadline = Math.max(...writes.map((w) => w.at + w.ttl));
  await sleep(Math.max(0, lastDeadline - Date.now()) + 300);
  const admin = group.admin(master);
  try {
    await waitFor(() => admin.zcard('notifylist:expiry'), (n) => n === 0, 5000);
  } finally {
    admin.disconnect();
  }
}

/**
 * The master once the sentinels agree on it, it answers ROLE master, the other server answers
 * ROLE slave, and the proxy is on it; the same twice in a row 500 ms apart.
 */
async function settledMaster(timeoutMs = 30_000): Promise<RedisServer> {
  const deadline = Date.now() + timeoutMs;
  let previous: RedisServer | null = null;
  for (;;) {
    const master = await group.agreedMaster();
    const settled =
      proxy.upstream.master !== null &&
      endpointName(proxy.upstream.master) === `127.0.0.1:${master.port}` &&
      (await group.role(master)) === 'master' &&
      (await group.role(group.other(master))) === 'slave';
    if (settled && master === previous) return master;
    previous = settled ? master : null;
    if (Date.now() > deadline) throw new Error(`no settled master within ${timeoutMs} ms (the sentinels name ${master.port}, the proxy ${proxy.upstream.name})`);
    await sleep(500);
  }
}

beforeAll(async () => {
  group = await SentinelGroup.start();
  proxy = await startProxyWith([
    '--port', String(await freePort()),
    '--sentinel', group.sentinelList,
    '--sentinel-master', MASTER_NAME,
    '--upstream', 'redis://ignored:1/0',
    '--lease-ms', '500',
  ], (line, entry) => {
    proxyLog.push(`${new Date().toISOString()} ${line}`);
    proxyEntries.push(entry);
  });
  const admin = new Redis(proxy.port);
  expect(await admin.call('NOTIFYLIST.SET', 'fo:*', 'fo_events')).toBe('OK');
  admin.disconnect();
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await group?.destroy();
  removeTestCertificates();
});

describe('Sentinel failover', () => {
  it('start-up: the master the sentinels name, confirmed with ROLE; sessions and control plane are on it', async () => {
    const master = await group.agreedMaster();
    expect(proxy.upstream.master).toEqual({ host: '127.0.0.1', port: master.port });
    const connections = await proxyConnectionsOn(master);
    expect(connections.some((line) => line.includes('name=notifylist-proxy:control'))).toBe(true);
    expect(connections.some((line) => line.includes('name=notifylist-proxy:events'))).toBe(true);
    expect(await proxyConnectionsOn(group.other(master))).toEqual([]);
  });

  it('SIGKILL of the master: the proxy follows the failover; acknowledged writes keep their events, each TTL key expires once, also those due during the failover', async () => {
    const old = await group.agreedMaster();
    const writer = new Writer(proxy.port, 'fo:kill:').start();
    try {
      await sleep(1000);
      // Keys due during the failover for sure (it takes down-after-milliseconds, 1 s, and the
      // election: about 2.5 s here), however few of the writer's own a loaded machine lets
      // through: due 1.1 to 1.3 s after they are written, so that the writes and their WAIT may
      // take up to a second on a busy machine and the deadlines still come after the kill.
      // If the writes and their WAIT took so long that the first deadline is near, another batch
      // is written (each batch's keys are ordinary acknowledged writes, checked like the others).
      const due = new Redis(proxy.port);
      for (let batch = 0; batch < 5; batch++) {
        const startedAt = Date.now();
        const dueWrites: Write[] = [];
        for (let i = 0; i < 20; i++) {
          const key = `fo:kill:due:${batch}:${i}`;
          const ttl = 1100 + 10 * i;
          dueWrites.push({ key, ttl, at: Date.now(), written: true, acknowledged: false });
          await due.set(key, 'v', 'PX', ttl);
        }
        const replicated = Number(await due.call('WAIT', '1', '1000')) >= 1;
        for (const write of dueWrites) write.acknowledged = replicated;
        writer.writes.push(...dueWrites);
        if (replicated && Date.now() < startedAt + 800) break;
      }
      due.disconnect();
      // (Taken once the process is gone: a write answered by the old master while SIGKILL was on
      // its way is no recovery.)
      await old.kill();
      const killedAt = Date.now();
      const promoted = await waitFor(() => group.agreedMaster(), (m) => m !== old, 30_000, 100);
      await waitFor(async () => writer.firstSuccessSince(killedAt), (at) => at !== null, 30_000, 50);
      const recoveredAt = writer.firstSuccessSince(killedAt)!;
      await sleep(500);
      await writer.stop();
      expect(promoted).not.toBe(old);
      expect(proxy.upstream.master).toEqual({ host: '127.0.0.1', port: promoted.port });

      await untilReported(promoted, writer.writes);
      const before = writer.writes.filter((w) => w.at < killedAt);
      const acknowledged = before.filter((w) => w.acknowledged);
      // Keys whose deadline passed while there was no master: reported by the new one.
      const dueDuringFailover = acknowledged.filter((w) => w.ttl > 0 && w.at + w.ttl > killedAt && w.at + w.ttl < recoveredAt);
      const counts = await checkEvents(promoted, 'fo_events', writer.writes);
      expect(acknowledged.length).toBeGreaterThan(10);
      expect(dueDuringFailover.length).toBeGreaterThan(0);
      expect(counts.sets).toBeGreaterThanOrEqual(acknowledged.length);
      console.log(
        `SIGKILL: writes through the proxy failed for ${recoveredAt - killedAt} ms (kill to first successful write); ${acknowledged.length} acknowledged before, ${dueDuringFailover.length} due during the failover, ${counts.lost} written but lost`,
      );
    } finally {
      await writer.stop();
    }
  }, 60_000);

  it('the old master restarted: it comes back as a replica; the proxy never uses it; nothing is reported twice', async () => {
    const master = await group.agreedMaster();
    const old = group.other(master);
    const before = await eventsOn(master, 'fo_events');
    // While it is a master again (empty, until the sentinels turn it into a replica), the proxy
    // must not connect to it.
    const seen: string[] = [];
    await old.start();
    // Make the proxy ask the sentinels while the old master is a master again: a sentinel that
    // missed the failover would still name it, but with the older config epoch.
    const onMaster = group.admin(master);
    const control = /id=(\d+) [^\n]* name=notifylist-proxy:control /.exec(String(await onMaster.client('LIST')))![1];
    await onMaster.client('KILL', 'ID', control);
    onMaster.disconnect();
    let role: string | null = 'master';
    const deadline = Date.now() + 20_000;
    while (role !== 'slave' && Date.now() < deadline) {
      seen.push(...(await proxyConnectionsOn(old)));
      role = await group.role(old);
      await sleep(50);
    }
    expect(role).toBe('slave');
    expect(seen).toEqual([]);
    await group.waitForSync(old);
    await group.waitUntilSettled();
    // The data came back through replication, events included, once.
    expect(await eventsOn(old, 'fo_events')).toEqual(before);
    await sleep(1500); // the reaper, keyevents and maintenance of the proxy run meanwhile
    expect(await eventsOn(master, 'fo_events')).toEqual(before);
    expect(await eventsOn(old, 'fo_events')).toEqual(before);
    await checkEvents(master, 'fo_events', []);
  }, 60_000);

  it('SENTINEL FAILOVER with clients connected: their sessions on the old master are closed, they reconnect to the new one; nothing keeps writing to the old master', async () => {
    const old = await group.agreedMaster();
    const writer = new Writer(proxy.port, 'fo:graceful:').start();
    // A client that only waits (blocked in BLPOP) and one subscribed: both are closed and reconnect.
    const idle = new Redis({ port: proxy.port, connectionName: 'idle-client', maxRetriesPerRequest: 0, retryStrategy: () => 20 });
    idle.on('error', () => undefined);
    try {
      const closes: number[] = [];
      idle.on('close', () => closes.push(Date.now()));
      expect(await idle.ping()).toBe('PONG');
      await sleep(1000);
      const sentinel = group.sentinelAdmin(group.sentinels[0]);
      const startedAt = Date.now();
      const entriesFrom = proxyEntries.length;
      expect(await sentinel.call('SENTINEL', 'FAILOVER', MASTER_NAME)).toBe('OK');
      sentinel.disconnect();
      expect(await waitFor(() => group.agreedMaster(), (m) => m !== old, 30_000, 100)).not.toBe(old);
      // On a loaded machine the sentinels may fail the new master back (it missed down-after):
      // the proxy must follow them wherever they settle, and leave the other server alone.
      const master = await settledMaster();
      const switchedAt = Date.now();
      const replica = group.other(master);
      // One log line per move of the master, from which to which (two if the sentinels failed back).
      const failovers = proxyEntries.slice(entriesFrom).filter((entry) => entry.event === 'failover');
      expect(failovers[0]).toEqual(expect.objectContaining({ level: 'info', master: `127.0.0.1:${group.other(old).port}`, previous: `127.0.0.1:${old.port}` }));
      expect(failovers.at(-1)).toEqual(expect.objectContaining({ master: `127.0.0.1:${master.port}` }));
      // While no master was confirmed, the log said why.
      expect(proxyEntries.slice(entriesFrom).find((entry) => entry.event === 'master_waiting')).toEqual(
        expect.objectContaining({ level: 'warn', reason: expect.stringMatching(/failing the master over|answers ROLE|older configuration/) }),
      );
      // Within a moment of settling, the proxy has no connection left on the server that is not the master.
      const leftovers = await waitFor(() => proxyConnectionsOn(replica), (lines) => lines.length === 0, 2000, 20);
      expect(leftovers).toEqual([]);
      await waitFor(async () => closes.length, (n) => n > 0, 5000);
      expect(closes.length).toBeGreaterThan(0);
      expect(await waitFor(() => idle.ping().catch(() => 'down'), (reply) => reply === 'PONG', 5000)).toBe('PONG');
      expect((await proxyConnectionsOn(master)).some((line) => line.includes('name=idle-client'))).toBe(true);
      await sleep(500);
      await writer.stop();

      // No write through the proxy ever met a demoted master (it would answer READONLY).
      expect(writer.failures.filter((f) => /READONLY/.test(f.error))).toEqual([]);
      await group.waitForSync(replica);
      await untilReported(master, writer.writes);
      const acknowledged = writer.writes.filter((w) => w.acknowledged && w.at < startedAt);
      const { lost } = await checkEvents(master, 'fo_events', writer.writes);
      expect(acknowledged.length).toBeGreaterThan(10);
      // The other server, a replica now, holds the same events.
      await sleep(300);
      expect(await eventsOn(replica, 'fo_events')).toEqual(await eventsOn(master, 'fo_events'));
      console.log(
        `SENTINEL FAILOVER: the proxy settled ${switchedAt - startedAt} ms after the command${master === old ? ' (the sentinels failed back to the old master)' : ''}; ${writer.failures.length} writes failed, ${lost} written but lost`,
      );
    } finally {
      // A failed check must not leave this writer adding keys under the next tests.
      await writer.stop();
      idle.disconnect();
    }
  }, 60_000);
});

describe('Sentinel: a master demoted behind the sentinels\' back', () => {
  it('it answers READONLY: the proxy asks again, stops writing to it at once, and follows the sentinels to the new master', async () => {
    const old = await group.agreedMaster();
    const other = group.other(old);
    const logFrom = proxyLog.length;
    const writer = new Writer(proxy.port, 'fo:demoted:').start();
    try {
      await sleep(1000);
      // An operator's REPLICAOF (or a split brain): the replica takes over, the master follows it.
      const [onOther, onOld] = [group.admin(other), group.admin(old)];
      const demotedAt = Date.now();
      await onOther.call('REPLICAOF', 'NO', 'ONE');
      await onOld.call('REPLICAOF', '127.0.0.1', String(other.port));
      onOther.disconnect();
      onOld.disconnect();
      // The sentinels see their master claim to be a replica and fail over to the other server.
      await waitFor(() => group.agreedMaster(), (m) => m === other, 30_000, 100);
      // Where the sentinels settle (on a loaded machine they may fail over once more).
      const master = await settledMaster();
      await waitFor(async () => writer.firstSuccessSince(Date.now() - 100), (at) => at !== null, 10_000, 50);
      await sleep(300);
      await writer.stop();
      // It was the READONLY replies that made the proxy ask again, not a message from the sentinels.
      const log = proxyLog.slice(logFrom);
      const asked = log.findIndex((line) => /asking the sentinels again: (a client's reply was -READONLY|the master answered READONLY)/.test(line));
      const switched = log.findIndex((line) => line.includes(`${SWITCH_CHANNEL} ${MASTER_NAME}`));
      expect(asked).toBeGreaterThanOrEqual(0);
      if (switched >= 0) expect(asked).toBeLessThan(switched);
      // The writes that met READONLY (if the control plane's lease renewal did not meet it first)
      // are those sent while the proxy asked the sentinels (one round, milliseconds); then its
      // sessions on the demoted server are closed and nothing else is written there.
      const readonly = writer.failures.filter((f) => /READONLY/.test(f.error));
      expect(readonly.filter((f) => f.at > readonly[0].at + 1000)).toEqual([]);
      await group.waitForSync(group.other(master));
      await untilReported(master, writer.writes);
      await checkEvents(master, 'fo_events', writer.writes);
      expect(writer.writes.filter((w) => w.acknowledged && w.at < demotedAt).length).toBeGreaterThan(10);
    } finally {
      await writer.stop();
    }
  }, 60_000);
});

describe('Sentinel: start-up and configuration', () => {
  it('without Sentinel, a replica as --upstream is a clear start-up error', async () => {
    const master = await group.agreedMaster();
    const replica = group.other(master);
    const result = await runCli(['--port', String(await freePort()), '--upstream', replica.url]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `notifylist-proxy: Redis at 127.0.0.1:${replica.port} is a replica of 127.0.0.1:${master.port} (ROLE slave): point --upstream at its master, or follow the master with --sentinel\n`,
    );
  });

  it('unreachable sentinels, or a master name they do not know: one line at start, exit 1', async () => {
    const closed = await freePort();
    const unreachable = await runCli(['--port', String(await freePort()), '--sentinel', `127.0.0.1:${closed}`, '--sentinel-master', MASTER_NAME, '--connect-timeout-ms', '800']);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(
      new RegExp(`^notifylist-proxy: no master 'mymaster' of sentinels 127\\.0\\.0\\.1:${closed} confirmed within 800 ms \\(--connect-timeout-ms\\): sentinel 127\\.0\\.0\\.1:${closed}: .*ECONNREFUSED.*\\n$`),
    );
    const unknown = await runCli(['--port', String(await freePort()), '--sentinel', group.sentinelList, '--sentinel-master', 'nosuchmaster', '--connect-timeout-ms', '800']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^notifylist-proxy: no master 'nosuchmaster' of sentinels .* confirmed within 800 ms \(--connect-timeout-ms\): sentinel 127\.0\.0\.1:\d+: ERR No such master with that name\n$/);
  });

  it('--uninstall finds the master through the sentinels too (and refuses while a proxy is connected)', async () => {
    const result = await runCli(['--uninstall', '--sentinel', group.sentinelList, '--sentinel-master', MASTER_NAME]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('notifylist-proxy: 2 proxy connection(s) are open on this Redis (CLIENT LIST, name=notifylist-proxy:*): stop every proxy first\n');
  });

  it('flags: --sentinel needs --sentinel-master and the other way round', async () => {
    expect((await runCli(['--sentinel', '127.0.0.1:26379'])).stderr).toBe('notifylist-proxy: --sentinel needs --sentinel-master <name>\n');
    expect((await runCli(['--sentinel-master', 'x'])).stderr).toBe('notifylist-proxy: --sentinel-master needs --sentinel\n');
    expect((await runCli(['--sentinel', 'a:b', '--sentinel-master', 'x'])).stderr).toBe("notifylist-proxy: --sentinel: 'a:b' is not host:port\n");
  });
});

describe('Sentinel over TLS, with passwords for the sentinels and for Redis', () => {
  it('the TLS flags apply to sentinels and Redis alike; --sentinel-password for the sentinels, --upstream\'s for Redis', async () => {
    const certs = testCertificates();
    const secured = await SentinelGroup.start({ tls: { certificates: certs, authClients: 'no' }, password: 'sentinelpw', redisPassword: 'redispw' });
    try {
      const tlsProxy = await startProxyWith([
        '--port', String(await freePort()),
        '--sentinel', secured.sentinelList,
        '--sentinel-master', MASTER_NAME,
        '--sentinel-password', 'sentinelpw',
        '--upstream', 'rediss://:redispw@ignored/0',
        '--upstream-tls-ca-cert-file', certs.ca.cert,
      ]);
      try {
        const client = new Redis({ port: tlsProxy.port, password: 'redispw' });
        expect(await client.call('NOTIFYLIST.SET', 'st:*', 'st_events')).toBe('OK');
        expect(await client.set('st:1', 'v')).toBe('OK');
        const master = await secured.agreedMaster();
        expect(tlsProxy.upstream.master).toEqual({ host: '127.0.0.1', port: master.tlsPort });
        expect(await eventsOnGroup(secured, master, 'st_events')).toEqual(['{"key":"st:1","op":"set"}']);
        client.disconnect();
      } finally {
        await tlsProxy.close();
      }
      const wrong = await runCli(['--port', String(await freePort()), '--sentinel', secured.sentinelList, '--sentinel-master', MASTER_NAME, '--sentinel-password', 'not-the-password-7431', '--upstream', 'rediss://:redispw@ignored/0', '--upstream-tls-ca-cert-file', certs.ca.cert, '--connect-timeout-ms', '800']);
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/confirmed within 800 ms \(--connect-timeout-ms\): sentinel 127\.0\.0\.1:\d+: WRONGPASS/);
      expect(wrong.stderr).not.toContain('not-the-password-7431');
    } finally {
      await secured.destroy();
    }
  }, 60_000);
});

async function eventsOnGroup(of: SentinelGroup, server: RedisServer, list: string): Promise<string[]> {
  const admin = of.admin(server);
  try {
    return await admin.lrange(list, 0, -1);
  } finally {
    admin.disconnect();
  }
}
