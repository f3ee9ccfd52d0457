// The proxy grants nothing on the network (issue "Security: the proxy grants nothing, for real",
// findings 6 and 7):
// - Protected mode: Redis refuses non-loopback clients while protected-mode is yes and the default
//   user has nopass, but behind the proxy every session comes from 127.0.0.1. So the proxy refuses
//   them itself, with Redis's own bytes (compared with a redis-server bound to this machine's
//   non-loopback address, connected to the same way), and follows changes of Redis's state.
// - Redaction: a password in --upstream / NOTIFYLIST_UPSTREAM never shows in the CLI's output.
// Needs a non-loopback IPv4 address on this machine: without one these tests fail (they do not skip).
import { networkInterfaces } from 'node:os';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig, startProxy, type RunningProxy } from '../src/index.js';
import { controlAclRules } from '../src/notify/control-permissions.js';
import { listeningMessage, runCli, startCli, stopCli } from './helpers/cli.js';
import { command, RawClient } from './helpers/raw-client.js';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
});

function externalAddress(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) if (address.family === 'IPv4' && !address.internal) return address.address;
  }
  throw new Error('this machine has no non-loopback IPv4 address (os.networkInterfaces()): protected mode cannot be tested here');
}

let external: string;

/**
 * A Redis that also listens on the non-loopback address, so that it can be asked directly. Every
 * protected mode test starts with it: without such an address each one fails (none is skipped).
 */
async function redisOnBoth(config: Record<string, string> = {}): Promise<RedisServer> {
  external = externalAddress();
  const redis = await startRedis({ config: { bind: `127.0.0.1 ${external}`, ...config } });
  cleanups.push(() => redis.destroy());
  return redis;
}

async function proxyFor(upstream: string, flags: string[], log?: (line: string) => void): Promise<RunningProxy> {
  const proxy = await startProxy(parseConfig(['--port', String(await freePort()), '--upstream', upstream, ...flags], {})!, log);
  cleanups.push(() => proxy.close());
  return proxy;
}

function admin(port: number, options: Record<string, unknown> = {}): Redis {
  const redis = new Redis(port, { maxRetriesPerRequest: null, ...options });
  redis.on('error', () => undefined);
  cleanups.push(async () => redis.disconnect());
  return redis;
}

/**
 * What a client connecting from `host` reads: a refusal comes unasked (then the connection
 * closes); a client let in gets the reply to a PING, and stays connected.
 */
async function pingFrom(host: string, port: number): Promise<{ bytes: string; closed: boolean }> {
  const client = await RawClient.connect(port, host);
  try {
    const unasked = (await client.untilClosed(200)).toString('latin1');
    if (unasked !== '' || client.closed) return { bytes: unasked + (await client.untilClosed(1000)).toString('latin1'), closed: client.closed };
    client.send(command('PING'));
    return { bytes: (await client.replies(1)).toString('latin1'), closed: client.closed };
  } finally {
    client.close();
  }
}

/** Refused without a word read: the connection closes by itself, before any command is sent. */
async function refusalFrom(host: string, port: number): Promise<{ bytes: string; closed: boolean }> {
  const client = await RawClient.connect(port, host);
  try {
    const bytes = (await client.untilClosed(1500)).toString('latin1');
    return { bytes, closed: client.closed };
  } finally {
    client.close();
  }
}

const connectionsReceived = async (redis: Redis): Promise<number> => Number(/total_connections_received:(\d+)/.exec(await redis.info('stats'))![1]);

/** Waits until `accept` holds for what a non-loopback client reads; returns the ms it took. */
async function untilRemoteSees(port: number, accept: (bytes: string) => boolean): Promise<number> {
  const started = Date.now();
  const seen = await waitFor(async () => (await pingFrom(external, port)).bytes, accept, 4000, 50);
  expect(accept(seen), seen.slice(0, 60)).toBe(true);
  return Date.now() - started;
}
const isDenied = (bytes: string): boolean => bytes.startsWith('-DENIED ');

