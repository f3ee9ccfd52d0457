// Guarantee 6 (robustness): malformed input, oversized frames, slow clients and a lost upstream
// never crash the proxy and never leak memory without bound; the offending client gets Redis's own
// `-ERR Protocol error: ...` after the replies to everything valid before it, and only its
// connection closes. Wherever Redis's limits are the same, the bytes are compared with what Redis
// itself answers to the same bytes.
import fc from 'fast-check';
import { connect } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { keepLastReplies } from '../src/proxy/last-replies.js';
import { converse, rssOf, splitReplies, type Conversation } from './helpers/conversation.js';
import { ProxyProcess, startTestProxy } from './helpers/proxy.js';
import { command, RawClient, replyEnd } from './helpers/raw-client.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const LIMITED_FLAGS = ['--max-bulk-length', '1024', '--max-inline-length', '1024', '--max-multibulk-length', '100'];

let redis: RedisServer;
let proxy: RunningProxy;
let limited: RunningProxy;
let direct: Redis;
let bystander: Redis;
let limitedBystander: Redis;

beforeAll(async () => {
  redis = await startRedis();
  proxy = await startTestProxy(redis);
  limited = await startTestProxy(redis, LIMITED_FLAGS);
  direct = new Redis(redis.port);
  bystander = new Redis(proxy.port);
  limitedBystander = new Redis(limited.port);
  // Every SET is rewritten into an FCALL, so the valid commands before a bad frame exercise it.
  expect(await bystander.call('NOTIFYLIST.SET', '*', 'events')).toBe('OK');
  await proxy.controlPlane.reload();
  await limited.controlPlane.reload();
});

afterAll(async () => {
  bystander?.disconnect();
  limitedBystander?.disconnect();
  direct?.disconnect();
  await limited?.close();
  await proxy?.close();
  await redis?.destroy();
});

const PREFIX = Buffer.concat([Buffer.from('PING\r\n'), command('SET', 'bi:k', 'v'), command('GET', 'bi:k')]);
const PREFIX_REPLIES = '+PONG\r\n+OK\r\n$1\r\nv\r\n';
const A_70K = Buffer.alloc(70 * 1024, 'a');

/** HELLO's `id` differs between two connections; nothing else may. */
const normalise = (data: Buffer): string => data.toString('latin1').replace(/\$2\r\nid\r\n:\d+\r\n/g, '$2\r\nid\r\n:ID\r\n');

interface Case {
  name: string;
  /** Sent after PREFIX. */
  bytes: Buffer | string;
  /** Sent after a pause (cases where Redis waits for more before it can fail). */
  later?: Buffer;
  /** The error line expected after the prefix replies, or null: no error, connection stays open. */
  error: string | null;
  /** What else is expected after the prefix replies when there is no error. */
  replies?: string;
  /** Which proxy: the default one (compared with Redis directly) or the one with small limits. */
  limited?: boolean;
}

