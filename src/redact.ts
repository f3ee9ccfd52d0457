// Secrets never reach the output: every message and log line that may hold a URL or an error text
// from a library goes through redact() (the CLI's output does too, as a last net). Defined once
// here. (Upstreams are named without credentials by src/upstream: endpointName.)

const MASK = '***';

/** Query parameters whose values are secrets (password=, sentinelPassword=, tls_key=, token=, ...). */
const SECRET_PARAMETER = /([?&;])([^=&#\s]*(?:pass|pwd|secret|token|auth|key)[^=&#\s]*)=[^&#\s]*/gi;

/**
 * One URL's text with its credentials masked: `user:password@` -> `user:***@`, and secret query
 * values -> `***`. Also for text that is not a valid URL (a config error echoes what it was
 * given): the user info is taken to run to the last `@`, as far as a password might reach.
 */
export function redactUrl(text: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/*/i.exec(text)?.[0] ?? '';
  let rest = text.slice(scheme.length);
  const at = rest.lastIndexOf('@');
  if (at !== -1) {
    const colon = rest.indexOf(':');
    if (colon !== -1 && colon < at) rest = `${rest.slice(0, colon + 1)}${MASK}${rest.slice(at)}`;
  }
  return scheme + rest.replace(SECRET_PARAMETER, (_, separator: string, name: string) => `${separator}${name}=${MASK}`);
}

/** A URL inside free text (ends at white space or a quote). */
const URL_IN_TEXT = /[a-z][a-z0-9+.-]*:\/\/[^\s'"`<>]*/gi;
/** A PEM private key (a TLS key's text), wherever it appears. */
const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g;

/** A message (log line, error text, output line) with every URL's credentials and any private key masked. */
export function redact(message: string): string {
  return message.replace(PRIVATE_KEY, '[private key]').replace(URL_IN_TEXT, redactUrl);
}
