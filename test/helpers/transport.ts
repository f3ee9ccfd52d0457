// How tests reach Redis and the proxy: plain TCP, TLS (mutual, on both sides of the proxy) or
// Unix sockets (both sides). Test files that run under every transport read `transport` (plain
// TCP unless a wrapper file chose another with useTransport before importing them), so one file
// is the test for all three.
import { connect as netConnect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import type { RedisOptions } from 'ioredis';
import type { RunningProxy } from '../../src/index.js';
import { makeCertificates, type TestCertificates } from './certificates.js';
import { freePort, type RedisServer, type RedisServerOptions } from './redis-server.js';

export type TransportName = 'tcp' | 'tls' | 'unix';

/** Where a client connects. */
export type Target = { port: number; host?: string; tls?: TestCertificates } | { path: string };

export interface Transport {
  name: TransportName;
  /** Options for startRedis: the transport's port or socket, besides the plain port for admin work. */
  redis(): RedisServerOptions;
  /** --upstream and listener flags of a proxy in front of `redis` over this transport. */
  proxyFlags(redis: RedisServer): Promise<string[]>;
  /** Redis reached directly over this transport. */
  direct(redis: RedisServer): Target;
  /** The proxy reached over this transport. */
  proxied(proxy: RunningProxy): Target;
}

let certificates: TestCertificates | null = null;
/** One set of certificates per test file. */
export function testCertificates(): TestCertificates {
  certificates ??= makeCertificates();
  return certificates;
}

export function removeTestCertificates(): void {
  certificates?.remove();
  certificates = null;
}

/** The flags of a proxy that speaks TLS to Redis with a client certificate (mutual TLS). */
export function upstreamTlsFlags(certs: TestCertificates): string[] {
  return ['--upstream-tls-ca-cert-file', certs.ca.cert, '--upstream-tls-cert-file', certs.client.cert, '--upstream-tls-key-file', certs.client.key];
}

/** The flags of a TLS listener that wants client certificates (tls-auth-clients yes). */
export async function listenerTlsFlags(certs: TestCertificates, authClients = 'yes'): Promise<string[]> {
  return [
    '--tls-port', String(await freePort()),
    '--tls-cert-file', certs.server.cert,
    '--tls-key-file', certs.server.key,
    '--tls-ca-cert-file', certs.ca.cert,
    '--tls-auth-clients', authClients,
  ];
}

export const TRANSPORTS: Record<TransportName, Transport> = {
  tcp: {
    name: 'tcp',
    redis: () => ({}),
    proxyFlags: async (redis) => ['--port', String(await freePort()), '--upstream', redis.url],
    direct: (redis) => ({ port: redis.port }),
    proxied: (proxy) => ({ port: proxy.port }),
  },
  // Mutual TLS on both sides: Redis wants the proxy's client certificate, the proxy wants the client's.
  tls: {
    name: 'tls',
    redis: () => ({ tls: { certificates: testCertificates(), authClients: 'yes' } }),
    proxyFlags: async (redis) => [
      '--port', '0',
      ...(await listenerTlsFlags(testCertificates())),
      '--upstream', redis.tlsUrl,
      ...upstreamTlsFlags(testCertificates()),
    ],
    direct: (redis) => ({ port: redis.tlsPort, tls: testCertificates() }),
    proxied: (proxy) => ({ port: proxy.tlsPort!, tls: testCertificates() }),
  },
  unix: {
    name: 'unix',
    redis: () => ({ unixSocket: true }),
    proxyFlags: async (redis) => ['--port', '0', '--unixsocket', join(redis.dir, 'proxy.sock'), '--unixsocketperm', '700', '--upstream', `unix://${redis.socketPath}`],
    direct: (redis) => ({ path: redis.socketPath }),
    proxied: (proxy) => ({ path: proxy.unixSocket! }),
  },
};

let selected: Transport = TRANSPORTS.tcp;

/** For wrapper test files: the transport the file they import next runs under. */
export function useTransport(name: TransportName): void {
  selected = TRANSPORTS[name];
}

export function transport(): Transport {
  return selected;
}

/** Opens a connection to `target`; resolves when bytes may flow (after the TLS handshake). */
export function connectTo(target: Target): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let socket: Socket;
    if ('path' in target) {
      socket = netConnect({ path: target.path }, () => resolve(socket));
    } else if (target.tls) {
      const certs = target.tls;
      socket = tlsConnect(
        { host: '127.0.0.1', port: target.port, ca: readFileSync(certs.ca.cert), cert: readFileSync(certs.client.cert), key: readFileSync(certs.client.key) },
        () => resolve(socket),
      );
    } else {
      socket = netConnect({ host: target.host ?? '127.0.0.1', port: target.port }, () => resolve(socket));
    }
    socket.once('error', reject);
  });
}

/** ioredis options for `target`. */
export function ioredisTarget(target: Target): RedisOptions {
  if ('path' in target) return { path: target.path };
  if (!target.tls) return { host: '127.0.0.1', port: target.port };
  const certs = target.tls;
  return { host: '127.0.0.1', port: target.port, tls: { ca: readFileSync(certs.ca.cert), cert: readFileSync(certs.client.cert), key: readFileSync(certs.client.key) } };
}