const CORPUS: Case[] = [
  { name: 'multibulk count not a number', bytes: '*x\r\n', error: 'invalid multibulk length' },
  { name: 'multibulk count with a leading zero', bytes: '*01\r\n', error: 'invalid multibulk length' },
  { name: 'multibulk count with a plus sign', bytes: '*+1\r\n', error: 'invalid multibulk length' },
  { name: 'multibulk count above INT_MAX', bytes: '*2147483648\r\n', error: 'invalid multibulk length' },
  { name: 'bulk length not a number', bytes: '*1\r\n$x\r\n', error: 'invalid bulk length' },
  { name: 'bulk length with a leading zero', bytes: '*1\r\n$04\r\nPING\r\n', error: 'invalid bulk length' },
  { name: 'bulk header without $', bytes: '*1\r\nfoo\r\n', error: "expected '$', got 'f'" },
  { name: 'bulk header that is a CR', bytes: '*1\r\n\r\n', error: "expected '$', got ' '" },
  { name: 'negative bulk length', bytes: '*1\r\n$-5\r\n', error: 'invalid bulk length' },
  { name: 'bulk length above proto-max-bulk-len', bytes: '*2\r\n$3\r\nGET\r\n$600000000\r\n', error: 'invalid bulk length' },
  { name: 'unbalanced double quotes', bytes: 'SET "a b\r\n', error: 'unbalanced quotes in request' },
  { name: 'closing quote followed by a non-space', bytes: 'SET "a"b c\r\n', error: 'unbalanced quotes in request' },
  { name: 'unbalanced single quotes', bytes: "SET 'a b\r\n", error: 'unbalanced quotes in request' },
  { name: '70 KB inline without a newline', bytes: A_70K, error: 'too big inline request' },
  { name: '* and 70 KB of digits', bytes: Buffer.concat([Buffer.from('*'), Buffer.alloc(70 * 1024, '1')]), error: 'too big mbulk count string' },
  {
    name: 'bulk header of 70 KB',
    bytes: Buffer.concat([Buffer.from('*1\r\n$'), Buffer.alloc(70 * 1024, '1')]),
    error: 'too big bulk count string',
  },
  { name: 'NUL in a multibulk count line', bytes: '*1\0\r\n', later: A_70K, error: 'too big mbulk count string' },
  { name: 'NUL in a bulk header line', bytes: '*1\r\n$4\0\r\nPING\r\n', later: A_70K, error: 'too big bulk count string' },
  { name: 'NUL in an inline request', bytes: 'GET a\0b\r\n', later: A_70K, error: 'too big inline request' },
  // Not errors, in Redis either: the proxy must agree byte for byte and keep the connection.
  { name: 'huge multibulk count (Redis 7.0 accepts up to INT_MAX)', bytes: '*2000000\r\n', error: null, replies: '' },
  { name: 'inline request starting with $', bytes: '$5\r\nhello\r\n', error: null },
  { name: 'CR without LF after a count (the byte after CR is skipped)', bytes: '*1\rx$4\r\nPING\r\n', error: null, replies: '+PONG\r\n' },
  { name: 'CR without LF inside an inline request', bytes: 'PING\rPING\r\n', error: null, replies: '$4\r\nPING\r\n' },
  { name: 'garbage instead of CRLF after bulk data', bytes: '*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n', error: null, replies: '+PONG\r\n+PONG\r\n' },
  { name: 'a lone CR at the end', bytes: 'PING\r', error: null, replies: '' },
  { name: 'empty requests', bytes: '*0\r\n*-1\r\n\r\n\n   \r\n*-100\r\nPING\r\n', error: null, replies: '+PONG\r\n' },
  // The proxy with small configured limits.
  { name: 'bulk length over --max-bulk-length', bytes: '*2\r\n$3\r\nGET\r\n$1025\r\n', error: 'invalid bulk length', limited: true },
  { name: 'multibulk count over --max-multibulk-length', bytes: '*101\r\n', error: 'invalid multibulk length', limited: true },
  { name: 'inline over --max-inline-length', bytes: Buffer.alloc(1100, 'a'), error: 'too big inline request', limited: true },
  {
    name: 'count line over --max-inline-length',
    bytes: Buffer.concat([Buffer.from('*'), Buffer.alloc(1100, '1')]),
    error: 'too big mbulk count string',
    limited: true,
  },
  { name: 'huge multibulk count over the limit', bytes: '*2000000\r\n', error: 'invalid multibulk length', limited: true },
];

async function talk(port: number, c: Case): Promise<Conversation> {
  const chunks: Array<Buffer | string> = [Buffer.concat([PREFIX, Buffer.from(c.bytes as string, 'latin1')])];
  if (c.later) chunks.push(c.later);
  return converse(port, chunks, { gapMs: c.later ? 300 : 0, idleMs: 400 });
}

