// Certificates for TLS tests, made with openssl (as Redis's own tests make theirs): a CA, a server
// certificate for localhost / 127.0.0.1 and a client certificate signed by it, a second server
// certificate by the same CA (for SIGHUP), and another CA with its own server and client
// certificates (the wrong CA). EC keys: quick to make.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface KeyPair {
  cert: string;
  key: string;
  /** The certificate's subject CN, to tell certificates apart in a test. */
  name: string;
}

export interface TestCertificates {
  dir: string;
  ca: KeyPair;
  server: KeyPair;
  /** Same CA, another subject: what SIGHUP switches to. */
  renewedServer: KeyPair;
  client: KeyPair;
  otherCa: KeyPair;
  otherServer: KeyPair;
  otherClient: KeyPair;
  remove(): void;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function authority(dir: string, name: string): KeyPair {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), name };
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', pair.key, '-out', pair.cert);
  return pair;
}

function signed(dir: string, ca: KeyPair, name: string, usage: 'server' | 'client'): KeyPair {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), name };
  const csr = join(dir, `${name}.csr`);
  const extensions = join(dir, `${name}.ext`);
  // A server certificate names where it is reached; a client certificate only who it is.
  writeFileSync(extensions, usage === 'server' ? 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' : 'extendedKeyUsage=clientAuth\n');
  openssl(dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`, '-keyout', pair.key, '-out', csr);
  openssl(dir, 'x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-extfile', extensions, '-out', pair.cert);
  return pair;
}

export function makeCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'notifylist-certs-'));
  const ca = authority(dir, 'test-ca');
  const otherCa = authority(dir, 'other-ca');
  return {
    dir,
    ca,
    server: signed(dir, ca, 'server', 'server'),
    renewedServer: signed(dir, ca, 'renewed-server', 'server'),
    client: signed(dir, ca, 'client', 'client'),
    otherCa,
    otherServer: signed(dir, otherCa, 'other-server', 'server'),
    otherClient: signed(dir, otherCa, 'other-client', 'client'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
