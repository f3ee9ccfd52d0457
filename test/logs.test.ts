// Logs (issue 9, item 3), with the real CLI: JSON lines on stdout (time, level, event, msg), one
// line per state change provoked for real (Redis killed and restarted, a leader killed, the
// library flushed, keys backfilled, a registry that cannot be read, protocol errors, many of them
// for the rate limit), --log-level, --log-format pretty, and no secret in any line at trace level.
import { connect } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { listening, logLines, startCli, stopCli, type Cli, type LogLine } from './helpers/cli.js';
import { freePort, startRedis, waitForPort, SentinelServer, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';
import { holdLease } from './helpers/internal.js';
import { startProxyWith } from './helpers/proxy.js';
import type { LogEntry } from '../src/index.js';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.destroy();
});

function proxyCli(args: string[], upstream = redis.url): Cli {
  const cli = startCli(['--upstream', upstream, ...args]);
  cleanups.push(() => stopCli(cli, 'SIGKILL'));
  return cli;
}

async function started(args: string[] = [], upstream = redis.url): Promise<{ cli: Cli; port: number }> {
  const port = await freePort();
  const cli = proxyCli(['--port', String(port), ...args], upstream);
  await listening(cli);
  return { cli, port };
}

const withEvent = (cli: Cli, event: string): LogLine[] => logLines(cli).filter((line) => line.event === event);

async function waitForEvent(cli: Cli, event: string, count = 1, timeoutMs = 10_000): Promise<LogLine[]> {
  return waitFor(async () => withEvent(cli, event), (lines) => lines.length >= count, timeoutMs, 20);
}

function admin(port = redis.port): Redis {
  const client = new Redis(port, { lazyConnect: false, maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  cleanups.push(() => client.disconnect());
  return client;
}

/** Sends bytes on a fresh connection and resolves once the proxy closes it. */
function sendAndWaitClose(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    socket.on('data', (chunk) => (reply += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(reply));
    socket.on('connect', () => socket.write(bytes));
  });
}

describe('format', () => {
  it('each line is one JSON object with time, level, event and msg; listening is one info line', async () => {
    const { cli } = await started();
    const lines = logLines(cli); // throws if a line is not JSON
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      expect(Number.isNaN(Date.parse(line.time))).toBe(false);
      expect(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).toContain(line.level);
      expect(line.event).toMatch(/^[a-z_]+$/);
      expect(typeof line.msg).toBe('string');
    }
    expect(withEvent(cli, 'listening')).toHaveLength(1);
    expect(withEvent(cli, 'listening')[0]).toMatchObject({ level: 'info', port: expect.any(Number), upstream: `redis://127.0.0.1:${redis.port}/0` });
    expect(await stopCli(cli)).toBe(0);
    expect(cli.stderr).toBe('');
  });

  it('--log-level warn hides info lines and keeps warnings; NOTIFYLIST_LOG_LEVEL too; a bad level is a start-up error', async () => {
    const port = await freePort();
    const cli = proxyCli(['--port', String(port), '--log-level', 'warn']);
    await waitForPort(port);
    await sendAndWaitClose(port, '*1\r\n$-5\r\n');
    await waitForEvent(cli, 'client_protocol_error');
    await sleep(200);
    expect(logLines(cli).map((line) => line.level)).toEqual(['warn']);

    const other = await freePort();
    const quiet = startCli(['--port', String(other), '--upstream', redis.url], { NOTIFYLIST_LOG_LEVEL: 'error' });
    cleanups.push(() => stopCli(quiet, 'SIGKILL'));
    await waitForPort(other);
    await sendAndWaitClose(other, '*1\r\n$-5\r\n');
    await sleep(300);
    expect(quiet.stdout).toBe('');

    const bad = startCli(['--log-level', 'loud']);
    expect((await bad.exited).code).toBe(1);
    expect(bad.stderr).toBe("notifylist-proxy: --log-level must be fatal, error, warn, info, debug, trace, silent; got 'loud'\n");
  });

  it('--log-format pretty prints human lines, not JSON', async () => {
    const port = await freePort();
    const cli = proxyCli(['--port', String(port), '--log-format', 'pretty']);
    await waitFor(async () => cli.stdout, (out) => out.includes('listening on'), 10_000);
    const line = cli.stdout.split('\n').find((text) => text.includes('listening on'))!;
    expect(() => JSON.parse(line)).toThrow();
    expect(line).toMatch(/INFO.*notifylist-proxy listening on 127\.0\.0\.1:\d+/);
    expect(line).toContain('listening'); // the event is among the fields
  });
});