describe('malformed frames', () => {
  for (const c of CORPUS) {
    it(c.name, async () => {
      const port = c.limited ? limited.port : proxy.port;
      const [viaProxy, viaRedis] = await Promise.all([talk(port, c), c.limited ? Promise.resolve(null) : talk(redis.port, c)]);
      const got = normalise(viaProxy.data);
      if (c.error !== null) {
        expect(got).toBe(`${PREFIX_REPLIES}-ERR Protocol error: ${c.error}\r\n`);
        expect(viaProxy.closed).toBe(true);
        expect(viaProxy.ended).toBe(true); // a clean close (FIN), not a reset
      } else {
        if (c.replies !== undefined) expect(got).toBe(PREFIX_REPLIES + c.replies);
        expect(viaProxy.closed).toBe(false);
      }
      if (viaRedis) {
        expect(got).toBe(normalise(viaRedis.data));
        expect(viaProxy.closed).toBe(viaRedis.closed);
      }
      // Everybody else is unaffected, and the proxy keeps serving.
      expect(await bystander.get('bi:k')).toBe('v');
      expect(await limitedBystander.ping()).toBe('PONG');
    });
  }

  it('a bad frame split over many small writes gives the same error', async () => {
    const bytes = Buffer.concat([PREFIX, Buffer.from('*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\nfoo\r\n')]);
    const chunks = [...bytes].map((b) => Buffer.from([b]));
    const result = await converse(proxy.port, chunks, { gapMs: 1 });
    expect(result.data.toString('latin1')).toBe(`${PREFIX_REPLIES}$-1\r\n-ERR Protocol error: expected '$', got 'f'\r\n`);
    expect(result.closed).toBe(true);
  });

  it('more input arriving after the bad frame does not stop the error reply', async () => {
    const result = await converse(proxy.port, [Buffer.concat([PREFIX, Buffer.from('*x\r\n')]), Buffer.alloc(256 * 1024, 'z')], { gapMs: 20 });
    expect(result.data.toString('latin1')).toBe(`${PREFIX_REPLIES}-ERR Protocol error: invalid multibulk length\r\n`);
    expect(result.closed).toBe(true);
  });

  it('other clients connected at the same time are unaffected (blocked, subscribed, in MULTI)', async () => {
    const blocked = new Redis(proxy.port);
    const subscriber = new Redis(proxy.port);
    const inMulti = await RawClient.connect(proxy.port);
    try {
      const popped = blocked.blpop('bi:queue', 0);
      const messages: string[] = [];
      subscriber.on('message', (_channel: string, message: string) => messages.push(message));
      await subscriber.subscribe('bi:channel');
      inMulti.send(Buffer.concat([command('MULTI'), command('SET', 'bi:m', '1')]));
      expect((await inMulti.replies(2)).toString()).toBe('+OK\r\n+QUEUED\r\n');
      // Many bad clients at once.
      const bad = await Promise.all(CORPUS.filter((c) => c.error !== null && !c.limited && !c.later).map((c) => talk(proxy.port, c)));
      for (const result of bad) expect(result.closed).toBe(true);
      inMulti.send(command('EXEC'));
      expect((await inMulti.replies(1)).toString()).toBe('*1\r\n+OK\r\n');
      await direct.rpush('bi:queue', 'job');
      expect(await popped).toEqual(['bi:queue', 'job']);
      await direct.publish('bi:channel', 'still here');
      await waitFor(async () => messages.length, (n) => n > 0, 5000);
      expect(messages).toEqual(['still here']);
    } finally {
      blocked.disconnect();
      subscriber.disconnect();
      inMulti.close();
    }
  });
});

