// TLS on both sides (issue "Production Redis", parts 1 and 2), against redis-server built with TLS
// and certificates made by openssl: TLS to Redis only, to clients only, both, mutual TLS on each
// side; certificate problems at start (a wrong CA among them) as one line and exit 1;
// tls-auth-clients yes|no|optional as Redis has them; a plaintext client on the TLS port closed as
// Redis closes it; SIGHUP with a new certificate; redis-cli --tls, ioredis and node-redis through
// the TLS port. The transparency differential and the seed scenario run over TLS too
// (transparency-tls.test.ts, expired-events-tls.test.ts).
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/index.js';
import { listeningMessage, logLines, runCli, startCli, stopCli, type Cli } from './helpers/cli.js';
import { startProxyWith } from './helpers/proxy.js';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server.js';
import { listenerTlsFlags, removeTestCertificates, testCertificates, upstreamTlsFlags } from './helpers/transport.js';
import { sleep, waitFor } from './helpers/wait.js';

const run = promisify(execFile);
const NO_STACK = /\n\s+at |Error:|node:internal/;
const certs = testCertificates();
const file = (path: string): Buffer => readFileSync(path);
/** Client side of mutual TLS: trusts the test CA, shows the client certificate. */
const mutual = (): ConnectionOptions => ({ ca: file(certs.ca.cert), cert: file(certs.client.cert), key: file(certs.client.key) });

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await Promise.resolve(cleanups.pop()!()).catch(() => undefined);
});
afterAll(() => removeTestCertificates());

function later<T extends { disconnect(): void } | { destroy(): Promise<void> } | Cli>(thing: T): T {
  if ('child' in thing) cleanups.push(() => stopCli(thing, 'SIGKILL'));
  else if ('destroy' in thing) cleanups.push(() => thing.destroy());
  else cleanups.push(() => thing.disconnect());
  return thing;
}

/** Redis with only a TLS port (no plain one): nothing reaches it without TLS. */
async function tlsOnlyRedis(authClients: 'yes' | 'no' | 'optional' = 'no'): Promise<RedisServer> {
  return later(await startRedis({ tls: { certificates: certs, authClients, plainPort: false } }));
}

/** ioredis straight to a TLS-only Redis (the test's own view of it). */
function admin(redis: RedisServer): Redis {
  return later(new Redis({ host: '127.0.0.1', port: redis.tlsPort, tls: mutual(), maxRetriesPerRequest: 1 }));
}

/** One TLS exchange: send `request`, collect until `expectReplies` CRLF-ended lines or close. */
function tlsExchange(port: number, options: ConnectionOptions, request = 'PING\r\n'): Promise<{ reply: string; error: string | null; peer: string | null }> {
  return new Promise((resolve) => {
    let reply = '';
    let error: string | null = null;
    let peer: string | null = null;
    const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', port, ...options }, () => {
      peer = String(socket.getPeerCertificate().subject?.CN ?? '');
      socket.write(request);
    });
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1');
      if (reply.endsWith('\r\n')) socket.end();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    socket.on('close', () => resolve({ reply, error, peer }));
    socket.setTimeout(3000, () => socket.destroy());
  });
}