describe('protected mode', () => {
  it("a non-loopback client gets Redis's own -DENIED bytes and is closed: nothing read, no upstream connection; loopback clients work", async () => {
    const redis = await redisOnBoth(); // protected-mode yes and a nopass default user: Redis's defaults
    const direct = admin(redis.port);
    const proxy = await proxyFor(redis.url, ['--bind', '0.0.0.0']);

    const fromRedis = await refusalFrom(external, redis.port);
    expect(fromRedis.bytes).toMatch(/^-DENIED Redis is running in protected mode because .*\r\n$/);
    expect(fromRedis.closed).toBe(true);

    const before = await connectionsReceived(direct);
    expect(await refusalFrom(external, proxy.port)).toEqual(fromRedis);
    // A client that sends a command at once: not read, not forwarded, no upstream connection.
    const eager = await RawClient.connect(proxy.port, external);
    eager.send(command('SET', 'pm:denied', '1'));
    await eager.untilClosed(1500);
    expect(eager.closed).toBe(true);
    eager.close();
    // Also after the reading of Redis's state is stale (read again, on the control connection).
    await sleep(1100);
    expect(await refusalFrom(external, proxy.port)).toEqual(fromRedis);
    expect(await direct.exists('pm:denied')).toBe(0);
    expect((await connectionsReceived(direct)) - before).toBe(0);

    // Loopback clients: through, as to Redis.
    expect(await pingFrom('127.0.0.1', proxy.port)).toEqual({ bytes: '+PONG\r\n', closed: false });
    const user = admin(proxy.port);
    expect(await user.set('pm:k', 'v')).toBe('OK');
    expect(await user.get('pm:k')).toBe('v');
  });

  it("only non-loopback clients make the proxy read Redis's state again: loopback ones add no command", async () => {
    const redis = await redisOnBoth();
    const direct = admin(redis.port);
    const proxy = await proxyFor(redis.url, ['--bind', '0.0.0.0']);
    // CONFIG and ACL are admin commands, which MONITOR does not show: counted in commandstats.
    const readings = async (): Promise<number[]> => {
      const stats = await direct.info('commandstats');
      return ['config|get', 'acl|getuser'].map((name) => Number(new RegExp(`cmdstat_${name.replace('|', '\\|')}:calls=(\\d+)`).exec(stats)?.[1] ?? 0));
    };
    const atStart = await readings();
    expect(atStart[0]).toBeGreaterThan(0);
    expect(atStart[1]).toBe(1);
    const watcher = await RawClient.connect(redis.port);
    cleanups.push(async () => watcher.close());
    watcher.send(command('MONITOR'));
    await watcher.replies(1);
    const user = admin(proxy.port, { enableReadyCheck: false });
    await sleep(1100); // the start-up reading is stale now
    await user.set('pm:loop', 'v');
    expect(await pingFrom('127.0.0.1', proxy.port)).toEqual({ bytes: '+PONG\r\n', closed: false });
    await user.get('pm:loop');
    const seen = watcher.pending().split('\r\n').filter((line) => line.startsWith('+'));
    expect(seen.map((line) => line.replace(/^\+[\d.]+ \[\d+ [^\]]+\] /, ''))).toEqual(['"set" "pm:loop" "v"', '"PING"', '"get" "pm:loop"']);
    expect(await readings()).toEqual(atStart);
    // Several non-loopback clients within a second: Redis's state is read once more.
    for (let i = 0; i < 3; i++) expect(isDenied((await refusalFrom(external, proxy.port)).bytes)).toBe(true);
    expect(await readings()).toEqual([atStart[0] + 1, atStart[1] + 1]);
  });

  it('--protected-mode no (or NOTIFYLIST_PROTECTED_MODE=no) lets non-loopback clients through', async () => {
    const redis = await redisOnBoth();
    const proxy = await proxyFor(redis.url, ['--bind', '0.0.0.0', '--protected-mode', 'no']);
    expect(await pingFrom(external, proxy.port)).toEqual({ bytes: '+PONG\r\n', closed: false });
    expect(parseConfig(['--port', '6390'], { NOTIFYLIST_PROTECTED_MODE: 'no' })!.protectedMode).toBe(false);
    expect(parseConfig(['--port', '6390', '--protected-mode', 'yes'], { NOTIFYLIST_PROTECTED_MODE: 'no' })!.protectedMode).toBe(true);
    expect(parseConfig(['--port', '6390'], {})!.protectedMode).toBe(true);
    expect(() => parseConfig(['--protected-mode', 'maybe'], {})).toThrow("--protected-mode must be yes or no, got 'maybe'");
  });

  it('a Redis with requirepass: non-loopback clients get through and must AUTH, as on Redis; CONFIG SET requirepass "" refuses them within a second', async () => {
    const redis = await redisOnBoth({ requirepass: 'pw' });
    const direct = admin(redis.port, { password: 'pw' });
    // The control user keeps its login when the default user's password changes.
    await direct.call('ACL', 'SETUSER', 'ctl', 'on', '>ctlpw', '~*', '&*', '+@all');
    const proxy = await proxyFor(`redis://ctl:ctlpw@127.0.0.1:${redis.port}`, ['--bind', '0.0.0.0']);

    const fromRedis = await pingFrom(external, redis.port);
    expect(fromRedis.bytes).toBe('-NOAUTH Authentication required.\r\n');
    expect(await pingFrom(external, proxy.port)).toEqual(fromRedis);
    const remote = await RawClient.connect(proxy.port, external);
    cleanups.push(async () => remote.close());
    remote.send(Buffer.concat([command('AUTH', 'pw'), command('PING')]));
    expect((await remote.replies(2)).toString()).toBe('+OK\r\n+PONG\r\n');

    await direct.config('SET', 'requirepass', '');
    const deniedAfter = await untilRemoteSees(proxy.port, isDenied);
    expect(deniedAfter).toBeLessThan(2000);
    expect((await refusalFrom(external, proxy.port)).bytes).toBe((await refusalFrom(external, redis.port)).bytes);
    // A client let in before the change stays, as on Redis.
    remote.send(command('PING'));
    expect((await remote.replies(1)).toString()).toBe('+PONG\r\n');

    await direct.config('SET', 'requirepass', 'pw2');
    expect(await untilRemoteSees(proxy.port, (bytes) => bytes === '-NOAUTH Authentication required.\r\n')).toBeLessThan(2000);
  });

  it('a Redis with protected-mode no lets them through; CONFIG SET protected-mode yes refuses them within a second', async () => {
    const redis = await redisOnBoth({ 'protected-mode': 'no' });
    const direct = admin(redis.port);
    const proxy = await proxyFor(redis.url, ['--bind', '0.0.0.0']);
    expect(await pingFrom(external, redis.port)).toEqual({ bytes: '+PONG\r\n', closed: false });
    expect(await pingFrom(external, proxy.port)).toEqual({ bytes: '+PONG\r\n', closed: false });

    await direct.config('SET', 'protected-mode', 'yes');
    expect(await untilRemoteSees(proxy.port, isDenied)).toBeLessThan(2000);
    expect(await refusalFrom(external, proxy.port)).toEqual(await refusalFrom(external, redis.port));

    await direct.config('SET', 'protected-mode', 'no');
    expect(await untilRemoteSees(proxy.port, (bytes) => bytes === '+PONG\r\n')).toBeLessThan(2000);
  });

  it('a control user without +config|get: one log line, protected-mode taken as yes', async () => {
    const redis = await redisOnBoth({ 'protected-mode': 'no', 'notify-keyspace-events': 'Ex' });
    const direct = admin(redis.port);
    await direct.call('ACL', 'SETUSER', 'ctl', 'on', '>ctlpw', ...controlAclRules('notifylist:'), '~*');
    const lines: string[] = [];
    const proxy = await proxyFor(`redis://ctl:ctlpw@127.0.0.1:${redis.port}`, ['--bind', '0.0.0.0'], (line) => lines.push(line));
    const notes = lines.filter((line) => line.startsWith('protected mode:'));
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(/protected-mode .*assuming yes/);

    // Redis itself would let them in (protected-mode no), but the proxy cannot know it: refused.
    expect(await pingFrom(external, redis.port)).toEqual({ bytes: '+PONG\r\n', closed: false });
    expect(isDenied((await refusalFrom(external, proxy.port)).bytes)).toBe(true);
    // A password for the default user: new connections must AUTH, so it has no nopass: through.
    await direct.config('SET', 'requirepass', 'pw');
    expect(await untilRemoteSees(proxy.port, (bytes) => bytes === '-NOAUTH Authentication required.\r\n')).toBeLessThan(2000);
    expect(lines.filter((line) => line.startsWith('protected mode:'))).toHaveLength(1);
  });
});