describe('random bytes', () => {
  // Tokens that make interesting frames; keys are unique per connection (3 bytes, like `KEY`).
  const token = fc.constantFrom(
    '*', '$', '-', '0', '1', '2', '3', '4', '10', '\r', '\n', '\r\n', '\0', ' ', '"', "'", '\\', 'x', '\\x4', 'PING', 'ECHO',
    'GET', 'SET', 'KEY', 'v', 'EX', '100', 'NX', 'GET KEY\r\n', 'PING\r\n', '*1\r\n$4\r\nPING\r\n', '*3\r\n$3\r\nSET\r\n$3\r\nKEY\r\n$1\r\nv\r\n',
    '*2\r\n$3\r\nGET\r\n$3\r\nKEY\r\n', '*2\r\n$4\r\nECHO\r\n', '*1\r\n',
  );
  const piece = fc.oneof(
    { weight: 4, arbitrary: token.map((t) => Buffer.from(t, 'latin1')) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 12 }).map((a) => Buffer.from(a)) },
  );
  const input = fc.record({
    // Half the inputs start as a multibulk request.
    star: fc.boolean(),
    pieces: fc.array(piece, { minLength: 1, maxLength: 40 }),
    cuts: fc.array(fc.nat(), { maxLength: 3 }),
  });
  let counter = 0;
  const keyName = (): string => 'k' + (counter++ % 1296).toString(36).padStart(2, '0');

  let twin: RedisServer;
  beforeAll(async () => {
    // A second, identical Redis reached directly: the oracle for the same byte stream.
    twin = await startRedis();
  });
  afterAll(async () => {
    await twin?.destroy();
  });

  it('never crash the proxy; every connection gets exactly what Redis directly gives it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(input, { minLength: 25, maxLength: 25 }), async (batch) => {
        await Promise.all(
          batch.map(async ({ star, pieces, cuts }) => {
            const key = keyName();
            const text = (star ? '*' : '') + Buffer.concat(pieces).toString('latin1');
            const bytes = Buffer.from(text.replaceAll('KEY', key), 'latin1');
            const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
            const chunks: Buffer[] = [];
            let from = 0;
            for (const p of [...points, bytes.length]) {
              chunks.push(bytes.subarray(from, p));
              from = p;
            }
            const nonEmpty = chunks.filter((c) => c.length > 0);
            const [p, d] = await Promise.all([
              converse(proxy.port, nonEmpty, { gapMs: 2, idleMs: 250 }),
              converse(twin.port, nonEmpty, { gapMs: 2, idleMs: 250 }),
            ]);
            const { rest } = splitReplies(p.data, replyEnd);
            const context = JSON.stringify(bytes.toString('latin1'));
            expect(rest, context).toBe('');
            expect(p.data.toString('latin1'), context).toBe(d.data.toString('latin1'));
            expect(p.closed, context).toBe(d.closed);
            if (p.closed) expect(p.data.toString('latin1'), context).toMatch(/-ERR Protocol error: [^\r\n]*\r\n$/);
          }),
        );
      }),
      // No shrinking: each run takes hundreds of ms, and the counterexample (with its seed) is printed.
      { numRuns: 12, endOnFailure: true },
    );
    // A normal client still works.
    const client = new Redis(proxy.port);
    expect(await client.set('after-random', 'ok')).toBe('OK');
    expect(await client.get('after-random')).toBe('ok');
    client.disconnect();
  });
});