describe('TLS to Redis (--upstream rediss://)', () => {
  it('TLS to Redis only: sessions and the control plane all reach a Redis that has no plain port', async () => {
    const redis = await tlsOnlyRedis();
    const direct = admin(redis);
    const proxy = await startProxyWith(['--port', String(await freePort()), '--upstream', redis.tlsUrl, '--upstream-tls-ca-cert-file', certs.ca.cert, '--lease-ms', '500']);
    cleanups.push(() => proxy.close());
    const client = later(new Redis(proxy.port));
    expect(await client.call('NOTIFYLIST.SET', 'u:*', 'u_events')).toBe('OK');
    expect(await client.set('u:1', 'v', 'PX', 200)).toBe('OK');
    expect(await client.get('u:1')).toBe('v');
    // The expiry comes through the control plane (keyevent subscription, reaper): it speaks TLS too.
    const events = await waitFor(() => direct.lrange('u_events', 0, -1), (list) => list.length === 2, 5000);
    expect(events).toEqual(['{"key":"u:1","op":"set"}', '{"key":"u:1","op":"expired"}']);
    const list = String(await direct.client('LIST'));
    expect(list).toContain('name=notifylist-proxy:control');
    expect(list).toContain('name=notifylist-proxy:events');
  });

  it('mutual TLS to Redis (tls-auth-clients yes): with the client certificate it works; without it, one line at start naming it', async () => {
    const redis = await tlsOnlyRedis('yes');
    const refused = await runCli(['--port', String(await freePort()), '--upstream', redis.tlsUrl, '--upstream-tls-ca-cert-file', certs.ca.cert]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      `notifylist-proxy: TLS to Redis at 127.0.0.1:${redis.tlsPort}: the server refused the proxy's client certificate (no --upstream-tls-cert-file given): tlsv13 alert certificate required\n`,
    );

    const proxy = await startProxyWith(['--port', String(await freePort()), '--upstream', redis.tlsUrl, ...upstreamTlsFlags(certs)]);
    cleanups.push(() => proxy.close());
    const client = later(new Redis(proxy.port));
    expect(await client.call('NOTIFYLIST.SET', 'm:*', 'm_events')).toBe('OK');
    expect(await client.set('m:1', 'v')).toBe('OK');
    expect(await admin(redis).lrange('m_events', 0, -1)).toEqual(['{"key":"m:1","op":"set"}']);
  });

  it('a wrong CA: one line naming the CA file and the reason, exit 1, no stack', async () => {
    const redis = await tlsOnlyRedis();
    const result = await runCli(['--port', String(await freePort()), '--upstream', redis.tlsUrl, '--upstream-tls-ca-cert-file', certs.otherCa.cert]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      `notifylist-proxy: TLS to Redis at 127.0.0.1:${redis.tlsPort}: its certificate is not signed by a CA in --upstream-tls-ca-cert-file ${certs.otherCa.cert} (self-signed certificate in certificate chain)\n`,
    );
  });

  it('certificate problems at start, each one line naming the flag and file, exit 1; no key material is ever printed', async () => {
    const redis = await tlsOnlyRedis();
    const notPem = join(certs.dir, 'not-pem.txt');
    writeFileSync(notPem, 'hello\n');
    const base = ['--port', String(await freePort()), '--upstream', redis.tlsUrl];
    const cases: Array<[string[], RegExp]> = [
      [['--upstream-tls-ca-cert-file', join(certs.dir, 'missing.crt')], /^--upstream-tls-ca-cert-file \S+missing\.crt: cannot read it \(ENOENT\)$/],
      [['--upstream-tls-ca-cert-file', notPem], /^--upstream-tls-ca-cert-file \S+not-pem\.txt: no PEM certificate in it$/],
      [['--upstream-tls-ca-cert-file', certs.ca.cert, '--upstream-tls-cert-file', certs.client.cert, '--upstream-tls-key-file', certs.server.key], /^--upstream-tls-cert-file \S+client\.crt, --upstream-tls-key-file \S+server\.key, --upstream-tls-ca-cert-file \S+: key values mismatch$/],
      [['--upstream-tls-ca-cert-file', certs.ca.cert, '--upstream-tls-cert-file', certs.client.cert, '--upstream-tls-key-file', certs.client.cert], /^--upstream-tls-key-file \S+client\.crt: no PEM private key in it$/],
      [['--upstream-tls-ca-cert-file', certs.ca.cert, '--upstream-tls-cert-file', certs.client.cert], /^--upstream-tls-cert-file and --upstream-tls-key-file go together/],
      [['--upstream-tls-ca-cert-file', certs.ca.cert, '--upstream-tls-server-name', 'wrong.example'], /^TLS to Redis at 127\.0\.0\.1:\d+: its certificate does not carry the expected name \(Hostname\/IP does not match certificate's altnames: Host: wrong\.example\. is not in the cert's altnames: DNS:localhost, IP Address:127\.0\.0\.1\); see --upstream-tls-server-name$/],
      [['--tls-port', String(await freePort()), '--tls-cert-file', certs.server.cert, '--tls-key-file', join(certs.dir, 'nope.key'), '--tls-auth-clients', 'no'], /^--tls-key-file \S+nope\.key: cannot read it \(ENOENT\)$/],
      [['--tls-port', String(await freePort()), '--tls-cert-file', certs.server.cert, '--tls-key-file', certs.client.key, '--tls-auth-clients', 'no'], /^--tls-cert-file \S+server\.crt, --tls-key-file \S+client\.key: key values mismatch$/],
    ];
    const keys = [certs.client.key, certs.server.key].map((path) => readFileSync(path, 'latin1').split('\n')[1]);
    for (const [flags, message] of cases) {
      const result = await runCli([...base, ...flags]);
      expect(result.code, flags.join(' ')).toBe(1);
      expect(result.stderr.trimEnd().split('\n'), flags.join(' ')).toHaveLength(1);
      expect(result.stderr.replace(/^notifylist-proxy: /, '').trimEnd(), flags.join(' ')).toMatch(message);
      expect(result.stderr).not.toMatch(NO_STACK);
      for (const key of keys) expect(result.stderr).not.toContain(key);
      expect(result.stderr).not.toMatch(/PRIVATE KEY/);
    }
  });

  it('--upstream-tls-server-name: the name the certificate must carry, also when connecting by address', async () => {
    const redis = await tlsOnlyRedis();
    const proxy = await startProxyWith(['--port', String(await freePort()), '--upstream', redis.tlsUrl, '--upstream-tls-ca-cert-file', certs.ca.cert, '--upstream-tls-server-name', 'localhost']);
    cleanups.push(() => proxy.close());
    expect(await later(new Redis(proxy.port)).ping()).toBe('PONG');
  });

  it('--upstream-tls-insecure: no verification, and a warning at start', async () => {
    const redis = await tlsOnlyRedis();
    const port = await freePort();
    const cli = later(startCli(['--port', String(port), '--upstream', redis.tlsUrl, '--upstream-tls-ca-cert-file', certs.otherCa.cert, '--upstream-tls-insecure']));
    expect(await listeningMessage(cli)).toBe(`notifylist-proxy listening on 127.0.0.1:${port}, upstream rediss://127.0.0.1:${redis.tlsPort}/0`);
    expect(cli.stderr).toBe('');
    expect(logLines(cli).filter((line) => line.level === 'warn').map((line) => line.msg)).toEqual([
      'warning: --upstream-tls-insecure: the certificates of Redis and the sentinels are not verified (anyone on the way can read and change the traffic)',
    ]);
    expect(await later(new Redis(port)).ping()).toBe('PONG');
  });

  it('SIGHUP reads the upstream TLS files again for new connections; a bad one keeps the current ones', async () => {
    const redis = await tlsOnlyRedis('yes');
    const ca = join(certs.dir, 'upstream-live-ca.crt');
    copyFileSync(certs.ca.cert, ca);
    const port = await freePort();
    const cli = later(startCli(['--port', String(port), '--upstream', redis.tlsUrl, '--upstream-tls-ca-cert-file', ca, '--upstream-tls-cert-file', certs.client.cert, '--upstream-tls-key-file', certs.client.key]));
    await listeningMessage(cli);
    const hangups = (): string[] => logLines(cli).filter((line) => line.event === 'certificates_reloaded').map((line) => line.msg);
    cli.child.kill('SIGHUP');
    await waitFor(async () => hangups(), (lines) => lines.length === 1, 5000);
    expect(hangups()).toEqual(['SIGHUP: certificate files reloaded for new connections: upstream TLS']);
    writeFileSync(ca, 'garbage\n');
    cli.child.kill('SIGHUP');
    await waitFor(async () => hangups(), (lines) => lines.length === 2, 5000);
    expect(hangups()[1]).toBe(`SIGHUP: upstream TLS: --upstream-tls-ca-cert-file ${ca}: no PEM certificate in it (keeping the current files)`);
    // A new session still gets its TLS connection to Redis (with the files loaded before).
    expect(await later(new Redis(port)).ping()).toBe('PONG');
  });

  it('TLS flags without rediss://, and rediss:// to a plain port: clear errors', async () => {
    const plain = later(await startRedis());
    const flagOnly = await runCli(['--port', String(await freePort()), '--upstream', plain.url, '--upstream-tls-ca-cert-file', certs.ca.cert]);
    expect(flagOnly.stderr).toBe('notifylist-proxy: --upstream-tls-ca-cert-file needs a rediss:// upstream (TLS)\n');
    const toPlain = await runCli(['--port', String(await freePort()), '--upstream', `rediss://127.0.0.1:${plain.port}`, '--upstream-tls-ca-cert-file', certs.ca.cert]);
    expect(toPlain.code).toBe(1);
    expect(toPlain.stderr).toBe(`notifylist-proxy: TLS to Redis at 127.0.0.1:${plain.port}: no TLS handshake within the time allowed (is it a TLS port?)\n`);
  });
});

