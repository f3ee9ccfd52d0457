// TLS to Redis and to the sentinels (rediss://, --upstream-tls-*), with Node's own tls module: one
// secure context (CA, client certificate and key), made at start and again on SIGHUP, and the
// server's certificate checked against the name it must carry. Start-up failures are told in
// words that name the flag to look at.
import { isIP, type Socket } from 'node:net';
import { checkServerIdentity, connect, type ConnectionOptions, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import type { UpstreamTlsConfig } from '../config.js';
import { loadCertificates, opensslReason, type CertificateFiles } from '../tls-files.js';

/** OpenSSL's verification results for a certificate no trusted CA signed. */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
]);
const OUT_OF_DATE = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

export class UpstreamTls {
  private context: SecureContext;

  constructor(private readonly config: UpstreamTlsConfig) {
    this.context = loadCertificates(this.files()).context;
  }

  get insecure(): boolean {
    return this.config.insecure;
  }

  /** Reads the files again (SIGHUP) for new connections; throws (keeping the old context) if one is bad. */
  reload(): void {
    this.context = loadCertificates(this.files()).context;
  }

  /** tls.connect options for a server at `host` (also ioredis's `tls` option, for sentinels). */
  optionsFor(host: string): ConnectionOptions {
    return {
      secureContext: this.context,
      // SNI carries names, not addresses; the certificate is checked against the address then.
      servername: this.config.serverName ?? (isIP(host) ? undefined : host),
      rejectUnauthorized: !this.config.insecure,
      checkServerIdentity: (name: string, certificate: PeerCertificate) => this.checkIdentity(name, certificate),
    };
  }

  connect(endpoint: { host: string; port: number }): TLSSocket {
    const socket = connect({ host: endpoint.host, port: endpoint.port, ...this.optionsFor(endpoint.host) });
    socket.setNoDelay(true);
    return socket;
  }

  /** TLS over `raw`, which connects later (to an address not known yet: see openSocket). */
  connectLater(raw: Socket): { socket: TLSSocket; connecting: (endpoint: { host: string }) => void } {
    let host: string | null = null;
    const socket = connect({
      socket: raw,
      secureContext: this.context,
      rejectUnauthorized: !this.config.insecure,
      checkServerIdentity: (_: string, certificate: PeerCertificate) => this.checkIdentity(host ?? '', certificate),
    });
    return {
      socket,
      connecting: (endpoint) => {
        host = endpoint.host;
        // What tls.connect does with its servername option, done once the host is known.
        const servername = this.optionsFor(endpoint.host).servername;
        if (servername) (socket as TLSSocket & { setServername(name: string): void }).setServername(servername);
      },
    };
  }

  /**
   * One line for a TLS failure at start that names what to check, or null if `error` is not a
   * TLS failure (refused, reset before TLS, ...). `what` names the server ("Redis at 10.0.0.5:6379").
   */
  describeFailure(error: NodeJS.ErrnoException, what: string): string | null {
    const code = error.code ?? '';
    const reason = opensslReason(error.message);
    const ca = this.config.caCertFile ? `--upstream-tls-ca-cert-file ${this.config.caCertFile}` : "Node's root CAs (no --upstream-tls-ca-cert-file)";
    if (UNTRUSTED.has(code)) return `TLS to ${what}: its certificate is not signed by a CA in ${ca} (${reason})`;
    if (OUT_OF_DATE.has(code)) return `TLS to ${what}: its certificate is out of date (${reason})`;
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      return `TLS to ${what}: its certificate does not carry the expected name (${reason}); see --upstream-tls-server-name`;
    }
    if (/ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE)/.test(code)) {
      const cert = this.config.certFile ? `--upstream-tls-cert-file ${this.config.certFile}` : 'no --upstream-tls-cert-file given';
      return `TLS to ${what}: the server refused the proxy's client certificate (${cert}): ${reason}`;
    }
    if (/^ERR_SSL_|^ERR_TLS_|^EPROTO$/.test(code)) return `TLS to ${what} failed (is it a TLS port?): ${reason}`;
    // ioredis's connect timeout runs until the handshake is done: a plain port never answers one.
    if (code === 'ETIMEDOUT') return `TLS to ${what}: no TLS handshake within the time allowed (is it a TLS port?)`;
    return null;
  }

  private checkIdentity(name: string, certificate: PeerCertificate): Error | undefined {
    if (this.config.insecure) return undefined;
    return checkServerIdentity(this.config.serverName ?? name, certificate);
  }

  private files(): CertificateFiles {
    const { caCertFile, certFile, keyFile } = this.config;
    return {
      ca: caCertFile === undefined ? undefined : { flag: '--upstream-tls-ca-cert-file', path: caCertFile },
      cert: certFile === undefined ? undefined : { flag: '--upstream-tls-cert-file', path: certFile },
      key: keyFile === undefined ? undefined : { flag: '--upstream-tls-key-file', path: keyFile },
    };
  }
}
