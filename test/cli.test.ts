// The command line (dist/cli.js in child processes): usage, flag errors, the listening line,
// environment variables, an unreachable upstream, clean exits on SIGTERM / SIGINT, and an upstream
// URL with a password (control plane only: clients still authenticate themselves).
// Not covered: the start-up refusal of Redis older than 7.0 (no such server can be started here).
import { connect, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listening, logLines, startCli, runCli, stopCli, type Cli } from './helpers/cli.js';
import { command, RawClient } from './helpers/raw-client.js';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

const NO_STACK = /\n\s+at |Error:|node:internal/;

let redis: RedisServer;
let direct: Redis;
const running: Cli[] = [];

beforeAll(async () => {
  redis = await startRedis();
  direct = new Redis(redis.port);
});

afterAll(async () => {
  for (const cli of running) await stopCli(cli, 'SIGKILL');
  direct?.disconnect();
  await redis?.destroy();
});

describe('flags', () => {
  it('--help prints the usage on stdout and exits 0', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: notifylist-proxy \[options\]/);
    for (const flag of ['--port', '--bind', '--upstream', '--prefix', '--max-bulk-length', '--max-multibulk-length', '--max-inline-length', '--help']) {
      expect(result.stdout).toContain(flag);
    }
    expect(result.stdout).toContain('NOTIFYLIST_PORT');
    expect(result.stderr).toBe('');
    expect((await runCli(['-h'])).stdout).toBe(result.stdout);
  });

  it('an unknown flag: one line on stderr, exit 1', async () => {
    const result = await runCli(['--no-such-flag']);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe("notifylist-proxy: unknown option '--no-such-flag' (see --help)\n");
  });

  it.each([
    [['--port'], /^notifylist-proxy: option --port needs a value\n$/],
    [['--port', 'abc'], /^notifylist-proxy: --port must be an integer >= 0, got 'abc'\n$/],
    [['--port', '70000'], /^notifylist-proxy: --port must be at most 65535\n$/],
    [['--upstream', 'http://x'], /^notifylist-proxy: unsupported upstream URL scheme 'http:' \(redis:\/\/, rediss:\/\/ or unix:\/\/\)\n$/],
    [['--upstream', 'not a url'], /^notifylist-proxy: invalid upstream URL 'not a url'/],
    [['--max-bulk-length', '0'], /^notifylist-proxy: --max-bulk-length must be an integer >= 1, got '0'\n$/],
  ])('bad value %j: one line on stderr, exit 1', async (args, message) => {
    const result = await runCli(args as string[]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(message as RegExp);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  });

  it('prints the listening line once, with its address and the upstream', async () => {
    const port = await freePort();
    const cli = startCli(['--port', String(port), '--upstream', `${redis.url}/0`]);
    running.push(cli);
    expect(await listening(cli)).toBe(port);
    expect(logLines(cli).map(({ level, event, msg }) => ({ level, event, msg }))).toEqual([
      { level: 'info', event: 'listening', msg: `notifylist-proxy listening on 127.0.0.1:${port}, upstream redis://127.0.0.1:${redis.port}/0` },
    ]);
    const client = new Redis(port);
    expect(await client.ping()).toBe('PONG');
    client.disconnect();
    expect(await stopCli(cli)).toBe(0);
    // Printed exactly once over the whole life of the process.
    expect(cli.stdout.match(/listening on/g)).toHaveLength(1);
    expect(cli.stderr).not.toMatch(NO_STACK);
  });

  it('NOTIFYLIST_PORT and NOTIFYLIST_UPSTREAM are used, and flags override them', async () => {
    const port = await freePort();
    const cli = startCli([], { NOTIFYLIST_PORT: String(port), NOTIFYLIST_UPSTREAM: `redis://127.0.0.1:${redis.port}/3` });
    running.push(cli);
    expect(await listening(cli)).toBe(port);
    expect(cli.stdout).toContain(`upstream redis://127.0.0.1:${redis.port}/3`);
    // The db of the URL is where client sessions start.
    const client = new Redis(port);
    await client.set('cli:env', 'db3');
    const db3 = new Redis(redis.port, { db: 3 });
    expect(await db3.get('cli:env')).toBe('db3');
    db3.disconnect();
    client.disconnect();
    expect(await stopCli(cli)).toBe(0);

    const other = await freePort();
    const overridden = startCli(['--port', String(other)], { NOTIFYLIST_PORT: String(port), NOTIFYLIST_UPSTREAM: redis.url });
    running.push(overridden);
    expect(await listening(overridden)).toBe(other);
    expect(await stopCli(overridden)).toBe(0);
  });

  it('--upstream to a closed port: one clear line on stderr, exit 1, no stack trace', async () => {
    const closed = await freePort();
    const started = Date.now();
    const result = await runCli(['--port', String(await freePort()), '--upstream', `redis://127.0.0.1:${closed}`]);
    expect(result.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(8000);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(new RegExp(`^notifylist-proxy: cannot reach Redis at 127\\.0\\.0\\.1:${closed}\\b.*\\n$`));
    // The cause, not just "Connection is closed.".
    expect(result.stderr).toContain('ECONNREFUSED');
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).not.toMatch(NO_STACK);
  });

  it('a port already in use: one line on stderr, exit 1, no stack trace', async () => {
    const result = await runCli(['--port', String(redis.port), '--upstream', redis.url]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('EADDRINUSE');
    expect(result.stderr.trimEnd().split('\n').filter((l) => !l.includes('reaper'))).toHaveLength(1);
    expect(result.stderr).not.toMatch(NO_STACK);
  });
});