describe('memory stays bounded (proxy in a child process)', () => {
  let child: ProxyProcess;
  let childRedis: RedisServer;

  beforeAll(async () => {
    childRedis = await startRedis();
    child = await new ProxyProcess(childRedis.url).start();
    const admin = new Redis(child.port);
    await admin.call('NOTIFYLIST.SET', 'big:*', 'bigevents');
    admin.disconnect();
  });
  afterAll(async () => {
    await child?.stop();
    await childRedis?.destroy();
  });

  const garbageRound = async (connections: number): Promise<void> => {
    const inputs = [
      '*x\r\n',
      Buffer.concat([Buffer.from('*1\r\n$'), Buffer.alloc(66 * 1024, '7')]),
      Buffer.alloc(66 * 1024, 'g'),
      '*3\r\n$3\r\nSET\r\n$5\r\nbig:g\r\n$100000\r\nshort', // incomplete, left hanging then dropped
      'GET a\0b\r\n',
      '*1000\r\n$3\r\nGET\r\n',
      'SET "x\r\n',
    ];
    for (let done = 0; done < connections; done += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => converse(child.port, [inputs[(done + i) % inputs.length]], { idleMs: 100 })),
      );
    }
  };

  const trafficRound = async (megabytes: number): Promise<void> => {
    const value = Buffer.alloc(1024 * 1024, 'v');
    const perClient = megabytes / 2 / 4; // half up (SET), half down (GET), 4 clients
    await Promise.all(
      Array.from({ length: 4 }, async (_, c) => {
        const client = new Redis(child.port);
        for (let i = 0; i < perClient; i++) {
          await client.set(`big:${c}`, value);
          const back = await client.getBuffer(`big:${c}`);
          if (back?.length !== value.length) throw new Error('bad reply');
        }
        client.disconnect();
      }),
    );
  };

  it('2,000 connections of garbage and 200 MB of traffic do not grow the RSS', async () => {
    const pid = child.process!.pid!;
    // Warm up (buffers, JIT, heap growth), then measure one more full round.
    await garbageRound(500);
    await trafficRound(50);
    await sleep(300);
    const before = rssOf(pid);
    await garbageRound(2000);
    await trafficRound(200);
    await sleep(300);
    const after = rssOf(pid);
    console.log(`proxy RSS ${(before / 2 ** 20).toFixed(1)} MB -> ${(after / 2 ** 20).toFixed(1)} MB`);
    expect(after - before).toBeLessThan(50 * 1024 * 1024);
    // Still serving, and no session is left behind.
    const client = new Redis(child.port);
    expect(await client.ping()).toBe('PONG');
    const observer = new Redis(childRedis.port);
    // The control plane (2), this client's session and the observer: every garbage session's
    // upstream connection was closed.
    const clients = await waitFor(async () => (await observer.client('LIST')) as string, (l) => l.trim().split('\n').length <= 4, 5000);
    expect(clients.trim().split('\n').length).toBe(4);
    observer.disconnect();
    client.disconnect();
  });

  it('a slow client that never reads: backpressure pauses the upstream; later it gets every reply intact', async () => {
    const size = 1024 * 1024;
    const value = Buffer.alloc(size);
    for (let i = 0; i < size; i++) value[i] = (i * 7 + 3) & 0xff;
    const setter = new Redis(childRedis.port);
    await setter.set('slow:v', value);
    const gets = 150;
    const pid = child.process!.pid!;
    const before = rssOf(pid);
    const slow = await RawClient.connect(child.port);
    slow.socket.pause(); // never reads (yet)
    const request = command('GET', 'slow:v');
    slow.send(Buffer.concat(Array.from({ length: gets }, () => request)));
    // Redis answers everything at once; the proxy must not hold it (~150 MB).
    let peak = 0;
    for (let i = 0; i < 15; i++) {
      await sleep(100);
      peak = Math.max(peak, rssOf(pid));
    }
    console.log(`slow client: proxy RSS ${(before / 2 ** 20).toFixed(1)} MB, peak ${(peak / 2 ** 20).toFixed(1)} MB`);
    expect(peak - before).toBeLessThan(64 * 1024 * 1024);
    // Redis holds it instead, in the output buffer of the session's upstream connection.
    const list = (await setter.client('LIST')) as string;
    const upstream = list.split('\n').find((line) => line.includes('cmd=get'));
    expect(Number(/ omem=(\d+)/.exec(upstream ?? '')?.[1] ?? 0)).toBeGreaterThan(50 * 1024 * 1024);
    // Now read everything.
    slow.socket.resume();
    const expected = Buffer.concat([Buffer.from(`$${size}\r\n`), value, Buffer.from('\r\n')]);
    for (let i = 0; i < gets; i += 10) {
      const replies = await slow.replies(10, 20_000);
      expect(replies.length).toBe(expected.length * 10);
      for (let j = 0; j < 10; j++) expect(replies.subarray(j * expected.length, (j + 1) * expected.length).equals(expected)).toBe(true);
    }
    slow.close();
    setter.disconnect();
  });
});

describe('replies queued for a client that reads slowly', () => {
  // The proxy reads Redis's replies into a buffer it reuses (src/upstream/endpoint.ts); a reply
  // still queued for the client must keep its own bytes. Every value differs, so a buffer reused
  // too early shows as wrong bytes somewhere.
  it('every reply arrives byte-exact while earlier ones wait in the client socket', async () => {
    const keys = 300;
    const size = 24 * 1024;
    const valueOf = (i: number): Buffer => {
      const value = Buffer.alloc(size);
      for (let p = 0; p < size; p++) value[p] = (p * 31 + i * 17 + (p >> 8)) & 0xff;
      return value;
    };
    const writer = direct.pipeline();
    for (let i = 0; i < keys; i++) writer.set(`slowread:${i}`, valueOf(i));
    await writer.exec();
    const reader = await RawClient.connect(proxy.port);
    reader.socket.pause();
    const requests = Buffer.concat(Array.from({ length: keys }, (_, i) => command('GET', `slowread:${i}`)));
    reader.send(requests);
    await sleep(300); // Redis answers everything meanwhile; the proxy queues what the client does not take
    reader.socket.resume();
    const got = await reader.replies(keys, 30_000);
    reader.close();
    let at = 0;
    for (let i = 0; i < keys; i++) {
      const expected = Buffer.concat([Buffer.from(`$${size}\r\n`), valueOf(i), Buffer.from('\r\n')]);
      const actual = got.subarray(at, at + expected.length);
      expect(actual.equals(expected), `reply ${i}`).toBe(true);
      at += expected.length;
    }
    expect(at).toBe(got.length);
  });
});

