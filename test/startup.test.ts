// Start-up and the proxy's own Redis user (issue 6, part 5, and --prefix): the control user's
// permission list is exact (a proxy runs as a user with exactly it; a user lacking any of it is
// refused with one line), a silent upstream times out, signals exit 0 at any time, registrations
// lost by a Redis restart come back (and a direct FLUSHALL still removes them), --version,
// --uninstall, and --prefix limited to printable ASCII.
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, startProxy, StartupError } from '../src/index.js';
import { CONTROL_COMMANDS, CONTROL_PATTERNS, OPTIONAL_CONTROL_RULES, controlAclRules } from '../src/notify/control-permissions.js';
import { listening, runCli, startCli, stopCli, type Cli } from './helpers/cli.js';
import { ProxyProcess, startTestProxy } from './helpers/proxy.js';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const NO_STACK = /\n\s+at |Error:|node:internal/;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
});

function client(port: number, options: Record<string, unknown> = {}): Redis {
  const redis = new Redis(port, { maxRetriesPerRequest: null, ...options });
  redis.on('error', () => undefined);
  cleanups.push(async () => redis.disconnect());
  return redis;
}

function running(cli: Cli): Cli {
  cleanups.push(() => stopCli(cli, 'SIGKILL'));
  return cli;
}

const events = (direct: Redis, list: string): Promise<Array<{ key: string; op: string }>> =>
  direct.lrange(list, 0, -1).then((items) => items.map((e) => JSON.parse(e)));

describe('the control user', () => {
  let redis: RedisServer;
  let admin: Redis;
  beforeAll(async () => {
    // The flags the proxy would set with CONFIG SET (optional): set here, since the user may not.
    redis = await startRedis({ config: { 'notify-keyspace-events': 'Ex' } });
    admin = new Redis(redis.port);
  });
  afterAll(async () => {
    admin?.disconnect();
    await redis?.destroy();
  });

  /** The documented rules (without the optional CONFIG ones), keys of the test's own registrations. */
  const RUNTIME_KEYS = ['~k:*', '~ev'];
  const setUser = (rules: string[]): Promise<unknown> => admin.call('ACL', 'SETUSER', 'ctl', 'reset', 'on', '>pw', ...rules, ...RUNTIME_KEYS);
  const url = (): string => `redis://ctl:pw@127.0.0.1:${redis.port}`;

  it('the README lists exactly the rules the code defines', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(`\`${controlAclRules('notifylist:').join(' ')}\``);
    expect(readme).toContain(`\`${OPTIONAL_CONTROL_RULES.join(' ')}\``);
  });

  it('a proxy running as a user with exactly those rules: set, expired (keyevent and reaper) and backfill work', async () => {
    await setUser(controlAclRules('notifylist:'));
    // Backfill: this key has its TTL (set directly on Redis) before its pattern is registered.
    await admin.set('k:old', 'v', 'PX', 2500);
    const proxy = await new ProxyProcess(url(), ['--lease-ms', '500']).start();
    cleanups.push(() => proxy.kill());
    const user = client(proxy.port);
    expect(await user.call('NOTIFYLIST.SET', 'k:*', 'ev')).toBe('OK');
    await user.set('k:1', 'v', 'PX', 300);
    const live = await waitFor(() => events(admin, 'ev'), (list) => list.some((e) => e.key === 'k:1' && e.op === 'expired'), 5000);
    expect(live).toContainEqual({ key: 'k:1', op: 'set' });
    expect(live).toContainEqual({ key: 'k:1', op: 'expired' });
    // Both listeners are really in place under this user: the keyevent subscription and the lease.
    const info = String(await user.call('NOTIFYLIST.INFO'));
    expect(info).toContain('keyevent_subscription:up');
    // PSUBSCRIBE, or SUBSCRIBE per database: one of them, as this user.
    const [, perDb] = (await admin.call('PUBSUB', 'NUMSUB', '__keyevent@0__:expired')) as [string, number];
    expect(Number(await admin.call('PUBSUB', 'NUMPAT')) + Number(perDb)).toBeGreaterThan(0);
    await waitFor(async () => String(await user.call('NOTIFYLIST.INFO')), (text) => text.includes('reaper_leader:1'), 5000);
    // The reaper alone: a key that expires while no proxy runs is reported after the restart.
    await user.set('k:2', 'v', 'PX', 300);
    await proxy.kill();
    await sleep(400);
    await proxy.start();
    const afterRestart = await waitFor(
      () => events(admin, 'ev'),
      (list) => list.some((e) => e.key === 'k:2' && e.op === 'expired') && list.some((e) => e.key === 'k:old' && e.op === 'expired'),
      8000,
    );
    expect(afterRestart).toContainEqual({ key: 'k:2', op: 'expired' });
    // Backfilled by the leader (as this user) and reported at its deadline.
    expect(afterRestart).toContainEqual({ key: 'k:old', op: 'expired' });
    // (Without the optional rules: no CONFIG, no evicted channel; each said once.)
    const lines = proxy.output.split('\n').filter((line) => !line.includes('"event":"evicted_unavailable"'));
    expect(lines.join('\n')).not.toMatch(/deferred|NOPERM(?!.*config\|get)|failed/);
    await user.call('NOTIFYLIST.DEL', 'k:*');
  }, 30_000);

  const removable = [...CONTROL_COMMANDS.map((p) => p.rule), ...CONTROL_PATTERNS.map((p) => p.rule.replace('<prefix>', 'notifylist:'))];
  it(`a user lacking any one of the ${removable.length} rules is refused at start, naming it`, async () => {
    const all = controlAclRules('notifylist:');
    for (const rule of removable) {
      await setUser(all.filter((r) => r !== rule));
      const config = parseConfig(['--port', String(await freePort()), '--upstream', url()], {})!;
      const refused = await startProxy(config).then(
        async (proxy) => {
          await proxy.close();
          return null;
        },
        (error: Error) => error,
      );
      expect(refused, rule).toBeInstanceOf(StartupError);
      expect(refused!.message).toBe(`the Redis user 'ctl' at 127.0.0.1:${redis.port} lacks what the proxy needs: ${rule} (README, Configuration)`);
    }
  }, 60_000);

  it('several missing: named together; through the CLI one line on stderr and exit 1', async () => {
    const all = controlAclRules('notifylist:');
    await setUser(all.filter((r) => r !== '+zcard' && r !== '&notifylist:*'));
    const result = await runCli(['--port', String(await freePort()), '--upstream', url()]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`notifylist-proxy: the Redis user 'ctl' at 127.0.0.1:${redis.port} lacks what the proxy needs: +zcard &notifylist:* (README, Configuration)\n`);
  });
});

