// A session's upstream link reads Redis's replies into a buffer it reuses (src/upstream/endpoint.ts,
// Reader): a chunk the reader says it still references (a write to the client that is queued)
// must never be overwritten by a later read; one it let go may be.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSocket } from '../src/upstream/endpoint.js';
import { command } from './helpers/raw-client.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

let redis: RedisServer;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.destroy();
});

describe('reused read buffer', () => {
  it('a chunk the reader keeps stays intact through every later read; the bytes are Redis reply stream', async () => {
    const values = 400;
    const size = 3000;
    const valueOf = (i: number): Buffer => Buffer.from(Array.from({ length: size }, (_, p) => (p * 13 + i * 7 + (p >> 5)) & 0xff));
    const kept: Array<{ view: Buffer; copy: Buffer }> = [];
    const all: Buffer[] = [];
    let reads = 0;
    const { socket, readyEvent } = openSocket({ host: '127.0.0.1', port: redis.port }, null, (chunk) => {
      reads++;
      all.push(Buffer.from(chunk));
      // Every third chunk is "still referenced": later reads must go elsewhere.
      if (reads % 3 !== 0) return false;
      kept.push({ view: chunk, copy: Buffer.from(chunk) });
      return true;
    });
    await new Promise((resolve) => socket.once(readyEvent, resolve));
    const requests: Buffer[] = [];
    for (let i = 0; i < values; i++) requests.push(command('SET', `reads:${i}`, valueOf(i)));
    for (let i = 0; i < values; i++) requests.push(command('GET', `reads:${i}`));
    // Sent in small pieces, so that Redis's replies come in many reads of different sizes.
    for (let i = 0; i < requests.length; i += 7) {
      socket.write(Buffer.concat(requests.slice(i, i + 7)));
      if (i % 70 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const expected = Buffer.concat([
      Buffer.from('+OK\r\n'.repeat(values)),
      ...Array.from({ length: values }, (_, i) => Buffer.concat([Buffer.from(`$${size}\r\n`), valueOf(i), Buffer.from('\r\n')])),
    ]);
    await waitFor(
      async () => all.reduce((n, b) => n + b.length, 0),
      (n) => n >= expected.length,
      10_000,
    );
    socket.destroy();
    expect(Buffer.concat(all).equals(expected)).toBe(true);
    for (const { view, copy } of kept) expect(view.equals(copy)).toBe(true);
    expect(kept.length).toBeGreaterThan(5);
  });
});