/** Runs the tasks, at most 3 at a time (each is a Node process; the machine is shared), in order. */
async function fewAtATime<T>(tasks: Array<() => Promise<T>>): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < tasks.length; i += 3) results.push(...(await Promise.all(tasks.slice(i, i + 3).map((task) => task()))));
  return results;
}

describe('redaction: a password in the upstream URL never shows in the output', () => {
  const SECRET = 'S3cr3t';
  const noSecret = (result: { stdout: string; stderr: string }): void => {
    expect(result.stdout + result.stderr).not.toContain(SECRET);
  };

  it('malformed URLs, from the flag and from NOTIFYLIST_UPSTREAM, when running and with --uninstall', async () => {
    const malformed = [
      `redis://user:${SECRET}@127.0.0.1:99999`,
      `redis://:${SECRET}#x${SECRET}@127.0.0.1:6379`, // '#' cuts the URL: host ':...' -> invalid port
      `redis://:${SECRET}@[::1`,
      `redis://u:1234/${SECRET}@127.0.0.1`, // the rest of the password lands in the path (the db)
      `redis://127.0.0.1:99999/0?password=${SECRET}`,
      `:${SECRET}@127.0.0.1:6379`,
    ];
    // The flag or the environment, running or --uninstall, in turn (one parser behind all four).
    const modes: Array<(url: string) => Parameters<typeof runCli>> = [
      (url) => [['--port', '6390', '--upstream', url]],
      (url) => [['--port', '6390'], { NOTIFYLIST_UPSTREAM: url }],
      (url) => [['--uninstall', '--upstream', url]],
      (url) => [['--uninstall'], { NOTIFYLIST_UPSTREAM: url }],
    ];
    const results = await fewAtATime(malformed.map((url, i) => () => runCli(...modes[i % modes.length](url))));
    results.forEach((result, i) => {
      expect(result.code, malformed[i]).toBe(1);
      expect(result.stderr).toMatch(/^notifylist-proxy: (invalid upstream URL|invalid database)/);
      noSecret(result);
    });
    expect(results[0].stderr).toContain("invalid upstream URL 'redis://user:***@127.0.0.1:99999'");
    expect(results[4].stderr).toContain("'redis://127.0.0.1:99999/0?password=***'");
  });

  it('valid URLs (running, failing to authenticate or connect, --uninstall) and URLs on mistyped flags', async () => {
    const redis = await startRedis({ config: { requirepass: SECRET } });
    cleanups.push(() => redis.destroy());
    const good = `redis://:${SECRET}@127.0.0.1:${redis.port}`;
    const closed = await freePort();

    const port = await freePort();
    const cli = startCli(['--port', String(port), '--bind', '0.0.0.0'], { NOTIFYLIST_UPSTREAM: `${good}/0?password=${SECRET}` });
    cleanups.push(() => stopCli(cli, 'SIGKILL'));
    expect(await listeningMessage(cli)).toMatch(/^notifylist-proxy listening on 0\.0\.0\.0:\d+, upstream redis:\/\/127\.0\.0\.1:\d+\/0$/);
    expect(await stopCli(cli)).toBe(0);
    noSecret(cli);
    // Its connections are gone before --uninstall looks for running proxies.
    const direct = admin(redis.port, { password: SECRET });
    await waitFor(async () => String(await direct.client('LIST')), (list) => !list.includes('name=notifylist-proxy'), 5000);

    const results = await fewAtATime([
      () => runCli(['--port', String(closed), '--upstream', `redis://:${SECRET}x@127.0.0.1:${redis.port}`]), // wrong password (start fails before listening)
      () => runCli(['--port', String(closed), '--upstream', `redis://u:${SECRET}@127.0.0.1:${closed}`]),
      () => runCli(['--uninstall', '--upstream', good]),
      () => runCli(['--uninstall'], { NOTIFYLIST_UPSTREAM: `redis://u:${SECRET}@127.0.0.1:${closed}` }),
      () => runCli([`--upstrem=${good}`]),
      () => runCli([good]),
    ]);
    for (const result of results) noSecret(result);
    const [wrong, unreachable, uninstalled, uninstallUnreachable, mistyped, positional] = results;
    expect(wrong.stderr).toMatch(/WRONGPASS|invalid/);
    expect(unreachable.stderr).toMatch(/ECONNREFUSED/);
    expect(uninstalled.code).toBe(0);
    expect(uninstalled.stdout).toContain('removed 0 key(s)');
    expect(uninstallUnreachable.stderr).toMatch(/ECONNREFUSED/);
    expect(mistyped.stderr).toBe("notifylist-proxy: unknown option '--upstrem' (see --help)\n");
    expect(positional.stderr).toBe(`notifylist-proxy: unknown option 'redis://:***@127.0.0.1:${redis.port}' (see --help)\n`);
  });
});