describe('TLS for clients (--tls-port)', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis({ tls: { certificates: certs, authClients: 'no' } });
  });
  afterAll(async () => {
    await redis?.destroy();
  });

  it('listener flags as Redis has them: what goes together, tls-auth-clients values, a CA when clients must show certificates', () => {
    const flags = (...extra: string[]): string[] => ['--tls-port', '6390', '--tls-cert-file', certs.server.cert, '--tls-key-file', certs.server.key, ...extra];
    expect(() => parseConfig(['--tls-port', '6390'], {})).toThrow('--tls-port needs --tls-cert-file and --tls-key-file');
    expect(() => parseConfig(['--tls-cert-file', certs.server.cert], {})).toThrow('--tls-cert-file needs --tls-port');
    expect(() => parseConfig(flags(), {})).toThrow('--tls-ca-cert-file must be specified when --tls-auth-clients is yes (the default is yes; no turns client certificates off)');
    expect(() => parseConfig(flags('--tls-auth-clients', 'maybe'), {})).toThrow("--tls-auth-clients must be yes, no or optional, got 'maybe'");
    expect(parseConfig(flags('--tls-auth-clients', 'no'), {})!.tls).toEqual({ port: 6390, certFile: certs.server.cert, keyFile: certs.server.key, caCertFile: undefined, authClients: 'no' });
    expect(parseConfig([], { NOTIFYLIST_TLS_PORT: '6390', NOTIFYLIST_TLS_CERT_FILE: 'c', NOTIFYLIST_TLS_KEY_FILE: 'k', NOTIFYLIST_TLS_AUTH_CLIENTS: 'no' })!.tls?.port).toBe(6390);
    expect(() => parseConfig(['--upstream', 'rediss://h', '--upstream-tls-insecure=maybe'], {})).toThrow("--upstream-tls-insecure takes no value (yes or no in the environment), got 'maybe'");
    expect(parseConfig(['--upstream', 'rediss://h'], { NOTIFYLIST_UPSTREAM_TLS_INSECURE: 'yes' })!.upstream.tls?.insecure).toBe(true);
  });

  it('TLS for clients only, in front of plain Redis; --port 0 turns the plain port off (as in Redis)', async () => {
    const tlsFlags = await listenerTlsFlags(certs, 'no');
    const cli = later(startCli(['--port', '0', ...tlsFlags, '--upstream', redis.url]));
    const tlsPort = Number(tlsFlags[1]);
    expect(await listeningMessage(cli)).toBe(`notifylist-proxy listening on tls 127.0.0.1:${tlsPort}, upstream redis://127.0.0.1:${redis.port}/0`);
    const client = later(new Redis({ port: tlsPort, tls: { ca: file(certs.ca.cert) } }));
    expect(await client.call('NOTIFYLIST.SET', 'c:*', 'c_events')).toBe('OK');
    expect(await client.set('c:1', 'v')).toBe('OK');
    expect(await later(new Redis(redis.port)).lrange('c_events', 0, -1)).toEqual(['{"key":"c:1","op":"set"}']);
    const nothing = await runCli(['--port', '0', '--upstream', redis.url]);
    expect(nothing.stderr).toBe('notifylist-proxy: configured to not listen anywhere (--port 0 without --tls-port or --unixsocket)\n');
  });

  it('TLS on both sides, mutual on both: the client certificate to the proxy, the proxy\'s to Redis', async () => {
    const mutualRedis = await tlsOnlyRedis('yes');
    const proxy = await startProxyWith(['--port', '0', ...(await listenerTlsFlags(certs, 'yes')), '--upstream', mutualRedis.tlsUrl, ...upstreamTlsFlags(certs)]);
    cleanups.push(() => proxy.close());
    expect(proxy.port).toBe(0);
    const client = later(new Redis({ port: proxy.tlsPort, tls: mutual() }));
    expect(await client.call('NOTIFYLIST.SET', 'b:*', 'b_events')).toBe('OK');
    expect(await client.set('b:1', 'v', 'PX', 200)).toBe('OK');
    const events = await waitFor(() => admin(mutualRedis).lrange('b_events', 0, -1), (list) => list.length === 2, 5000);
    expect(events).toEqual(['{"key":"b:1","op":"set"}', '{"key":"b:1","op":"expired"}']);
  });

  it('--tls-auth-clients yes | no | optional: accepted and refused as by Redis with the same setting', async () => {
    const clients: Record<string, ConnectionOptions> = {
      'no certificate': { ca: file(certs.ca.cert) },
      'a certificate of the CA': mutual(),
      'a certificate of another CA': { ca: file(certs.ca.cert), cert: file(certs.otherClient.cert), key: file(certs.otherClient.key) },
    };
    const expected = {
      yes: ['a certificate of the CA'],
      no: Object.keys(clients),
      optional: ['no certificate', 'a certificate of the CA'],
    };
    for (const mode of ['yes', 'no', 'optional'] as const) {
      const oracle = await tlsOnlyRedis(mode);
      const proxy = await startProxyWith(['--port', '0', ...(await listenerTlsFlags(certs, mode)), '--upstream', redis.url]);
      cleanups.push(() => proxy.close());
      const accepted = { direct: [] as string[], proxied: [] as string[] };
      for (const [who, options] of Object.entries(clients)) {
        const [direct, proxied] = await Promise.all([tlsExchange(oracle.tlsPort, options), tlsExchange(proxy.tlsPort!, options)]);
        // Accepted: PONG from both. Refused: no reply from either (Redis fails the handshake with an
        // alert; for a certificate of another CA the proxy closes right after it: README).
        expect(proxied.reply, `${mode}, ${who}`).toBe(direct.reply);
        if (direct.reply === '+PONG\r\n') accepted.direct.push(who);
        if (proxied.reply === '+PONG\r\n') accepted.proxied.push(who);
        // Without a certificate, refused by the same TLS alert.
        if (who === 'no certificate') expect(proxied.error, `${mode}, ${who}`).toBe(direct.error);
      }
      expect(accepted.direct, `Redis, ${mode}`).toEqual(expected[mode]);
      expect(accepted.proxied, `proxy, ${mode}`).toEqual(expected[mode]);
    }
  });

  it('a plaintext client on the TLS port is closed as Redis closes it: no bytes, a reset', async () => {
    const proxy = await startProxyWith(['--port', '0', ...(await listenerTlsFlags(certs, 'no')), '--upstream', redis.url]);
    cleanups.push(() => proxy.close());
    const plaintext = (port: number): Promise<{ received: string; error: string | null }> =>
      new Promise((resolve) => {
        const socket = netConnect({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
        let received = '';
        let error: string | null = null;
        socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
        socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
        socket.on('close', () => resolve({ received, error }));
      });
    const [direct, proxied] = await Promise.all([plaintext(redis.tlsPort), plaintext(proxy.tlsPort!)]);
    expect(direct).toEqual({ received: '', error: 'ECONNRESET' });
    expect(proxied).toEqual(direct);
    // The proxy is fine afterwards.
    expect((await tlsExchange(proxy.tlsPort!, { ca: file(certs.ca.cert) })).reply).toBe('+PONG\r\n');
  });

  it('SIGHUP with a new certificate: new connections get it, open ones stay up; a bad file keeps the old one', async () => {
    const cert = join(certs.dir, 'live.crt');
    const key = join(certs.dir, 'live.key');
    copyFileSync(certs.server.cert, cert);
    copyFileSync(certs.server.key, key);
    const tlsPort = await freePort();
    const cli = later(startCli(['--port', '0', '--tls-port', String(tlsPort), '--tls-cert-file', cert, '--tls-key-file', key, '--tls-auth-clients', 'no', '--upstream', redis.url]));
    await listeningMessage(cli);
    const before = later(new Redis({ port: tlsPort, tls: { ca: file(certs.ca.cert) } }));
    expect(await before.set('hup', '1')).toBe('OK');
    expect((await tlsExchange(tlsPort, { ca: file(certs.ca.cert) })).peer).toBe(certs.server.name);

    copyFileSync(certs.renewedServer.cert, cert);
    copyFileSync(certs.renewedServer.key, key);
    cli.child.kill('SIGHUP');
    const hangups = (): string[] => logLines(cli).filter((line) => line.event === 'certificates_reloaded').map((line) => line.msg);
    await waitFor(async () => hangups(), (lines) => lines.length === 1, 5000);
    expect(hangups()).toEqual(['SIGHUP: certificate files reloaded for new connections: TLS listener']);
    expect((await tlsExchange(tlsPort, { ca: file(certs.ca.cert) })).peer).toBe(certs.renewedServer.name);
    expect(await before.get('hup')).toBe('1'); // the connection opened before is still up

    writeFileSync(key, 'not a key\n');
    cli.child.kill('SIGHUP');
    await waitFor(async () => hangups(), (lines) => lines.length === 2, 5000);
    expect(hangups()[1]).toBe(`SIGHUP: TLS listener: --tls-key-file ${key}: no PEM private key in it (keeping the current files)`);
    expect((await tlsExchange(tlsPort, { ca: file(certs.ca.cert) })).peer).toBe(certs.renewedServer.name);
    expect(cli.child.exitCode).toBe(null);
    expect(await before.get('hup')).toBe('1');
  });

  it('redis-cli --tls, ioredis and node-redis with TLS work through it', async () => {
    const proxy = await startProxyWith(['--port', '0', ...(await listenerTlsFlags(certs, 'yes')), '--upstream', redis.url]);
    cleanups.push(() => proxy.close());
    const port = String(proxy.tlsPort);
    const cliArgs = ['--tls', '--cacert', certs.ca.cert, '--cert', certs.client.cert, '--key', certs.client.key, '-p', port];
    expect((await run('redis-cli', [...cliArgs, 'NOTIFYLIST.SET', 't:*', 't_events'])).stdout).toBe('OK\n');
    expect((await run('redis-cli', [...cliArgs, 'SET', 't:cli', 'v'])).stdout).toBe('OK\n');
    const viaIoredis = later(new Redis({ port: proxy.tlsPort, tls: mutual() }));
    expect(await viaIoredis.set('t:ioredis', 'v')).toBe('OK');
    const nodeRedis = createClient({ socket: { host: '127.0.0.1', port: proxy.tlsPort, tls: true, ...mutual() } });
    nodeRedis.on('error', () => undefined);
    await nodeRedis.connect();
    cleanups.push(() => nodeRedis.disconnect());
    expect(await nodeRedis.set('t:node-redis', 'v')).toBe('OK');
    expect(await nodeRedis.get('t:node-redis')).toBe('v');
    const events = (await later(new Redis(redis.port)).lrange('t_events', 0, -1)).map((e) => JSON.parse(e).key);
    expect(events).toEqual(['t:cli', 't:ioredis', 't:node-redis']);
    await sleep(0);
  });
});
