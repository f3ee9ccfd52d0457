// The listening side: accepts clients and gives each one a Session with its own upstream connection.
import { createServer, type Server, type Socket } from 'node:net';
import type { ProxyConfig } from '../config.js';
import type { ControlPlane } from '../notify/control-plane.js';
import { DENIED, isLocalAddress, type ProtectedMode } from './protected-mode.js';
import { Rewriter } from './rewrite.js';
import { Session, type SessionOptions } from './session.js';

export class ProxyServer {
  private readonly server: Server;
  private readonly sessions = new Set<Session>();
  private readonly options: SessionOptions;
  /** Clients waiting (unread, no upstream yet) for a fresh reading of Redis's protected mode. */
  private readonly deciding = new Set<Socket>();
  /** Listening on a Unix socket: its clients are local to Redis too (they have no remote address). */
  private unixSocket = false;

  /** `protectedMode`: null with --protected-mode no (every client is let through). */
  constructor(
    config: ProxyConfig,
    controlPlane: ControlPlane,
    private readonly protectedMode: ProtectedMode | null = null,
  ) {
    const rewriter = new Rewriter(controlPlane.names.prefix, controlPlane);
    this.options = {
      upstreamHost: config.upstream.host,
      upstreamPort: config.upstream.port,
      initialDb: config.upstream.db,
      limits: config.limits,
      registry: controlPlane.registry,
      rewriter,
      authRequired: () => controlPlane.authRequired(),
      registryIsCurrent: () => controlPlane.registryIsCurrent(),
      whenCurrent: () => controlPlane.whenCurrent(),
    };
    // allowHalfOpen: a client that half-closes still gets the replies to what it sent (as from Redis).
    // pauseOnConnect: nothing is read from a client before it is let in (a refused one is never read).
    this.server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (client) => this.accept(client));
  }

  get connections(): number {
    return this.sessions.size;
  }

  /** Redis's protected mode, on Redis's behalf (Redis sees the proxy's address for every session). */
  private accept(client: Socket): void {
    const local = isLocalAddress(client.remoteAddress) || this.unixSocket;
    const refuse = local || this.protectedMode === null ? false : this.protectedMode.refusesRemote();
    if (refuse === false) return this.startSession(client);
    if (refuse === true) return deny(client);
    this.deciding.add(client);
    client.on('error', () => client.destroy());
    void refuse.then((refused) => {
      this.deciding.delete(client);
      if (client.destroyed) return;
      if (refused) deny(client);
      else this.startSession(client);
    });
  }

  private startSession(client: Socket): void {
    // Reading starts as it does for a socket not paused on connect (the session pauses and
    // resumes it itself; it must still see the client's EOF while it waits for its upstream).
    client.read(0);
    const session = new Session(client, this.options, (closed) => this.sessions.delete(closed));
    this.sessions.add(session);
  }

  listen(port: number, host: string): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const address = this.server.address();
        this.unixSocket = typeof address === 'string';
        if (address && typeof address === 'object') resolve({ host: address.address, port: address.port });
        else reject(new Error('not listening on TCP'));
      });
    });
  }

  /** Stops accepting, ends every session, resolves when all connections are gone. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const client of this.deciding) client.destroy();
    for (const session of this.sessions) session.shutdown();
    await closed;
  }
}

/** As Redis does: the error line, then the connection is closed; nothing is read. */
function deny(client: Socket): void {
  client.on('error', () => client.destroy());
  client.end(DENIED, () => client.destroy());
}
