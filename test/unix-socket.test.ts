// Unix sockets (issue "Production Redis", part 3): --upstream unix:///path (with ?db=N and user and
// password as for redis://) and --unixsocket / --unixsocketperm for clients, as Redis names them.
// The transparency differential and the seed scenario run over Unix sockets too
// (transparency-unix.test.ts, expired-events-unix.test.ts).
import { execFile } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/index.js';
import { listeningMessage, runCli, startCli, stopCli } from './helpers/cli.js';
import { startProxyWith } from './helpers/proxy.js';
import { command, RawClient } from './helpers/raw-client.js';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

const run = promisify(execFile);
let redis: RedisServer;
let direct: Redis;

beforeAll(async () => {
  redis = await startRedis({ unixSocket: true, config: { requirepass: 'sockpw' } });
  direct = new Redis(redis.port, { password: 'sockpw' });
});

afterAll(async () => {
  direct?.disconnect();
  await redis?.destroy();
});

describe('Unix sockets', () => {
  it('--upstream unix://:password@/path?db=N: sessions start in db N, the control plane authenticates, events flow', async () => {
    const socket = join(redis.dir, 'p1.sock');
    const proxy = await startProxyWith(['--port', '0', '--unixsocket', socket, '--upstream', `unix://:sockpw@${redis.socketPath}?db=3`, '--lease-ms', '500']);
    try {
      const client = new Redis({ path: socket, password: 'sockpw' });
      expect(await client.call('NOTIFYLIST.SET', 'x:*', 'x_events')).toBe('OK');
      expect(await client.set('x:1', 'v', 'PX', 200)).toBe('OK');
      await direct.select(3);
      expect(await direct.get('x:1')).toBe('v');
      const events = await waitFor(() => direct.lrange('x_events', 0, -1), (list) => list.length === 2, 5000);
      expect(events).toEqual(['{"key":"x:1","op":"set"}', '{"key":"x:1","op":"expired"}']);
      // The proxy's connections come over the socket (Redis shows them with addr=<path>:0).
      const list = String(await direct.client('LIST'));
      for (const name of ['notifylist-proxy:control', 'notifylist-proxy:events']) {
        expect(list).toMatch(new RegExp(`addr=\\S*redis\\.sock:0 laddr=\\S+ fd=\\d+ name=${name} `));
      }
      expect(list).toMatch(/addr=\S*redis\.sock:0 laddr=\S+ fd=\d+ name=.* db=3 .*cmd=fcall /);
      client.disconnect();
    } finally {
      await direct.select(0);
      await proxy.close();
    }
  });

  it('a user in the URL: unix://user:password@/path', async () => {
    await direct.call('ACL', 'SETUSER', 'sockuser', 'on', '>userpw', '~*', '&*', '+@all');
    const proxy = await startProxyWith(['--port', String(await freePort()), '--upstream', `unix://sockuser:userpw@${redis.socketPath}`]);
    try {
      const client = new Redis({ port: proxy.port, username: 'sockuser', password: 'userpw' });
      expect(await client.call('NOTIFYLIST.SET', 'y:*', 'y_events')).toBe('OK');
      expect(String(await direct.client('LIST'))).toMatch(/sock:0 .* name=notifylist-proxy:control .*user=sockuser/);
      client.disconnect();
    } finally {
      await proxy.close();
      await direct.call('ACL', 'DELUSER', 'sockuser');
    }
  });

  it('--unixsocket with --unixsocketperm 700: the socket has that mode; a stale socket file is replaced; redis-cli -s works', async () => {
    const socket = join(redis.dir, 'p2.sock');
    writeFileSync(socket, 'left over by an earlier run');
    const cli = startCli(['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--upstream', `unix://:sockpw@${redis.socketPath}?db=1`]);
    try {
      const line = await listeningMessage(cli);
      expect(line).toBe(`notifylist-proxy listening on unix ${socket}, upstream unix://${redis.socketPath}?db=1`);
      expect(line).not.toContain('sockpw');
      expect(statSync(socket).isSocket()).toBe(true);
      expect(statSync(socket).mode & 0o777).toBe(0o700);
      const { stdout } = await run('redis-cli', ['-s', socket, '-a', 'sockpw', '--no-auth-warning', 'SET', 'cli:1', 'v']);
      expect(stdout).toBe('OK\n');
      await direct.select(1);
      expect(await direct.get('cli:1')).toBe('v');
    } finally {
      await direct.select(0);
      expect(await stopCli(cli)).toBe(0);
    }
  });

  it('a Unix socket listener next to the TCP one: the same proxy on both', async () => {
    const socket = join(redis.dir, 'p3.sock');
    const proxy = await startProxyWith(['--port', String(await freePort()), '--unixsocket', socket, '--upstream', `unix://:sockpw@${redis.socketPath}`]);
    try {
      const viaSocket = await RawClient.connect({ path: socket });
      const viaTcp = await RawClient.connect(proxy.port);
      viaSocket.send(Buffer.concat([command('AUTH', 'sockpw'), command('SET', 'both', '1')]));
      expect((await viaSocket.replies(2)).toString()).toBe('+OK\r\n+OK\r\n');
      viaTcp.send(Buffer.concat([command('AUTH', 'sockpw'), command('GET', 'both')]));
      expect((await viaTcp.replies(2)).toString()).toBe('+OK\r\n$1\r\n1\r\n');
      viaSocket.close();
      viaTcp.close();
    } finally {
      await proxy.close();
    }
    expect(existsSync(socket)).toBe(false); // removed when the listener closes
  });

  it('an unreachable socket path: one line at start, exit 1', async () => {
    const missing = join(redis.dir, 'none.sock');
    const result = await runCli(['--port', String(await freePort()), '--upstream', `unix://${missing}`]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`^notifylist-proxy: cannot reach Redis at ${missing.replace(/[.]/g, '\\.')}: .*ENOENT.*\\n$`));
  });

  it.each([
    ['unix://tmp/redis.sock', /^invalid unix upstream URL \(expected unix:\/\/\[user\[:password\]@\]\/path\[\?db=N\]\)$/],
    ['unix:///tmp/redis.sock?db=x', /^invalid database 'x' in upstream URL$/],
    ['unix:///tmp/redis.sock?foo=1', /^unknown parameter 'foo' in unix upstream URL \(only db\)$/],
  ])('a bad unix URL %j: a ConfigError that does not echo the URL', (url, message) => {
    expect(() => parseConfig(['--upstream', url], {})).toThrow(ConfigError);
    expect(() => parseConfig(['--upstream', url], {})).toThrow(message);
  });

  it('--unixsocketperm needs --unixsocket and an octal mode; --sentinel does not go with unix://', () => {
    expect(() => parseConfig(['--unixsocketperm', '700'], {})).toThrow('--unixsocketperm needs --unixsocket');
    expect(() => parseConfig(['--unixsocket', '/tmp/x.sock', '--unixsocketperm', '9'], {})).toThrow("--unixsocketperm must be an octal file mode such as 700, got '9'");
    expect(() => parseConfig(['--upstream', 'unix:///tmp/r.sock', '--sentinel', '127.0.0.1:26379', '--sentinel-master', 'm'], {})).toThrow('--sentinel does not go with a unix:// upstream');
  });
});
