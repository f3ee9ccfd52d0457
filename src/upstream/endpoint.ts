// Where one Redis server is: host and port, or a Unix socket's path; and the socket to it.
import { connect, isIP, Socket } from 'node:net';
import type { UpstreamTls } from './tls.js';

export type Endpoint = { host: string; port: number } | { path: string };

export function endpointName(endpoint: Endpoint): string {
  if ('path' in endpoint) return endpoint.path;
  return isIP(endpoint.host) === 6 ? `[${endpoint.host}]:${endpoint.port}` : `${endpoint.host}:${endpoint.port}`;
}

export function sameEndpoint(a: Endpoint | null, b: Endpoint | null): boolean {
  if (a === null || b === null) return a === b;
  if ('path' in a || 'path' in b) return 'path' in a && 'path' in b && a.path === b.path;
  return a.host === b.host && a.port === b.port;
}

/** A socket to Redis and the event after which RESP may flow on it. */
export interface OpenSocket {
  socket: Socket;
  readyEvent: 'connect' | 'secureConnect';
}

/**
 * Opens a connection to `endpoint` (TLS if `tls`), or, with `later`, returns the socket at once and
 * connects it when `later` resolves with the endpoint (a Sentinel master not known yet): writes
 * made meanwhile wait in the socket. A rejected `later` destroys the socket with its error.
 */
export function openSocket(target: Endpoint | Promise<Endpoint>, tls: UpstreamTls | null): OpenSocket {
  if (!(target instanceof Promise)) {
    if ('path' in target) return { socket: connect({ path: target.path }), readyEvent: 'connect' };
    if (tls) return { socket: tls.connect(target), readyEvent: 'secureConnect' };
    return { socket: connect({ host: target.host, port: target.port, noDelay: true }), readyEvent: 'connect' };
  }
  const raw = new Socket();
  const late = tls ? tls.connectLater(raw) : null;
  target.then(
    (known) => {
      const socket = late?.socket ?? raw;
      if (socket.destroyed) return;
      if ('path' in known) {
        raw.connect({ path: known.path });
        return;
      }
      late?.connecting(known);
      raw.setNoDelay(true);
      raw.connect({ host: known.host, port: known.port });
    },
    (error: Error) => (late?.socket ?? raw).destroy(error),
  );
  return late ? { socket: late.socket, readyEvent: 'secureConnect' } : { socket: raw, readyEvent: 'connect' };
}