describe('one line per state change', () => {
  it('Redis killed: upstream_lost once however many retries; restarted: upstream_back once', async () => {
    const own = await startRedis();
    cleanups.push(() => own.destroy());
    const { cli } = await started([], own.url);
    await own.kill();
    const [lost] = await waitForEvent(cli, 'upstream_lost');
    expect(lost).toMatchObject({ level: 'warn', upstream: `127.0.0.1:${own.port}` });
    await sleep(1500); // ioredis retries (each retry fails and closes again)
    await own.start();
    const [back] = await waitForEvent(cli, 'upstream_back');
    expect(back).toMatchObject({ level: 'info', upstream: `127.0.0.1:${own.port}`, downMs: expect.any(Number) });
    await sleep(300);
    expect(withEvent(cli, 'upstream_lost')).toHaveLength(1);
    expect(withEvent(cli, 'upstream_back')).toHaveLength(1);
    // Stopping the proxy is no loss of Redis.
    expect(await stopCli(cli)).toBe(0);
    expect(withEvent(cli, 'upstream_lost')).toHaveLength(1);
  });

  it('in process (the line sink tests use): the same entries; closing the proxy is no upstream_lost', async () => {
    const entries: LogEntry[] = [];
    const lines: string[] = [];
    const proxy = await startProxyWith(['--port', String(await freePort()), '--upstream', redis.url], (line, entry) => {
      lines.push(line);
      entries.push(entry);
    });
    await sendAndWaitClose(proxy.port, '*1\r\n$-5\r\n');
    await waitFor(async () => entries.length, (n) => n > 0, 5000);
    expect(entries).toEqual([expect.objectContaining({ level: 'warn', event: 'client_protocol_error', error: 'Protocol error: invalid bulk length' })]);
    expect(lines).toEqual([entries[0].msg]);
    await proxy.close();
    await sleep(300);
    expect(entries.map((entry) => entry.event)).toEqual(['client_protocol_error']);
  });

  it('two proxies: the leader logs lease_taken once; killed, the other logs lease_taken once', async () => {
    const own = await startRedis();
    cleanups.push(() => own.destroy());
    const flags = ['--lease-ms', '600'];
    const a = await started(flags, own.url);
    const b = await started(flags, own.url);
    const client = admin(a.port);
    expect(await client.call('NOTIFYLIST.SET', 'lease:*', 'lease_events')).toBe('OK');
    const leaders = await waitFor(
      async () => [a, b].filter(({ cli }) => withEvent(cli, 'lease_taken').length > 0),
      (found) => found.length > 0,
      5000,
    );
    expect(leaders).toHaveLength(1);
    const [leader] = leaders;
    const follower = leader === a ? b : a;
    expect(withEvent(leader.cli, 'lease_taken')).toHaveLength(1);
    expect(withEvent(leader.cli, 'lease_taken')[0]).toMatchObject({ level: 'info', proxy: expect.any(String) });
    leader.cli.child.kill('SIGKILL');
    await waitForEvent(follower.cli, 'lease_taken', 1, 5000);
    await sleep(700);
    expect(withEvent(follower.cli, 'lease_taken')).toHaveLength(1);
    expect(withEvent(follower.cli, 'lease_lost')).toHaveLength(0);
    // Another holder takes the lease over: the new leader's renewal fails, once.
    await holdLease(admin(own.port), 'someone-else', 3000);
    const [lost] = await waitForEvent(follower.cli, 'lease_lost', 1, 3000);
    expect(lost).toMatchObject({ level: 'info', proxy: withEvent(follower.cli, 'lease_taken')[0].proxy });
    await sleep(700);
    expect(withEvent(follower.cli, 'lease_lost')).toHaveLength(1);
  });

  it('library_loaded at the first registration, and again once after FUNCTION FLUSH', async () => {
    const own = await startRedis();
    cleanups.push(() => own.destroy());
    const { cli, port } = await started([], own.url);
    expect(withEvent(cli, 'library_loaded')).toHaveLength(0); // idle: nothing loaded
    expect(await admin(port).call('NOTIFYLIST.SET', 'lib:*', 'lib_events')).toBe('OK');
    const [loaded] = await waitForEvent(cli, 'library_loaded');
    expect(loaded).toMatchObject({ level: 'info', version: expect.any(Number), previous: null });
    await admin(own.port).call('FUNCTION', 'FLUSH');
    await waitForEvent(cli, 'library_loaded', 2, 8000); // the maintenance tick (5 s) finds it gone
    await sleep(200);
    expect(withEvent(cli, 'library_loaded')).toHaveLength(2);
  });

  it('backfill_done once the keys that had a TTL before the registration are indexed', async () => {
    const own = await startRedis();
    cleanups.push(() => own.destroy());
    const direct = admin(own.port);
    for (let i = 0; i < 50; i++) await direct.set(`bf:${i}`, 'v', 'EX', 600);
    const { cli, port } = await started(['--lease-ms', '600'], own.url);
    expect(await admin(port).call('NOTIFYLIST.SET', 'bf:*', 'bf_events')).toBe('OK');
    const [done] = await waitForEvent(cli, 'backfill_done', 1, 5000);
    expect(done).toMatchObject({ level: 'info', db: 0 });
    expect(await direct.zcard('notifylist:expiry')).toBe(50);
    await sleep(1500); // further reaper passes find nothing pending: no more lines
    expect(withEvent(cli, 'backfill_done')).toHaveLength(1);
  });

  it('registry_reload_failed when the registry cannot be read (a hash replaced by a string, subscriber reconnected)', async () => {
    const own = await startRedis();
    cleanups.push(() => own.destroy());
    const { cli } = await started([], own.url);
    const direct = admin(own.port);
    await direct.set('notifylist:registry', 'not a hash');
    await direct.client('KILL', 'TYPE', 'pubsub'); // the subscriber comes back and reloads
    const [failed] = await waitForEvent(cli, 'registry_reload_failed');
    expect(failed).toMatchObject({ level: 'error' });
    expect(failed.msg).toMatch(/^registry reload failed: .*WRONGTYPE/);
  });

  it('a client closed for a protocol error: one warn line with its address and Redis\'s error', async () => {
    const { cli, port } = await started();
    expect(await sendAndWaitClose(port, '*1\r\n$-5\r\n')).toBe('-ERR Protocol error: invalid bulk length\r\n');
    const [line] = await waitForEvent(cli, 'client_protocol_error');
    expect(line).toMatchObject({
      level: 'warn',
      client: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      error: 'Protocol error: invalid bulk length',
      suppressed: 0,
    });
    expect(await sendAndWaitClose(port, 'SET "unbalanced x\r\n')).toBe('-ERR Protocol error: unbalanced quotes in request\r\n');
    await sleep(1200);
    const lines = withEvent(cli, 'client_protocol_error');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ error: 'Protocol error: unbalanced quotes in request' });
  });

  it('protocol errors are rate-limited: at most one line a second, the others counted in `suppressed`', async () => {
    const { cli, port } = await started();
    const started_ = Date.now();
    const clients = 60;
    await Promise.all(Array.from({ length: clients }, () => sendAndWaitClose(port, '*1\r\n$-5\r\n')));
    const elapsed = Date.now() - started_;
    const total = (lines: LogLine[]): number => lines.reduce((sum, line) => sum + 1 + Number(line.suppressed), 0);
    const lines = await waitFor(async () => withEvent(cli, 'client_protocol_error'), (found) => total(found) >= clients, 5000);
    expect(total(lines)).toBe(clients);
    // The clients took `elapsed` ms: no more lines than one per started second.
    expect(lines.length).toBeLessThanOrEqual(Math.ceil(elapsed / 1000) + 1);
    expect(lines.length).toBeLessThan(clients);
    const times = lines.map((line) => Date.parse(line.time));
    for (let i = 1; i < times.length; i++) expect(times[i] - times[i - 1]).toBeGreaterThanOrEqual(990);
    expect(lines.at(-1)!.suppressed).toBeGreaterThan(0);
    expect(lines.at(-1)!.msg).toMatch(/^client 127\.0\.0\.1:\d+ closed for a protocol error: Protocol error: invalid bulk length \(and \d+ other client\(s\) within 1000 ms, not logged\)$/);
  });
});

