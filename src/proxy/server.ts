// The listening side: accepts clients (on every listener) and gives each one a Session with its
// own upstream connection, after applying Redis's protected mode on Redis's behalf.
import type { Socket } from 'node:net';
import type { ProxyConfig } from '../config.js';
import type { ControlPlane } from '../notify/control-plane.js';
import type { Upstream } from '../upstream/upstream.js';
import { Listeners, type ListeningAddresses } from './listeners.js';
import { DENIED, isLocalAddress, type ProtectedMode } from './protected-mode.js';
import { Rewriter } from './rewrite.js';
import { Session, type SessionOptions } from './session.js';
import { SessionDrain } from '../operations/session-drain.js';
import type { Log } from '../operations/logger.js';
import { ProtocolErrorLog } from '../operations/protocol-error-log.js';

export class ProxyServer {
  private readonly listeners: Listeners;
  private readonly sessions = new Set<Session>();
  private readonly options: SessionOptions;
  /** Clients waiting (unread, no upstream yet) for a fresh reading of Redis's protected mode. */
  private readonly deciding = new Set<Socket>();
  private readonly protocolErrors: ProtocolErrorLog;

  /**
   * `protectedMode`: null with --protected-mode no (every client is let through). Throws a
   * CertificateError if a TLS listener file is unreadable or invalid.
   */
  constructor(
    config: ProxyConfig,
    controlPlane: ControlPlane,
    upstream: Upstream,
    private readonly protectedMode: ProtectedMode | null,
    log: Log,
  ) {
    this.protocolErrors = new ProtocolErrorLog(log);
    const rewriter = new Rewriter(controlPlane.names.prefix, controlPlane);
    this.options = {
      upstream,
      initialDb: config.upstream.db,
      limits: config.limits,
      registry: controlPlane.registry,
      rewriter,
      authRequired: () => controlPlane.authRequired(),
      authRequiredNow: () => controlPlane.authRequiredNow(),
      recheckAuth: () => controlPlane.recheckAuth(),
      registryIsCurrent: () => controlPlane.registryIsCurrent(),
      whenCurrent: () => controlPlane.whenCurrent(),
      counters: controlPlane.stats,
      protocolError: (client, error) => this.protocolErrors.report(client, error),
    };
    this.listeners = new Listeners(config, (client, local) => this.accept(client, local));
  }

  get connections(): number {
    return this.sessions.size;
  }

  /** Redis's protected mode, on Redis's behalf (Redis sees the proxy's address for every session). */
  private accept(client: Socket, fromUnixSocket: boolean): void {
    this.options.counters.clientConnectionsTotal++;
    const local = fromUnixSocket || isLocalAddress(client.remoteAddress);
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

  listen(): Promise<ListeningAddresses> {
    return this.listeners.listen();
  }

  /** SIGHUP: the TLS listener's certificate files again (false: there is no TLS listener). */
  reloadCertificates(): boolean {
    return this.listeners.reloadCertificates();
  }

  /**
   * Graceful drain (src/operations/drain.ts): stops accepting on every listener and starts each
   * session's drain; returns each session with its drain state.
   */
  drain(token: string): Array<{ session: Session; drain: SessionDrain }> {
    void this.listeners.close();
    for (const client of this.deciding) client.destroy();
    return [...this.sessions].map((session) => {
      const drain = new SessionDrain(token);
      session.drain(drain);
      return { session, drain };
    });
  }

  /** Stops accepting, ends every session, resolves when all connections are gone. */
  async close(): Promise<void> {
    const closed = this.listeners.close();
    for (const client of this.deciding) client.destroy();
    for (const session of this.sessions) session.shutdown();
    this.protocolErrors.flush();
    await closed;
  }
}

/** As Redis does: the error line, then the connection is closed; nothing is read. */
function deny(client: Socket): void {
  client.on('error', () => client.destroy());
  client.end(DENIED, () => client.destroy());
}
