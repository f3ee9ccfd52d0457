// Where clients connect, with Redis's names and meanings: plain TCP (--port; 0 turns it off),
// TLS (--tls-port, --tls-*-file, --tls-auth-clients yes|no|optional) and a Unix socket
// (--unixsocket, --unixsocketperm). Every accepted connection, whichever listener, goes to the
// same accept callback. SIGHUP reloads the certificate files for new TLS connections; open ones
// keep theirs.
import cluster from 'node:cluster';
import { chmodSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { ListenerTlsConfig, ProxyConfig } from '../config.js';
import { loadCertificates, type CertificateFiles } from '../tls-files.js';
import { ClientLimit } from '../operations/max-clients.js';

export interface ListeningAddresses {
  /** The plain TCP listener's address; port 0 when it is off. */
  host: string;
  port: number;
  tlsPort?: number;
  unixSocket?: string;
}

// allowHalfOpen: a client that half-closes still gets the replies to what it sent (as from Redis).
const SOCKET_OPTIONS = { allowHalfOpen: true, noDelay: true };
// pauseOnConnect: nothing is read from a plain client before it is let in (protected mode: a
// refused one is never read). (A TLS client is handed over after its handshake.)
const PLAIN_SOCKET_OPTIONS = { ...SOCKET_OPTIONS, pauseOnConnect: true };

/** `local`: from the Unix socket listener (Redis takes such clients as local). */
export type Accept = (client: Socket, local: boolean) => void;

export class Listeners {
  private readonly servers: Server[] = [];
  private readonly tlsServer: TlsServer | null = null;

  /** Throws a CertificateError if a TLS file is unreadable or invalid. */
  constructor(
    private readonly config: Pick<ProxyConfig, 'bind' | 'port' | 'tls' | 'unixSocket' | 'maxClients'>,
    accept: Accept,
  ) {
    // --maxclients: every listener's clients together, each counted from its TCP connection on.
    const limit = new ClientLimit(config.maxClients);
    if (config.port !== 0) this.servers.push(createServer(PLAIN_SOCKET_OPTIONS, (client) => limit.admit(client) && accept(client, false)));
    if (config.tls) {
      this.tlsServer = createTlsTarget(config.tls, (client) => accept(client, false));
      // Before the TLS server's own listener: a refused client gets no handshake.
      this.tlsServer.prependListener('connection', (raw: Socket) => limit.admit(raw, true));
      this.servers.push(this.tlsServer);
    }
    if (config.unixSocket) this.servers.push(createServer(PLAIN_SOCKET_OPTIONS, (client) => limit.admit(client) && accept(client, true)));
  }

  async listen(): Promise<ListeningAddresses> {
    const { bind, port, tls, unixSocket } = this.config;
    const servers = [...this.servers];
    const addresses: ListeningAddresses = { host: bind, port: 0 };
    if (port !== 0) Object.assign(addresses, await listenTcp(servers.shift()!, port, bind));
    if (tls) addresses.tlsPort = (await listenTcp(servers.shift()!, tls.port, bind)).port;
    if (unixSocket) {
      // As Redis: a socket file left by an earlier run is removed first (under --workers by the
      // primary: a worker would remove the socket the others share).
      try {
        if (!cluster.isWorker) unlinkSync(unixSocket.path);
      } catch {
        // none there
      }
      await listenOn(servers.shift()!, (server, done) => server.listen(unixSocket.path, done));
      if (unixSocket.perm !== undefined) chmodSync(unixSocket.path, unixSocket.perm);
      addresses.unixSocket = unixSocket.path;
    }
    return addresses;
  }

  /** SIGHUP: the TLS listener's files again, for new connections. Throws (keeping the old) if one is bad. */
  reloadCertificates(): boolean {
    if (!this.tlsServer || !this.config.tls) return false;
    const { ca, cert, key } = loadCertificates(certificateFiles(this.config.tls));
    this.tlsServer.setSecureContext({ ca, cert, key });
    return true;
  }

  /** Stops accepting; resolves when every listener is closed (open connections are the sessions'). */
  async close(): Promise<void> {
    await Promise.all(this.servers.filter((server) => server.listening).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

function certificateFiles(tls: ListenerTlsConfig): CertificateFiles {
  return {
    cert: { flag: '--tls-cert-file', path: tls.certFile },
    key: { flag: '--tls-key-file', path: tls.keyFile },
    ca: tls.caCertFile === undefined ? undefined : { flag: '--tls-ca-cert-file', path: tls.caCertFile },
  };
}

/**
 * tls-auth-clients: `yes` needs a certificate signed by the CA (without one, OpenSSL fails the
 * handshake as Redis does); `optional` checks one only if the client sends it; `no` asks for none.
 */
function createTlsTarget(tls: ListenerTlsConfig, accept: (client: Socket) => void): TlsServer {
  const { ca, cert, key } = loadCertificates(certificateFiles(tls));
  const server = createTlsServer(
    { ...SOCKET_OPTIONS, ca, cert, key, requestCert: tls.authClients !== 'no', rejectUnauthorized: tls.authClients === 'yes' },
    (client: TLSSocket) => {
      // optional: a certificate that was sent must verify (with yes, Node has closed such a client).
      if (tls.authClients === 'optional' && !client.authorized && Object.keys(client.getPeerCertificate()).length > 0) {
        reset(client);
        return;
      }
      accept(client);
    },
  );
  // A failed handshake (a plaintext client, no certificate with yes): Redis closes the connection
  // with a reset (it has not read everything); Node would close it politely.
  server.on('tlsClientError', (_error: Error, client: TLSSocket) => reset(client));
  return server;
}

/** Resets the TCP connection under a TLS socket (the raw socket Node's TLS server wraps). */
function reset(client: TLSSocket): void {
  const raw = (client as TLSSocket & { _parent?: Socket })._parent;
  if (raw && typeof raw.resetAndDestroy === 'function' && !raw.destroyed) raw.resetAndDestroy();
  else client.destroy();
}

function listenOn(server: Server, start: (server: Server, done: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    start(server, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

async function listenTcp(server: Server, port: number, host: string): Promise<{ host: string; port: number }> {
  await listenOn(server, (s, done) => s.listen(port, host, done));
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('not listening on TCP');
  return { host: address.address, port: address.port };
}
