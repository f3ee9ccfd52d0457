// Certificate and key files for TLS, on both sides (the TLS listener, and the connections to Redis
// and the sentinels): read as PEM and made into a secure context at once, so that a problem shows
// at start (one line naming the flag and the file) or on SIGHUP (the old context stays). Error
// messages name files and OpenSSL's reason, never their contents.
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';

export class CertificateError extends Error {}

/** A file given by a flag (the flag is named in errors). */
export interface PemFile {
  flag: string;
  path: string;
}

export interface CertificateFiles {
  /** Certificates of the CA(s) that sign the peer's certificate; without it, Node's root CAs. */
  ca?: PemFile;
  cert?: PemFile;
  key?: PemFile;
}

const PEM_LABEL = { certificate: /-----BEGIN (?:TRUSTED )?CERTIFICATE-----/, 'private key': /-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----/ };

function readPem(file: PemFile, kind: keyof typeof PEM_LABEL): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file.path);
  } catch (error) {
    throw new CertificateError(`${file.flag} ${file.path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (!PEM_LABEL[kind].test(bytes.toString('latin1'))) throw new CertificateError(`${file.flag} ${file.path}: no PEM ${kind} in it`);
  return bytes;
}

/** The files' contents, and the context made of them (made to check them, too). */
export interface Certificates {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  context: SecureContext;
}

/** Reads the files and builds the context; throws a CertificateError naming what is wrong. */
export function loadCertificates(files: CertificateFiles): Certificates {
  const ca = files.ca && readPem(files.ca, 'certificate');
  const cert = files.cert && readPem(files.cert, 'certificate');
  const key = files.key && readPem(files.key, 'private key');
  try {
    return { ca, cert, key, context: createSecureContext({ ca, cert, key }) };
  } catch (error) {
    const named = [files.cert, files.key, files.ca].filter((file): file is PemFile => file !== undefined);
    throw new CertificateError(`${named.map((file) => `${file.flag} ${file.path}`).join(', ')}: ${opensslReason((error as Error).message)}`);
  }
}

/**
 * OpenSSL's reason ("key values mismatch", "tlsv13 alert certificate required") without the
 * error codes, function and source file around it; other messages as they are.
 */
export function opensslReason(message: string): string {
  const match = /^(?:[0-9A-F]+:)?error:[0-9A-F]+:[^:]*:[^:]*:([^:]+)/.exec(message);
  return match ? match[1] : message;
}