describe('an upstream that accepts connections and never answers', () => {
  let silent: Server;
  let silentPort: number;
  const sockets = new Set<Socket>();
  let accepted = 0;
  beforeAll(async () => {
    silent = createServer((socket) => {
      accepted++;
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    silentPort = (silent.address() as { port: number }).port;
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent?.close(resolve));
  });

  it('start-up times out: one line on stderr, exit 1', async () => {
    const started = Date.now();
    const result = await runCli(['--port', String(await freePort()), '--upstream', `redis://127.0.0.1:${silentPort}`, '--connect-timeout-ms', '800']);
    expect(result.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(6000);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`notifylist-proxy: Redis at 127.0.0.1:${silentPort} did not answer within 800 ms (--connect-timeout-ms)\n`);
  });

  it('the default timeout applies too (also with a password: AUTH never answered)', async () => {
    const result = await runCli(['--port', String(await freePort()), '--upstream', `redis://u:p@127.0.0.1:${silentPort}`], {}, 15_000);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/did not answer within 5000 ms/);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} during the hanging start-up: exit 0 at once`, async () => {
      const before = accepted;
      const cli = running(startCli(['--port', String(await freePort()), '--upstream', `redis://127.0.0.1:${silentPort}`, '--connect-timeout-ms', '60000']));
      // Connecting: the CLI is past loading its modules, in its start-up.
      await waitFor(async () => accepted, (n) => n > before, 5000);
      const started = Date.now();
      cli.child.kill(signal);
      const { code, signal: killedBy } = await cli.exited;
      expect({ code, killedBy }).toEqual({ code: 0, killedBy: null });
      expect(Date.now() - started).toBeLessThan(2000);
      expect(cli.stderr).not.toMatch(NO_STACK);
    });
  }
});

describe('signals while sessions are open and Redis does not answer', () => {
  it('SIGTERM exits 0 within --drain-ms (the drain does not wait past it for a reply that does not come)', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.destroy());
    const port = await freePort();
    const cli = running(startCli(['--port', String(port), '--upstream', redis.url, '--drain-ms', '2000']));
    await listening(cli);
    const user = client(port);
    expect(await user.ping()).toBe('PONG');
    redis.process!.kill('SIGSTOP');
    cleanups.push(async () => redis.process?.kill('SIGCONT'));
    void user.get('x').catch(() => undefined); // waiting for a reply that does not come
    const started = Date.now();
    cli.child.kill('SIGTERM');
    const { code } = await cli.exited;
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(4000);
  });
});