describe('signals', () => {
  /** Opens a client whose close we watch: ended = FIN received, error = reset or other error. */
  const watched = (port: number): Promise<{ socket: Socket; state: { ended: boolean; error: string | null; closed: boolean } }> =>
    new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      const state = { ended: false, error: null as string | null, closed: false };
      socket.on('end', () => (state.ended = true));
      socket.on('error', (e: NodeJS.ErrnoException) => (state.error = e.code ?? e.message));
      socket.on('close', () => (state.closed = true));
      socket.once('connect', () => resolve({ socket, state }));
      socket.once('error', reject);
    });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal}: exit code 0, connected clients are closed cleanly`, async () => {
      const port = await freePort();
      const cli = startCli(['--port', String(port), '--upstream', redis.url]);
      running.push(cli);
      await listening(cli);
      const idle = await watched(port);
      const blocked = await watched(port);
      blocked.socket.write(command('BLPOP', 'cli:never', '0'));
      const busy = await RawClient.connect(port);
      busy.send(command('PING'));
      expect((await busy.replies(1)).toString()).toBe('+PONG\r\n');
      await waitFor(async () => (await direct.client('LIST')) as string, (l) => l.includes('cmd=blpop'), 5000);
      const sessionsBefore = ((await direct.client('LIST')) as string).trim().split('\n').length;

      const started = Date.now();
      cli.child.kill(signal);
      const { code, signal: killedBy } = await cli.exited;
      expect(code).toBe(0);
      expect(killedBy).toBe(null);
      expect(Date.now() - started).toBeLessThan(4000);
      await waitFor(async () => idle.state.closed && blocked.state.closed && busy.closed, (ok) => ok, 5000);
      for (const { state } of [idle, blocked]) {
        expect(state).toEqual({ ended: true, error: null, closed: true });
      }
      expect(busy.closed).toBe(true);
      // Their upstream connections and the control plane's are gone from Redis too.
      const after = await waitFor(
        async () => ((await direct.client('LIST')) as string).trim().split('\n').length,
        (n) => n === 1,
        5000,
      );
      expect(sessionsBefore).toBeGreaterThanOrEqual(6);
      expect(after).toBe(1);
      expect(cli.stderr).not.toMatch(NO_STACK);
      // The port is free again.
      const again = startCli(['--port', String(port), '--upstream', redis.url]);
      running.push(again);
      expect(await listening(again)).toBe(port);
      expect(await stopCli(again, signal)).toBe(0);
    });
  }
});

describe('upstream URL with a password', () => {
  let secured: RedisServer;
  beforeAll(async () => {
    secured = await startRedis({ config: { requirepass: 'secret' } });
  });
  afterAll(async () => {
    await secured?.destroy();
  });

  it('the control plane authenticates with it; clients must still AUTH themselves', async () => {
    const port = await freePort();
    const cli = startCli(['--port', String(port), '--upstream', `redis://:secret@127.0.0.1:${secured.port}`, '--lease-ms', '500']);
    running.push(cli);
    await listening(cli);
    // The password never shows in the listening line.
    expect(cli.stdout).not.toContain('secret');

    const raw = await RawClient.connect(port);
    raw.send(Buffer.concat([command('PING'), command('NOTIFYLIST.SET', 'pw:*', 'pw_events'), command('SET', 'pw:1', 'x')]));
    expect((await raw.replies(3)).toString()).toBe('-NOAUTH Authentication required.\r\n'.repeat(3));
    raw.send(Buffer.concat([command('AUTH', 'secret'), command('NOTIFYLIST.SET', 'pw:*', 'pw_events'), command('SET', 'pw:1', 'x'), command('PEXPIRE', 'pw:1', '300')]));
    expect((await raw.replies(4)).toString()).toBe('+OK\r\n+OK\r\n+OK\r\n:1\r\n');
    // Expiry events need the control plane (keyevent subscription / reaper): it is authenticated.
    const owner = new Redis(secured.port, { password: 'secret' });
    const events = await waitFor(
      () => owner.lrange('pw_events', 0, -1),
      (list) => list.length >= 2,
      5000,
    );
    expect(events).toEqual(['{"key":"pw:1","op":"set"}', '{"key":"pw:1","op":"expired"}']);
    // The control connections are named; the client's session is not authenticated by the proxy.
    const list = (await owner.client('LIST')) as string;
    expect(list).toContain('name=notifylist-proxy:control');
    raw.close();
    owner.disconnect();
    expect(await stopCli(cli)).toBe(0);
  });

  it('with a database in the URL: after AUTH the client works in that database; nothing ever lands in db 0', async () => {
    const port = await freePort();
    const cli = startCli(['--port', String(port), '--upstream', `redis://:secret@127.0.0.1:${secured.port}/2`]);
    running.push(cli);
    await listening(cli);
    const raw = await RawClient.connect(port);
    raw.send(Buffer.concat([command('AUTH', 'secret'), command('SET', 'pwdb:k', 'v'), command('GET', 'pwdb:k')]));
    const owner = new Redis(secured.port, { password: 'secret' });
    try {
      const replies = await raw.replies(3).then(
        (r) => r.toString(),
        () => raw.untilClosed(100).then((r) => r.toString()),
      );
      expect(await owner.exists('pwdb:k')).toBe(0); // db 0: never
      expect(replies).toBe('+OK\r\n+OK\r\n$1\r\nv\r\n');
      await owner.select(2);
      expect(await owner.get('pwdb:k')).toBe('v');
    } finally {
      raw.close();
      owner.disconnect();
      await stopCli(cli);
    }
  });

  it('a wrong password in the URL: one line on stderr, exit 1', async () => {
    const result = await runCli(['--port', String(await freePort()), '--upstream', `redis://:wrong@127.0.0.1:${secured.port}`]);
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/WRONGPASS|NOAUTH|invalid/i);
    expect(result.stderr).not.toMatch(NO_STACK);
  });

  it('no password in the URL against a requirepass server: one line on stderr, exit 1', async () => {
    const result = await runCli(['--port', String(await freePort()), '--upstream', `redis://127.0.0.1:${secured.port}`]);
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/NOAUTH/);
    expect(result.stderr).not.toMatch(NO_STACK);
  });
});
