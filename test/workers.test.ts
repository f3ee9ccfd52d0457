// --workers (issue 9, item 4): the built CLI with two workers, as a child process. Workers are
// really killed (their pids from the primary's lines), subscriptions really cut; the primary
// restarts the dead, aggregates the metrics, and nothing is lost or duplicated.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.js';
import { makeCertificates, type TestCertificates } from './helpers/certificates.js';
import { logLines, runCli, startCli, stopCli, type Cli } from './helpers/cli.js';
import { httpGet, scrape } from './helpers/metrics.js';
import { freePort, RedisServer, waitForPort } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
});
let certs: TestCertificates;
beforeAll(() => {
  certs = makeCertificates();
});
afterAll(() => certs?.remove());

async function redisServer(): Promise<RedisServer> {
  const redis = await new RedisServer().start();
  cleanups.push(() => redis.destroy());
  return redis;
}

function client(port: number, options: object = {}): Redis {
  const connection = new Redis(port, { maxRetriesPerRequest: null, ...options });
  connection.on('error', () => undefined);
  cleanups.push(async () => connection.disconnect());
  return connection;
}

/** worker index -> pid, from the primary's `worker_started` log lines (the last of each). */
function workerPids(cli: Cli): Map<number, number> {
  const pids = new Map<number, number>();
  for (const line of logLines(cli)) if (line.event === 'worker_started') pids.set(Number(line.worker), Number(line.workerPid));
  return pids;
}