describe('lost upstream', () => {
  it("CLIENT KILL of a client's upstream connection: earlier replies arrive, then its connection closes; others are fine", async () => {
    const victim = await RawClient.connect(proxy.port);
    const other = new Redis(proxy.port);
    victim.send(Buffer.concat([command('SET', 'lu:k', 'v'), command('GET', 'lu:k'), command('CLIENT', 'INFO')]));
    const replies = (await victim.replies(3)).toString('latin1');
    expect(replies.startsWith('+OK\r\n$1\r\nv\r\n')).toBe(true);
    const addr = / addr=(\S+) /.exec(replies)![1];
    // The proxy's upstream connections carry no name; the address identifies this one.
    const line = ((await direct.client('LIST')) as string).split('\n').find((l) => l.includes(`addr=${addr} `))!;
    expect(line).toContain(' name= ');
    victim.send(command('BLPOP', 'lu:never', '0')); // blocked when the kill comes
    await waitFor(async () => (await direct.client('LIST')) as string, (l) => l.includes(`addr=${addr} `) && l.includes('cmd=blpop'), 5000);
    expect(await direct.client('KILL', 'ADDR', addr)).toBe(1);
    const rest = await victim.untilClosed(5000);
    expect(victim.closed).toBe(true);
    expect(rest.length).toBe(0);
    expect(await other.set('lu:k', 'still')).toBe('OK');
    expect(await bystander.get('lu:k')).toBe('still');
    other.disconnect();
  });

  it('a client that kills its own upstream (or QUITs) gets the replies first, like on Redis', async () => {
    const transcript = async (port: number, kill: boolean): Promise<string> => {
      const c = await RawClient.connect(port);
      c.send(command('CLIENT', 'ID'));
      const id = (await c.replies(1)).toString().slice(1, -2);
      const last = kill ? command('CLIENT', 'KILL', 'ID', id, 'SKIPME', 'no') : command('QUIT');
      c.send(Buffer.concat([command('PING'), command('GET', 'lu:nothing'), last, command('PING')]));
      const data = (await c.untilClosed(5000)).toString();
      expect(c.closed).toBe(true);
      return data;
    };
    for (const kill of [true, false]) {
      const fromProxy = await transcript(proxy.port, kill);
      expect(fromProxy).toBe(await transcript(redis.port, kill));
      expect(fromProxy).toBe(kill ? '+PONG\r\n$-1\r\n:1\r\n' : '+PONG\r\n$-1\r\n+OK\r\n');
    }
  });

  // Redis resets a connection it has stopped reading (QUIT, CLIENT KILL, protocol error) while the
  // client is still sending. A client connected directly still reads Redis's last reply after its
  // failed write; Redis's own suite relies on it (protocol.tcl's desync tests).
  const quitWhileSending = (port: number, keep: boolean): Promise<string> =>
    new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      let data = '';
      const collect = (chunk: Buffer): void => {
        data += chunk.toString('latin1');
      };
      socket.on('data', collect);
      if (keep) keepLastReplies(socket, collect);
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(data));
      const pings = Buffer.from('PING\r\n'.repeat(16 * 1024 / 6));
      const pump = (): void => {
        if (!socket.destroyed && socket.write(pings)) setImmediate(pump);
      };
      socket.on('drain', pump);
      socket.once('connect', () => {
        socket.write(command('QUIT'));
        pump();
      });
    });

  it('keepLastReplies: a socket whose write fails on a reset still delivers what Redis sent before it', async () => {
    for (let round = 0; round < 10; round++) expect(await quitWhileSending(redis.port, true)).toBe('+OK\r\n');
  });

  it('a client that keeps sending after QUIT gets the +OK first, like on Redis', async () => {
    for (let round = 0; round < 10; round++) expect(await quitWhileSending(proxy.port, true)).toBe('+OK\r\n');
  });

  it('upstream killed while the proxy holds a large reply for a slow client: the client still gets what was read, then the close', async () => {
    const big = Buffer.alloc(8 * 1024 * 1024, 'b');
    await direct.set('lu:big', big);
    const slow = await RawClient.connect(proxy.port);
    slow.send(command('CLIENT', 'INFO'));
    const addr = / addr=(\S+) /.exec((await slow.replies(1)).toString())![1];
    slow.socket.pause();
    slow.send(Buffer.concat([command('GET', 'lu:big'), command('GET', 'lu:big')]));
    await sleep(300);
    await direct.client('KILL', 'ADDR', addr);
    slow.socket.resume();
    const data = await slow.untilClosed(10_000);
    expect(slow.closed).toBe(true);
    // A prefix of the full reply stream (Redis dropped what it had not sent yet).
    const full = Buffer.concat([Buffer.from(`$${big.length}\r\n`), big, Buffer.from('\r\n')]);
    const expected = Buffer.concat([full, full]);
    expect(data.length).toBeGreaterThan(0);
    expect(data.equals(expected.subarray(0, data.length))).toBe(true);
    expect(await bystander.ping()).toBe('PONG');
  });

  it('a client that half-closes after its requests gets the same replies as from Redis, then the close', async () => {
    const halfClose = (port: number): Promise<string> =>
      new Promise((resolve) => {
        const socket = connect(port, '127.0.0.1');
        let data = '';
        socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
        socket.on('error', () => undefined);
        socket.on('close', () => resolve(data));
        socket.once('connect', () => socket.end(Buffer.concat([command('SET', 'hc:k', 'v'), command('GET', 'hc:k'), Buffer.from('PING\r\n')])));
      });
    const [fromProxy, fromRedis] = await Promise.all([halfClose(proxy.port), halfClose(redis.port)]);
    expect(fromProxy).toBe(fromRedis);
    expect(fromProxy).toBe('+OK\r\n$1\r\nv\r\n+PONG\r\n');
  });

  it('a subscriber too slow for Redis\'s pubsub output buffer limit: Redis drops it, the proxy closes only that client', async () => {
    const slow = await RawClient.connect(proxy.port);
    slow.send(command('SUBSCRIBE', 'lu:firehose'));
    expect((await slow.replies(1)).toString()).toBe('*3\r\n$9\r\nsubscribe\r\n$11\r\nlu:firehose\r\n:1\r\n');
    slow.socket.pause();
    const message = Buffer.alloc(1024 * 1024, 'm');
    // 48 MB, far over a 4 MB hard limit of Redis's pubsub output buffer for this connection (with
    // the default 32 MB, the kernel's socket buffers on a busy machine can absorb enough of 48 MB
    // that Redis never reaches the limit).
    const [, limits] = (await direct.config('GET', 'client-output-buffer-limit')) as string[];
    await direct.config('SET', 'client-output-buffer-limit', 'pubsub 4mb 2mb 60');
    try {
      for (let i = 0; i < 48; i++) await direct.publish('lu:firehose', message);
      await waitFor(async () => (await direct.pubsub('NUMSUB', 'lu:firehose')) as unknown[], (r) => r[1] === 0, 10_000);
    } finally {
      await direct.config('SET', 'client-output-buffer-limit', limits);
    }
    slow.socket.resume();
    const data = await slow.untilClosed(10_000);
    expect(slow.closed).toBe(true);
    // Whole messages, then possibly a cut one: a prefix of what was published.
    const one = Buffer.concat([Buffer.from('*3\r\n$7\r\nmessage\r\n$11\r\nlu:firehose\r\n$1048576\r\n'), message, Buffer.from('\r\n')]);
    expect(data.length).toBeLessThan(one.length * 48);
    for (let offset = 0; offset < data.length; offset += one.length) {
      const part = data.subarray(offset, Math.min(offset + one.length, data.length));
      expect(part.equals(one.subarray(0, part.length))).toBe(true);
    }
    expect(await bystander.ping()).toBe('PONG');
  });

  it('SIGKILL of redis-server closes every session, the proxy stays up, and works again after a restart', async () => {
    const own = await startRedis();
    const ownProxy = await startTestProxy(own);
    try {
      const a = await RawClient.connect(ownProxy.port);
      const b = new Redis(ownProxy.port, { retryStrategy: () => null, maxRetriesPerRequest: 0 });
      b.on('error', () => undefined);
      const blocked = await RawClient.connect(ownProxy.port);
      blocked.send(command('BLPOP', 'q', '0'));
      a.send(command('PING'));
      expect((await a.replies(1)).toString()).toBe('+PONG\r\n');
      expect(await b.ping()).toBe('PONG');
      await own.kill();
      await a.untilClosed(5000);
      await blocked.untilClosed(5000);
      expect(a.closed).toBe(true);
      expect(blocked.closed).toBe(true);
      await waitFor(async () => b.status, (s) => s === 'end' || s === 'close', 5000);
      // While Redis is down, a new client hears why, Redis-style, and is closed.
      const early = await converse(ownProxy.port, [command('PING')], { idleMs: 2000 });
      expect(early.data.toString()).toMatch(/^-ERR notifylist-proxy: upstream 127\.0\.0\.1:\d+ unavailable \(ECONNREFUSED\)\r\n$/);
      expect(early.closed).toBe(true);
      await own.start(); // same port
      const c = new Redis(ownProxy.port);
      c.on('error', () => undefined);
      // The control plane reloads the library after it reconnects; until then FCALLs may fail.
      const listed = await waitFor(
        () => c.call('NOTIFYLIST.LIST').catch((e: Error) => e.message),
        (r) => Array.isArray(r),
        10_000,
        100,
      );
      expect(listed).toEqual([]);
      expect(await c.call('NOTIFYLIST.SET', 'after:*', 'after_events')).toBe('OK');
      expect(await c.set('after:1', 'x')).toBe('OK');
      expect(await c.lrange('after_events', 0, -1)).toEqual(['{"key":"after:1","op":"set"}']);
      c.disconnect();
      b.disconnect();
    } finally {
      await ownProxy.close();
      await own.destroy();
    }
  });
});

