// The listening side: accepts clients and gives each one a Session with its own upstream connection.
import { createServer, type Server } from 'node:net';
import type { ProxyConfig } from '../config.js';
import type { ControlPlane } from '../notify/control-plane.js';
import { Rewriter } from './rewrite.js';
import { Session } from './session.js';

export class ProxyServer {
  private readonly server: Server;
  private readonly sessions = new Set<Session>();

  constructor(config: ProxyConfig, controlPlane: ControlPlane) {
    const rewriter = new Rewriter(controlPlane.names.prefix, controlPlane);
    const options = {
      upstreamHost: config.upstream.host,
      upstreamPort: config.upstream.port,
      initialDb: config.upstream.db,
      limits: config.limits,
      registry: controlPlane.registry,
      rewriter,
      authRequired: () => controlPlane.authRequired(),
      authRequiredNow: () => controlPlane.authRequiredNow(),
      recheckAuth: () => controlPlane.recheckAuth(),
      registryIsCurrent: () => controlPlane.registryIsCurrent(),
      whenCurrent: () => controlPlane.whenCurrent(),
    };
    // allowHalfOpen: a client that half-closes still gets the replies to what it sent (as from Redis).
    this.server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
      const session = new Session(client, options, (closed) => this.sessions.delete(closed));
      this.sessions.add(session);
    });
  }

  get connections(): number {
    return this.sessions.size;
  }

  listen(port: number, host: string): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const address = this.server.address();
        if (address && typeof address === 'object') resolve({ host: address.address, port: address.port });
        else reject(new Error('not listening on TCP'));
      });
    });
  }

  /** Stops accepting, ends every session, resolves when all connections are gone. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) session.shutdown();
    await closed;
  }
}