describe('Redis restarted without persistence', () => {
  it('registrations come back (every database) and events flow; a direct FLUSHALL still removes them', async () => {
    const redis = await startRedis(); // save '' and appendonly no: a restart loses everything
    cleanups.push(() => redis.destroy());
    const proxy = await new ProxyProcess(redis.url).start();
    cleanups.push(() => proxy.kill());
    const db0 = client(proxy.port);
    const db2 = client(proxy.port, { db: 2 });
    await db0.call('NOTIFYLIST.SET', 'r:*', 'r_events');
    await db0.call('NOTIFYLIST.SET', 's:*', 's_events');
    await db2.call('NOTIFYLIST.SET', 't:*', 't_events');
    // The proxy restores what it knows: wait until it knows all three (a write through a
    // connection other than the registering one emits its event only then).
    const before = client(redis.port);
    for (const [db, key, list] of [[0, 'r:0', 'r_events'], [0, 's:0', 's_events'], [2, 't:0', 't_events']] as const) {
      const other = client(proxy.port, { db });
      await before.select(db);
      await waitFor(async () => {
        await other.set(key, 'v');
        return before.exists(list);
      }, (n) => n === 1, 5000);
      expect(await before.exists(list)).toBe(1);
    }

    await redis.kill();
    await redis.start();
    const direct = client(redis.port);
    const fresh0 = client(proxy.port);
    const fresh2 = client(proxy.port, { db: 2 });
    // Until the proxy has loaded its library again, NOTIFYLIST.* and registered writes fail.
    const listed = await waitFor(() => (fresh0.call('NOTIFYLIST.LIST') as Promise<string[]>).catch(() => []), (l) => l.length === 4, 10_000, 50);
    expect(new Map(Object.entries(toPairs(listed)))).toEqual(new Map([['r:*', 'r_events'], ['s:*', 's_events']]));
    const l2 = await waitFor(() => fresh2.call('NOTIFYLIST.LIST'), (l) => (l as string[]).length === 2, 5000);
    expect(l2).toEqual(['t:*', 't_events']);
    expect(proxy.output.match(/restored 3 registration\(s\)/g)).toHaveLength(1);
    // A later write emits its event (through a new connection and through an old one).
    await fresh0.set('r:1', 'v');
    expect(await events(direct, 'r_events')).toEqual([{ key: 'r:1', op: 'set' }]);
    await db2.set('t:1', 'v');
    expect(await events(client(redis.port, { db: 2 }), 't_events')).toEqual([{ key: 't:1', op: 'set' }]);

    // FLUSHALL sent to Redis directly: no restart, so the registrations stay removed, also
    // after the proxy's control connections reconnect (same run_id) and reload.
    await direct.flushall();
    const ids = String(await direct.client('LIST'))
      .split('\n')
      .filter((line) => line.includes('name=notifylist-proxy:'))
      .map((line) => /\bid=(\d+)/.exec(line)![1]);
    expect(ids.length).toBe(2);
    for (const id of ids) await direct.client('KILL', 'ID', id);
    await waitFor(async () => String(await direct.client('LIST')), (list) => (list.match(/name=notifylist-proxy:/g) ?? []).length === 2, 5000);
    await direct.publish('notifylist:changes', '');
    for (let i = 0; i < 10; i++) {
      expect(await fresh0.call('NOTIFYLIST.LIST')).toEqual([]);
      expect(await fresh2.call('NOTIFYLIST.LIST')).toEqual([]);
      await sleep(150);
    }
    await fresh0.set('r:2', 'v');
    expect(await direct.exists('r_events')).toBe(0);
    expect(proxy.output.match(/restored \d+ registration\(s\)/g)).toHaveLength(1);
  }, 30_000);
});

function toPairs(flat: string[]): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) pairs[flat[i]] = flat[i + 1];
  return pairs;
}

describe('--version and --help', () => {
  it('--version prints the package version, exit 0', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    const result = await runCli(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`notifylist-proxy ${version}\n`);
    expect(result.stderr).toBe('');
  });

  it('--help names the new flags', async () => {
    const result = await runCli(['--help']);
    for (const flag of ['--connect-timeout-ms', '--uninstall', '--version', 'NOTIFYLIST_CONNECT_TIMEOUT_MS']) expect(result.stdout).toContain(flag);
  });
});