describe('configurable limits', () => {
  it('--max-inline-length: a longer inline line without a newline is refused; shorter ones pass', async () => {
    const ok = await converse(limited.port, [`ECHO ${'x'.repeat(900)}\r\n`]);
    expect(ok.data.toString()).toBe(`$900\r\n${'x'.repeat(900)}\r\n`);
    expect(ok.closed).toBe(false);
    const bad = await converse(limited.port, [Buffer.concat([PREFIX, Buffer.from(`ECHO ${'x'.repeat(1100)}`)])]);
    expect(bad.data.toString()).toBe(`${PREFIX_REPLIES}-ERR Protocol error: too big inline request\r\n`);
    expect(bad.closed).toBe(true);
    // The default proxy takes the same line (Redis's limit is 64 KB).
    const fine = await converse(proxy.port, [`ECHO ${'x'.repeat(1100)}\r\n`]);
    expect(fine.data.toString()).toBe(`$1100\r\n${'x'.repeat(1100)}\r\n`);
  });

  it('--max-multibulk-length: exactly the limit passes, one more is refused', async () => {
    const args = ['RPUSH', 'lim:list', ...Array.from({ length: 98 }, (_, i) => String(i))];
    const ok = await converse(limited.port, [command(...args)]);
    expect(ok.data.toString()).toBe(':98\r\n');
    const bad = await converse(limited.port, [command(...args, 'one-more')]);
    expect(bad.data.toString()).toBe('-ERR Protocol error: invalid multibulk length\r\n');
    expect(bad.closed).toBe(true);
    expect(await direct.llen('lim:list')).toBe(98);
  });

  it('--max-bulk-length: exactly the limit passes, one more byte is refused', async () => {
    const ok = await converse(limited.port, [command('SET', 'lim:v', Buffer.alloc(1024, 'q')), command('STRLEN', 'lim:v')]);
    expect(ok.data.toString()).toBe('+OK\r\n:1024\r\n');
    const bad = await converse(limited.port, [command('SET', 'lim:v', Buffer.alloc(1025, 'q'))]);
    expect(bad.data.toString()).toBe('-ERR Protocol error: invalid bulk length\r\n');
    expect(bad.closed).toBe(true);
  });
});
