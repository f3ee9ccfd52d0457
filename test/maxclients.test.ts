// --maxclients: clients of every listener (TCP, Unix socket) count together; one more gets Redis's
// own error bytes (compared with a real redis-server --maxclients 1) and is closed; once a client
// leaves, a new one is let in. Also the flag's and the environment's parsing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type RunningProxy } from '../src/index.js';
import { startProxyWith } from './helpers/proxy.js';
import { command, RawClient } from './helpers/raw-client.js';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server.js';
import { connectTo, listenerTlsFlags, removeTestCertificates, testCertificates, type Target } from './helpers/transport.js';
import { waitFor } from './helpers/wait.js';

let redis: RedisServer;
let full: RedisServer;
let proxy: RunningProxy;
const dir = mkdtempSync(join(tmpdir(), 'notifylist-maxclients-'));
const socket = join(dir, 'proxy.sock');
const open: RawClient[] = [];
const MAX_CLIENTS = '-ERR max number of clients reached\r\n';

beforeAll(async () => {
  redis = await startRedis();
  full = await startRedis({ config: { maxclients: '1' } });
  proxy = await startProxyWith(['--port', String(await freePort()), '--unixsocket', socket, '--upstream', redis.url, '--maxclients', '3']);
});

afterAll(async () => {
  for (const client of open) client.close();
  await proxy?.close();
  await redis?.destroy();
  await full?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

async function pinged(to: number | Target): Promise<RawClient> {
  const client = await RawClient.connect(to);
  open.push(client);
  client.send(command('PING'));
  expect((await client.replies(1)).toString()).toBe('+PONG\r\n');
  return client;
}

/** What a refused connection gets before it is closed (it sends nothing). */
async function refusal(to: number | { path: string }): Promise<{ bytes: string; closed: boolean }> {
  const client = await RawClient.connect(to);
  const bytes = (await client.untilClosed(3000)).toString('latin1');
  return { bytes, closed: client.closed };
}

describe('--maxclients', () => {
  it('the client over the limit gets exactly what Redis sends and is closed; TCP and Unix socket count together', async () => {
    // Redis's own bytes: a second client of a Redis with maxclients 1.
    const first = await pinged(full.port);
    const fromRedis = await refusal(full.port);
    first.close();
    expect(fromRedis).toEqual({ bytes: '-ERR max number of clients reached\r\n', closed: true });

    const a = await pinged(proxy.port);
    await pinged({ path: socket });
    await pinged(proxy.port);
    expect(await refusal(proxy.port)).toEqual(fromRedis);
    expect(await refusal({ path: socket })).toEqual(fromRedis);
    // Refused connections opened nothing upstream: Redis sees the 3 sessions and the control connections only.
    const before = proxy.server.connections;
    expect(before).toBe(3);

    // One leaves: a new one is let in (on either listener), and the limit holds again after it.
    a.close();
    await waitFor(async () => proxy.server.connections, (n) => n === 2, 3000);
    await pinged({ path: socket });
    expect(await refusal(proxy.port)).toEqual(fromRedis);
  });
});

describe('--maxclients with a TLS listener', () => {
  it('TLS clients count with the others; one more gets no handshake and is closed, as from Redis', async () => {
    const certs = testCertificates();
    const tlsProxy = await startProxyWith(['--port', String(await freePort()), ...(await listenerTlsFlags(certs, 'no')), '--upstream', redis.url, '--maxclients', '1']);
    try {
      const first = await pinged({ port: tlsProxy.tlsPort!, tls: certs });
      expect(await refusal(tlsProxy.port)).toEqual({ bytes: MAX_CLIENTS, closed: true });
      // The handshake fails: the connection is closed before it.
      await expect(connectTo({ port: tlsProxy.tlsPort!, tls: certs })).rejects.toThrow();
      first.close();
      await waitFor(async () => tlsProxy.server.connections, (n) => n === 0, 3000);
      await pinged({ port: tlsProxy.tlsPort!, tls: certs });
    } finally {
      await tlsProxy.close();
      removeTestCertificates();
    }
  });
});

describe('flag and environment', () => {
  it('default 10000 as Redis; NOTIFYLIST_MAXCLIENTS; the flag wins; bad values are refused', () => {
    expect(parseConfig([], {})!.maxClients).toBe(10000);
    expect(parseConfig([], { NOTIFYLIST_MAXCLIENTS: '7' })!.maxClients).toBe(7);
    expect(parseConfig(['--maxclients', '5'], { NOTIFYLIST_MAXCLIENTS: '7' })!.maxClients).toBe(5);
    expect(() => parseConfig(['--maxclients', '0'], {})).toThrow("--maxclients must be an integer >= 1, got '0'");
    expect(() => parseConfig(['--maxclients', 'many'], {})).toThrow("--maxclients must be an integer >= 1, got 'many'");
  });
});
