// Graceful drain of the built CLI (a child process, real signals): at SIGTERM, a client with a
// pipeline in flight gets the reply to every request Redis ran, then its connection closes; an
// idle client is closed at once; a blocked BLPOP, a subscriber and a MULTI not yet EXECed are
// closed last, without any byte of the proxy's own (nothing is popped, the transaction does not
// run); new connections are refused meanwhile; the exit is 0 and within --drain-ms, also with a
// client that never reads.
import { connect, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCli, stopCli, type Cli } from './helpers/cli.js';
import { command, RawClient, replyEnd } from './helpers/raw-client.js';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

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

async function startProxy(extra: string[]): Promise<{ cli: Cli; port: number }> {
  const port = await freePort();
  const cli = startCli(['--port', String(port), '--upstream', redis.url, ...extra]);
  running.push(cli);
  await waitFor(async () => cli.stdout, (out) => out.includes('listening') || cli.child.exitCode !== null, 10_000);
  expect(cli.stdout).toContain('listening');
  return { cli, port };
}

/** When the client's connection closed (ms since the epoch). */
function closedAt(client: RawClient): Promise<number> {
  return new Promise((resolve) => (client.closed ? resolve(Date.now()) : client.socket.once('close', () => resolve(Date.now()))));
}

function countReplies(bytes: Buffer): { count: number; rest: number } {
  let offset = 0;
  let count = 0;
  for (;;) {
    const end = replyEnd(bytes, offset);
    if (end === -1) return { count, rest: bytes.length - offset };
    offset = end;
    count++;
  }
}

describe('SIGTERM drains', () => {
  it('replies to what was forwarded, idle first, blocked / subscribed / MULTI last, refuses new clients, exit 0 within --drain-ms', async () => {
    await direct.del('drain:counter', 'drain:list', 'drain:multi');
    const { cli, port } = await startProxy(['--drain-ms', '4000']);
    const idle = await RawClient.connect(port);
    idle.send(command('PING'));
    await idle.replies(1);
    const blocked = await RawClient.connect(port);
    blocked.send(command('BLPOP', 'drain:list', '5'));
    const subscriber = await RawClient.connect(port);
    subscriber.send(command('SUBSCRIBE', 'drain:channel'));
    await subscriber.replies(1);
    // A RESP3 subscriber: its marker's reply looks like anyone's, yet it is closed last too.
    const subscriber3 = await RawClient.connect(port);
    subscriber3.send(command('HELLO', '3'));
    await subscriber3.replies(1);
    subscriber3.send(command('SUBSCRIBE', 'drain:channel'));
    await subscriber3.replies(1);
    const multi = await RawClient.connect(port);
    multi.send(Buffer.concat([command('MULTI'), command('SET', 'drain:multi', '1')]));
    expect((await multi.replies(2)).toString()).toBe('+OK\r\n+QUEUED\r\n');
    // A pipeline of many requests, in flight when the signal comes (its first reply is back).
    const pipeline = await RawClient.connect(port);
    const requests = 200_000;
    pipeline.send(Buffer.concat(Array.from({ length: requests }, () => command('INCR', 'drain:counter'))));
    await waitFor(async () => pipeline.pending().length, (n) => n > 0, 5000);
    const closes = { idle: closedAt(idle), blocked: closedAt(blocked), subscriber: closedAt(subscriber), subscriber3: closedAt(subscriber3), multi: closedAt(multi), pipeline: closedAt(pipeline) };
    const signalled = Date.now();
    cli.child.kill('SIGTERM');
    const exited = cli.exited.then((result) => ({ ...result, at: Date.now() }));

    // Stopped accepting: a new connection is refused.
    await closes.idle;
    const refused = await new Promise<string>((resolve) => {
      const socket: Socket = connect({ port, host: '127.0.0.1' });
      socket.once('connect', () => (socket.destroy(), resolve('connected')));
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');

    const at = Object.fromEntries(await Promise.all(Object.entries(closes).map(async ([name, p]) => [name, (await p) - signalled])));
    const { code, at: exitAt } = await exited;
    expect(code).toBe(0);
    expect(exitAt - signalled).toBeLessThan(4000 + 500);

    // Every INCR that Redis ran got its reply, and the stream ends on a whole reply.
    const received = await pipeline.untilClosed(100);
    const { count, rest } = countReplies(Buffer.concat([Buffer.from(pipeline.pending(), 'latin1'), received]));
    expect(rest).toBe(0);
    expect(count).toBe(Number(await direct.get('drain:counter')));
    expect(count).toBeGreaterThan(0);

    // Closed last, and none of the proxy's own bytes (its drain marker) reached them.
    expect(await blocked.untilClosed(100)).toEqual(Buffer.alloc(0));
    expect(await subscriber.untilClosed(100)).toEqual(Buffer.alloc(0));
    expect(await subscriber3.untilClosed(100)).toEqual(Buffer.alloc(0));
    expect(await multi.untilClosed(100)).toEqual(Buffer.alloc(0));
    for (const last of ['blocked', 'subscriber', 'subscriber3', 'multi']) {
      expect(at[last]).toBeGreaterThanOrEqual(at.idle + 100);
      expect(at[last]).toBeGreaterThanOrEqual(at.pipeline);
    }
    // The BLPOP was not served after its client was gone, and the transaction never ran.
    await direct.rpush('drain:list', 'x');
    await sleep(100);
    expect(await direct.lrange('drain:list', 0, -1)).toEqual(['x']);
    expect(await direct.exists('drain:multi')).toBe(0);
    expect(cli.stderr).not.toMatch(/Error|at /);
  }, 30_000);

  it('--drain-ms bounds the drain: a client that never reads does not hold the exit past it', async () => {
    await direct.set('drain:big', 'v'.repeat(1 << 20));
    const { cli, port } = await startProxy(['--drain-ms', '1500']);
    const stuck = connect({ port, host: '127.0.0.1' });
    await new Promise((resolve) => stuck.once('connect', resolve));
    stuck.pause(); // never reads: the proxy's writes to it back up
    stuck.on('error', () => undefined);
    stuck.write(Buffer.concat(Array.from({ length: 200 }, () => command('GET', 'drain:big'))));
    await sleep(500);
    const signalled = Date.now();
    cli.child.kill('SIGTERM');
    const { code } = await cli.exited;
    const took = Date.now() - signalled;
    expect(code).toBe(0);
    expect(took).toBeLessThan(1500 + 400);
    expect(took).toBeGreaterThan(1000); // it did wait for the client, up to the bound
    expect(cli.stdout).toContain('still open');
    stuck.destroy();
  }, 20_000);

  it('a second signal exits at once', async () => {
    const { cli, port } = await startProxy(['--drain-ms', '10000']);
    const blocked = await RawClient.connect(port);
    blocked.send(command('BLPOP', 'drain:never', '0'));
    const stuck = connect({ port, host: '127.0.0.1' });
    stuck.pause();
    stuck.on('error', () => undefined);
    await sleep(100);
    const signalled = Date.now();
    cli.child.kill('SIGTERM');
    await sleep(300);
    cli.child.kill('SIGTERM');
    expect((await cli.exited).code).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(2000);
    stuck.destroy();
  }, 20_000);
});
