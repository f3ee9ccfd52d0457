// The listening side: accepts clients and gives each one a Session with its own upstream connection.
import type { Socket } from 'node:net';
import type { ProxyConfig } from '../config.js';
import type { ControlPlane } from '../notify/control-plane.js';
import type { Upstream } from '../upstream/upstream.js';
import { Listeners, type ListeningAddresses } from './listeners.js';
import { Rewriter } from './rewrite.js';
import { Session } from './session.js';

export class ProxyServer {
  private readonly listeners: Listeners;
  private readonly sessions = new Set<Session>();

  /** Throws a CertificateError if a TLS listener file is unreadable or invalid. */
  constructor(config: ProxyConfig, controlPlane: ControlPlane, upstream: Upstream) {
    const rewriter = new Rewriter(controlPlane.names.prefix, controlPlane);
    const options = {
      upstream,
      initialDb: config.upstream.db,
      limits: config.limits,
      registry: controlPlane.registry,
      rewriter,
      authRequired: () => controlPlane.authRequired(),
      registryIsCurrent: () => controlPlane.registryIsCurrent(),
      whenCurrent: () => controlPlane.whenCurrent(),
    };
    // Every listener (TCP, TLS, Unix socket) hands its clients here.
    this.listeners = new Listeners(config, (client: Socket) => {
      const session = new Session(client, options, (closed) => this.sessions.delete(closed));
      this.sessions.add(session);
    });
  }

  get connections(): number {
    return this.sessions.size;
  }

  listen(): Promise<ListeningAddresses> {
    return this.listeners.listen();
  }

  /** SIGHUP: the TLS listener's certificate files again (false: there is no TLS listener). */
  reloadCertificates(): boolean {
    return this.listeners.reloadCertificates();
  }

  /** Stops accepting, ends every session, resolves when all connections are gone. */
  async close(): Promise<void> {
    const closed = this.listeners.close();
    for (const session of this.sessions) session.shutdown();
    await closed;
  }
}