describe('secrets', () => {
  it('the upstream password, a wrong AUTH password of a client and a sentinel password appear in no line, at trace level', async () => {
    const PASSWORD = 'upstream-pw-5521';
    const WRONG = 'client-wrong-pw-9034';
    const SENTINEL_PASSWORD = 'sentinel-pw-7718';
    const secured = await startRedis({ config: { requirepass: PASSWORD } });
    cleanups.push(() => secured.destroy());
    const trace = ['--log-level', 'trace'];
    const { cli, port } = await started(trace, `redis://:${PASSWORD}@127.0.0.1:${secured.port}`);
    expect(await sendAndWaitClose(port, `*2\r\n$4\r\nAUTH\r\n$${WRONG.length}\r\n${WRONG}\r\nQUIT\r\n`)).toMatch(/^-WRONGPASS .*\r\n\+OK\r\n$/);
    // Wrong AUTH arguments in a malformed request too (the client is closed and logged).
    await sendAndWaitClose(port, `AUTH "${WRONG}\r\n`);
    await waitForEvent(cli, 'client_protocol_error');
    // Redis away and back: its errors are logged.
    await secured.kill();
    await waitForEvent(cli, 'upstream_lost');
    await secured.start();
    await waitForEvent(cli, 'upstream_back');
    expect(await stopCli(cli)).toBe(0);

    // Sentinel with a password: the master is found through it (logged).
    const sentinel = new SentinelServer({ masterName: 'logs', masterPort: redis.port, quorum: 1, downAfterMs: 5000, failoverTimeoutMs: 10_000, password: SENTINEL_PASSWORD });
    await sentinel.start();
    cleanups.push(() => sentinel.destroy());
    const viaSentinel = proxyCli(['--port', String(await freePort()), '--sentinel', `127.0.0.1:${sentinel.port}`, '--sentinel-master', 'logs', '--sentinel-password', SENTINEL_PASSWORD, ...trace]);
    await waitForEvent(viaSentinel, 'listening');
    expect(withEvent(viaSentinel, 'master_found')).toHaveLength(1);
    expect(await stopCli(viaSentinel)).toBe(0);

    for (const output of [cli.stdout, cli.stderr, viaSentinel.stdout, viaSentinel.stderr]) {
      expect(output).not.toContain(PASSWORD);
      expect(output).not.toContain(WRONG);
      expect(output).not.toContain(SENTINEL_PASSWORD);
    }
    expect(logLines(cli).length).toBeGreaterThan(3);
  });
});