describe('--uninstall', () => {
  it('removes the library and the internal keys of every database, nothing else; refuses while a proxy runs', async () => {
    const redis = await startRedis({ config: { 'notify-keyspace-events': 'Kh' } });
    cleanups.push(() => redis.destroy());
    const direct = client(redis.port);
    const proxy = await new ProxyProcess(redis.url, ['--lease-ms', '300']).start();
    cleanups.push(() => proxy.kill());
    const db0 = client(proxy.port);
    const db3 = client(proxy.port, { db: 3 });
    await db0.call('NOTIFYLIST.SET', 'u:*', 'u_events');
    await db0.set('u:1', 'v', 'EX', 100);
    await db3.call('NOTIFYLIST.SET', 'w:*', 'w_events');
    await db3.set('w:1', 'v', 'EX', 100);
    await direct.set('notifylistother', 'user key'); // no ':' : not an internal key
    await waitFor(() => direct.exists('notifylist:reaper'), (n) => n === 1, 5000);

    const refused = await runCli(['--uninstall', '--upstream', redis.url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^notifylist-proxy: 2 proxy connection\(s\) are open on this Redis .*stop every proxy first\n$/);
    expect((await direct.call('FUNCTION', 'LIST')) as unknown[]).toHaveLength(1);

    await proxy.stop();
    const flagsBefore = await direct.config('GET', 'notify-keyspace-events');
    const result = await runCli(['--uninstall', '--upstream', redis.url]);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('removed function library notifylist\n');
    // registry, expiry, stats (backfill is gone once done, the lease released at stop)
    expect(result.stdout).toMatch(/^db0: removed \d+ key\(s\): .*notifylist:registry/m);
    expect(result.stdout).toMatch(/^db3: removed \d+ key\(s\): .*notifylist:expiry/m);
    expect(result.stdout).toMatch(/notify-keyspace-events left as it is/);
    expect((await direct.call('FUNCTION', 'LIST')) as unknown[]).toEqual([]);
    for (let db = 0; db < 16; db++) {
      await direct.select(db);
      expect(await direct.keys('notifylist:*'), `db${db}`).toEqual([]);
    }
    await direct.select(0);
    // The users' keys and event lists stay, and so do the notification flags.
    expect(await direct.get('notifylistother')).toBe('user key');
    expect(await direct.exists('u:1', 'u_events')).toBe(2);
    expect(await direct.config('GET', 'notify-keyspace-events')).toEqual(flagsBefore);

    const again = await runCli(['--uninstall', '--upstream', redis.url]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('no function library notifylist\n');
    expect(again.stdout).toContain('removed 0 key(s)');
  }, 30_000);

  it('a prefix with glob characters matches only itself', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.destroy());
    const direct = client(redis.port);
    await direct.set('a*b:registry', 'x');
    await direct.set('axxb:registry', 'user');
    const result = await runCli(['--uninstall', '--upstream', redis.url, '--prefix', 'a*b:']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('db0: removed 1 key(s): a*b:registry\n');
    expect(await direct.get('axxb:registry')).toBe('user');
  });

  it('an unreachable Redis: one line, exit 1', async () => {
    const closed = await freePort();
    const result = await runCli(['--uninstall', '--upstream', `redis://127.0.0.1:${closed}`]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`^notifylist-proxy: cannot reach Redis at 127\\.0\\.0\\.1:${closed}: .*ECONNREFUSED.*\\n$`));
  });
});

describe('--prefix', () => {
  it.each([['é:'], [''], ['a\tb'], ['\u00ff']])('%j is refused with a ConfigError', (prefix) => {
    expect(() => parseConfig(['--prefix', prefix], {})).toThrow(ConfigError);
    expect(() => parseConfig(['--prefix', prefix], {})).toThrow(/--prefix must be non-empty printable ASCII/);
  });

  it('a non-ASCII prefix through the CLI: one line, exit 1', async () => {
    const result = await runCli(['--port', String(await freePort()), '--prefix', 'é:']);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('notifylist-proxy: --prefix must be non-empty printable ASCII (bytes 0x20-0x7e), got "é:"\n');
  });

  it('a non-default prefix (with glob characters): events, change messages and internal keys use it', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.destroy());
    const direct = client(redis.port);
    const proxy = await startTestProxy(redis, ['--prefix', "my[p]'*:"]);
    cleanups.push(() => proxy.close());
    const other = await startTestProxy(redis, ['--prefix', "my[p]'*:"]);
    cleanups.push(() => other.close());
    const earlier = client(other.port);
    await earlier.ping();
    const registering = client(proxy.port);
    expect(await registering.call('NOTIFYLIST.SET', 'p:*', 'p_events')).toBe('OK');
    // The other proxy learned of it on its prefixed channel before the OK (registration barrier).
    expect(other.controlPlane.registry.all.hasAny('p:1')).toBe(true);
    await earlier.set('p:1', 'v', 'PX', 200);
    const list = await waitFor(() => events(direct, 'p_events'), (l) => l.length === 2, 5000);
    expect(list).toEqual([{ key: 'p:1', op: 'set' }, { key: 'p:1', op: 'expired' }]);
    expect(await direct.hkeys("my[p]'*:registry")).toEqual(['p:*']);
    expect(await registering.call('NOTIFYLIST.LIST')).toEqual(['p:*', 'p_events']);
    expect(await direct.exists('notifylist:registry')).toBe(0);
  });
});