async function startWorkers(redis: RedisServer, extra: string[] = []): Promise<{ cli: Cli; port: number; metricsPort: number }> {
  const port = await freePort();
  const metricsPort = await freePort();
  const cli = startCli(['--port', String(port), '--upstream', redis.url, '--workers', '2', '--metrics-port', String(metricsPort), '--lease-ms', '600', ...extra]);
  cleanups.push(() => stopCli(cli, 'SIGKILL'));
  await waitFor(async () => workerPids(cli).size, (n) => n === 2 || cli.child.exitCode !== null, 15_000);
  expect(workerPids(cli).size, cli.stderr).toBe(2);
  return { cli, port, metricsPort };
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('operations flags', () => {
  it('--workers n|auto, --metrics-port, --metrics-bind: defaults, environment, clear errors', () => {
    expect(parseConfig([], {})).toMatchObject({ workers: 1, metricsPort: 0, metricsBind: '127.0.0.1' });
    expect(parseConfig(['--workers', 'auto'], {})!.workers).toBe(availableParallelism());
    expect(parseConfig([], { NOTIFYLIST_WORKERS: '3', NOTIFYLIST_METRICS_PORT: '9121', NOTIFYLIST_METRICS_BIND: '0.0.0.0' })).toMatchObject({ workers: 3, metricsPort: 9121, metricsBind: '0.0.0.0' });
    for (const bad of ['0', '-1', '1.5', 'many', '5000']) {
      expect(() => parseConfig(['--workers', bad], {})).toThrow(new ConfigError(`--workers must be auto or an integer from 1 to 1024, got '${bad}'`));
    }
    expect(() => parseConfig(['--metrics-port', '70000'], {})).toThrow('--metrics-port must be at most 65535');
    expect(() => parseConfig(['--metrics-port', 'x'], {})).toThrow("--metrics-port must be an integer >= 0, got 'x'");
  });
});

describe('--workers 2', () => {
  it('one listening line, two workers; kill -9 one: the other serves at once, the dead one is restarted; metrics aggregate; SIGTERM exits 0', async () => {
    const redis = await redisServer();
    const { cli, port, metricsPort } = await startWorkers(redis);
    // One listening line, the primary's, before any worker's line; each worker's own lines name it.
    const lines = logLines(cli);
    expect(lines.filter((line) => line.event === 'listening').map((line) => line.msg)).toEqual([
      `notifylist-proxy listening on 127.0.0.1:${port}, upstream redis://127.0.0.1:${redis.port}/0`,
    ]);
    expect(lines[0].event).toBe('listening');
    expect(lines.filter((line) => line.event === 'lease_taken').every((line) => line.worker === 1 || line.worker === 2)).toBe(true);
    const admin = client(port);
    expect(await admin.call('NOTIFYLIST.SET', 'w:*', 'wlist')).toBe('OK');

    // Ten connections (the primary hands them to both workers), ten writes each.
    const clients = Array.from({ length: 10 }, () => client(port));
    await Promise.all(clients.map(async (c, n) => {
      for (let i = 0; i < 10; i++) await c.set(`w:${n}:${i}`, 'v');
    }));
    await waitFor(() => httpGet(metricsPort, '/readyz'), (answer) => answer.status === 200, 5000);
    const totals = await scrape(metricsPort);
    expect(totals.value('notifylist_events_total', { op: 'set' })).toBe(100);
    expect(totals.value('notifylist_client_connections')).toBe(11);
    expect(totals.value('notifylist_reaper_leader')).toBe(1); // max over workers: one leads
    expect(totals.value('notifylist_registrations')).toBe(1); // max, not a sum
    expect(await client(redis.port).llen('wlist')).toBe(100);

    const before = workerPids(cli);
    process.kill(before.get(2)!, 'SIGKILL');
    await waitFor(async () => alive(before.get(2)!), (up) => !up, 5000);
    // New clients are served at once, by the worker left.
    const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => client(port, { maxRetriesPerRequest: 0 }).set(`w:after:${i}`, 'v')));
    expect(results).toEqual(Array(20).fill('OK'));
    const restarted = await waitFor(async () => workerPids(cli).get(2), (pid) => pid !== before.get(2), 10_000);
    expect(restarted).not.toBe(before.get(2));
    expect(alive(restarted!)).toBe(true);
    expect(logLines(cli).filter((line) => line.event === 'worker_exited')).toEqual([
      expect.objectContaining({ level: 'warn', worker: 2, workerPid: before.get(2), exit: 'SIGKILL' }),
    ]);
    expect(await waitFor(() => httpGet(metricsPort, '/readyz'), (answer) => answer.status === 200, 5000)).toEqual({ status: 200, body: 'ready\n' });

    expect(await stopCli(cli)).toBe(0);
    for (const pid of workerPids(cli).values()) expect(alive(pid)).toBe(false);
  });

  it('/readyz is 503 with the reason while Redis is down, for every worker', async () => {
    const redis = await redisServer();
    const { metricsPort } = await startWorkers(redis);
    await redis.kill();
    const down = await httpGet(metricsPort, '/readyz');
    expect(down.status).toBe(503);
    expect(down.body).toMatch(/^not ready: worker 1: Redis at 127\.0\.0\.1:\d+ does not answer\n$/);
    await redis.start();
    expect((await waitFor(() => httpGet(metricsPort, '/readyz'), (answer) => answer.status === 200, 10_000)).status).toBe(200);
  });

  it('/readyz while Redis hangs (SIGSTOP): the reason is Redis, not a worker that did not answer in time', async () => {
    // A worker waits for Redis's PING up to its own bound; the primary waits for the worker longer.
    const redis = await redisServer();
    const { metricsPort } = await startWorkers(redis);
    redis.process!.kill('SIGSTOP');
    try {
      const down = await httpGet(metricsPort, '/readyz');
      expect(down.status).toBe(503);
      expect(down.body).toMatch(/^not ready: worker 1: Redis at 127\.0\.0\.1:\d+ does not answer\n$/);
    } finally {
      redis.process!.kill('SIGCONT');
    }
    expect((await waitFor(() => httpGet(metricsPort, '/readyz'), (answer) => answer.status === 200, 10_000)).status).toBe(200);
  });

  it('a start-up error is one stderr line and exit 1; the TLS port and the Unix socket are shared too', async () => {
    const closed = await freePort();
    const failed = await runCli(['--port', String(await freePort()), '--upstream', `redis://127.0.0.1:${closed}`, '--workers', '2']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^notifylist-proxy: cannot reach Redis at 127\.0\.0\.1:\d+: .*\n$/);

    const redis = await redisServer();
    const tlsPort = await freePort();
    const socket = join(certs.dir, 'workers.sock');
    const { cli } = await startWorkers(redis, ['--tls-port', String(tlsPort), '--tls-cert-file', certs.server.cert, '--tls-key-file', certs.server.key, '--tls-auth-clients', 'no', '--unixsocket', socket]);
    await waitForPort(socket);
    const overTls = client(tlsPort, { tls: { ca: readFileSync(certs.ca.cert) } });
    const overSocket = new Redis({ path: socket });
    cleanups.push(async () => overSocket.disconnect());
    expect(await overTls.call('NOTIFYLIST.SET', 't:*', 'tlist')).toBe('OK');
    expect(await overSocket.set('t:1', 'v')).toBe('OK');
    expect(await overTls.set('t:2', 'v')).toBe('OK');
    expect(await client(redis.port).lrange('tlist', 0, -1)).toEqual(['{"key":"t:1","op":"set"}', '{"key":"t:2","op":"set"}']);
    expect(await stopCli(cli)).toBe(0);
  });

  it('chaos: workers killed and keyevent subscriptions cut while keys with TTLs are written: each key one set and one expired event', async () => {
    const redis = await redisServer();
    const { cli, port, metricsPort } = await startWorkers(redis);
    const direct = client(redis.port);
    expect(await client(port).call('NOTIFYLIST.SET', 'c:*', 'clist')).toBe('OK');

    // A write whose connection drops before its reply may or may not have happened: never resent.
    const confirmed = new Set<string>();
    const unknown = new Set<string>();
    let writing = true;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      // (maxRetriesPerRequest 0: a request in flight when its connection drops is failed, not resent.)
      const writer = client(port, { maxRetriesPerRequest: 0 });
      for (let i = 0; writing; i++) {
        const key = `c:${w}:${i}`;
        try {
          await writer.set(key, 'v', 'PX', 300 + ((i * 37) % 1200));
          confirmed.add(key);
        } catch {
          unknown.add(key);
        }
        await sleep(4);
      }
    });
    const chaos = (async () => {
      for (const step of [1, 2, 1, 2]) {
        await sleep(900);
        const pid = workerPids(cli).get(step);
        if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
        await sleep(500);
        await direct.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      }
      await sleep(600);
      writing = false;
    })();
    await Promise.all([chaos, ...writers]);
    expect(confirmed.size).toBeGreaterThan(500);

    const read = async (): Promise<Map<string, { set: number; expired: number }>> => {
      const counts = new Map<string, { set: number; expired: number }>();
      for (const entry of await direct.lrange('clist', 0, -1)) {
        const event = JSON.parse(entry) as { key: string; op: 'set' | 'expired' };
        const count = counts.get(event.key) ?? { set: 0, expired: 0 };
        count[event.op]++;
        counts.set(event.key, count);
      }
      return counts;
    };
    const complete = (counts: Map<string, { set: number; expired: number }>): boolean =>
      [...confirmed].every((key) => counts.get(key)?.expired === 1) && [...counts.values()].every((count) => count.expired === count.set);
    await waitFor(read, complete, 15_000, 100);
    await sleep(700); // a duplicate would show up now
    const counts = await read();
    const wrong = [...confirmed].filter((key) => counts.get(key)?.set !== 1 || counts.get(key)?.expired !== 1);
    const doubtful = [...unknown].filter((key) => counts.has(key) && (counts.get(key)!.set !== 1 || counts.get(key)!.expired !== 1));
    const strangers = [...counts.keys()].filter((key) => !confirmed.has(key) && !unknown.has(key));
    expect({ wrong, doubtful, strangers }).toEqual({ wrong: [], doubtful: [], strangers: [] });
    expect(await direct.zcard('notifylist:expiry')).toBe(0);

    // Both workers' metrics in one: the events the restarted and the surviving workers pushed.
    const metrics = await scrape(metricsPort);
    const expired = ['reaper', 'keyevent', 'write'].reduce((sum, by) => sum + metrics.value('notifylist_expired_reported_total', { by }), 0);
    expect(expired).toBeGreaterThan(0);
    expect(metrics.value('notifylist_events_total', { op: 'set' })).toBeGreaterThan(0);
    expect(await stopCli(cli)).toBe(0);
  });
});
