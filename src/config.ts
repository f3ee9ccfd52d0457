// Settings of one proxy: command-line flags override environment variables override defaults.
import type { FramerLimits } from './resp/request-framer.js';
import { DEFAULT_LIMITS } from './resp/request-framer.js';
import { redact, redactUrl } from './redact.js';

export interface UpstreamAddress {
  host: string;
  port: number;
  /** Credentials for the proxy's own control connections only: client sessions authenticate themselves. */
  username?: string;
  password?: string;
  /** Database new client sessions start in (SELECT before the client's first command). */
  db: number;
}

export interface ProxyConfig {
  bind: string;
  port: number;
  upstream: UpstreamAddress;
  /** Prefix of every internal key and channel; the same for every proxy in front of one Redis. */
  prefix: string;
  limits: FramerLimits;
  /** Reaper lease time to live; a dead leader is replaced within about this long. */
  leaseMs: number;
  /** Start-up (connect, checks, preparing Redis) must finish within this long. */
  connectTimeoutMs: number;
  /**
   * Refuse non-loopback clients as Redis's protected mode would (Redis sees every session coming
   * from the proxy's address, so it cannot): while Redis has protected-mode yes and its default
   * user nopass. `--protected-mode no` turns it off, as in redis.conf.
   */
  protectedMode: boolean;
}

export const DEFAULTS = {
  bind: '127.0.0.1',
  port: 6380,
  upstream: 'redis://127.0.0.1:6379',
  prefix: 'notifylist:',
  leaseMs: 3000,
  connectTimeoutMs: 5000,
  protectedMode: 'yes',
} as const;

export class ConfigError extends Error {}

export function parseUpstreamUrl(text: string): UpstreamAddress {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`invalid upstream URL '${redactUrl(text)}' (expected redis://host[:port][/db], with user:password@ or :password@ before the host if needed)`);
  }
  if (url.protocol !== 'redis:') throw new ConfigError(`unsupported upstream URL scheme '${url.protocol}' (only redis://)`);
  const dbText = url.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0) {
    // A password with a '/' in it can end up in the path (`redis://u:12/34@host`): echo plain names only.
    if (/^[\w.-]*$/.test(dbText)) throw new ConfigError(`invalid database '${dbText}' in upstream URL`);
    throw new ConfigError(`invalid database in upstream URL '${redactUrl(text)}'`);
  }
  const port = url.port === '' ? 6379 : Number(url.port);
  return {
    host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port,
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    db,
  };
}

const ENVIRONMENT: Record<string, string> = {
  bind: 'NOTIFYLIST_BIND',
  port: 'NOTIFYLIST_PORT',
  upstream: 'NOTIFYLIST_UPSTREAM',
  prefix: 'NOTIFYLIST_PREFIX',
  'max-bulk-length': 'NOTIFYLIST_MAX_BULK_LENGTH',
  'max-multibulk-length': 'NOTIFYLIST_MAX_MULTIBULK_LENGTH',
  'max-inline-length': 'NOTIFYLIST_MAX_INLINE_LENGTH',
  'lease-ms': 'NOTIFYLIST_LEASE_MS',
  'connect-timeout-ms': 'NOTIFYLIST_CONNECT_TIMEOUT_MS',
  'protected-mode': 'NOTIFYLIST_PROTECTED_MODE',
};

export const USAGE = `Usage: notifylist-proxy [options]

A RESP proxy in front of Redis that turns key writes and expirations into events in Redis lists.

Options (each also from the environment variable shown):
  --bind <address>              listen address (NOTIFYLIST_BIND, default ${DEFAULTS.bind})
  --port <port>                 listen port (NOTIFYLIST_PORT, default ${DEFAULTS.port})
  --upstream <url>              redis://[user[:password]@]host[:port][/db] (NOTIFYLIST_UPSTREAM,
                                default ${DEFAULTS.upstream}); user and password are used by the
                                proxy's own control connections, db is where client sessions start
  --prefix <prefix>             internal key prefix, printable ASCII (NOTIFYLIST_PREFIX, default ${DEFAULTS.prefix})
  --max-bulk-length <bytes>     largest bulk argument (NOTIFYLIST_MAX_BULK_LENGTH, default ${DEFAULT_LIMITS.maxBulkLength})
  --max-multibulk-length <n>    most arguments in one request (NOTIFYLIST_MAX_MULTIBULK_LENGTH, default ${DEFAULT_LIMITS.maxMultibulkLength})
  --max-inline-length <bytes>   longest inline request (NOTIFYLIST_MAX_INLINE_LENGTH, default ${DEFAULT_LIMITS.maxInlineLength})
  --lease-ms <ms>               reaper leader lease (NOTIFYLIST_LEASE_MS, default ${DEFAULTS.leaseMs})
  --connect-timeout-ms <ms>     start-up must reach and prepare Redis within this long
                                (NOTIFYLIST_CONNECT_TIMEOUT_MS, default ${DEFAULTS.connectTimeoutMs})
  --protected-mode yes|no       refuse non-loopback clients, with Redis's -DENIED error, while
                                Redis has protected-mode yes and a default user without password
                                (NOTIFYLIST_PROTECTED_MODE, default ${DEFAULTS.protectedMode})
  --uninstall                   remove from Redis what the proxy put there (library, internal
                                keys in every database), print it, and exit; uses --upstream, --prefix
  --version                     print the version and exit
  --help                        this text
`;

/** What the command line asks for. */
export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'run'; config: ProxyConfig }
  | { kind: 'uninstall'; config: ProxyConfig };

/** --help, --version and --uninstall (flags without a value), then the settings. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv = process.env): Command {
  if (argv.includes('--help') || argv.includes('-h')) return { kind: 'help' };
  if (argv.includes('--version')) return { kind: 'version' };
  const uninstall = argv.includes('--uninstall');
  const config = parseConfig(argv.filter((arg) => arg !== '--uninstall'), env);
  if (config === null) return { kind: 'help' };
  return { kind: uninstall ? 'uninstall' : 'run', config };
}

/**
 * The prefix is compared with keys and channels as bytes, and spelled into Lua, ACL and glob
 * patterns: printable ASCII keeps every one of those spellings the same bytes.
 */
function checkPrefix(prefix: string): string {
  if (!/^[\x20-\x7e]+$/.test(prefix)) {
    throw new ConfigError(`--prefix must be non-empty printable ASCII (bytes 0x20-0x7e), got ${JSON.stringify(prefix)}`);
  }
  return prefix;
}

/** Returns null when --help was asked for. */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ProxyConfig | null {
  const values = new Map<string, string>();
  for (const [name, variable] of Object.entries(ENVIRONMENT)) {
    const value = env[variable];
    if (value !== undefined && value !== '') values.set(name, value);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return null;
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    // Only the option's name: a mistyped `--upstrem=redis://user:password@...` must not echo the value.
    if (!match || !(match[1] in ENVIRONMENT)) throw new ConfigError(`unknown option '${match ? `--${match[1]}` : redactUrl(arg)}' (see --help)`);
    const value = match[2] ?? argv[++i];
    if (value === undefined) throw new ConfigError(`option --${match[1]} needs a value`);
    values.set(match[1], value);
  }
  const integer = (name: string, fallback: number, min: number): number => {
    const text = values.get(name);
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new ConfigError(`--${name} must be an integer >= ${min}, got '${text}'`);
    return n;
  };
  const protectedMode = (values.get('protected-mode') ?? DEFAULTS.protectedMode).toLowerCase();
  if (protectedMode !== 'yes' && protectedMode !== 'no') throw new ConfigError(`--protected-mode must be yes or no, got '${redact(values.get('protected-mode')!)}'`);
  const port = integer('port', DEFAULTS.port, 0);
  if (port > 65535) throw new ConfigError(`--port must be at most 65535`);
  return {
    bind: values.get('bind') ?? DEFAULTS.bind,
    port,
    upstream: parseUpstreamUrl(values.get('upstream') ?? DEFAULTS.upstream),
    prefix: checkPrefix(values.get('prefix') ?? DEFAULTS.prefix),
    limits: {
      maxBulkLength: integer('max-bulk-length', DEFAULT_LIMITS.maxBulkLength, 1),
      maxMultibulkLength: integer('max-multibulk-length', DEFAULT_LIMITS.maxMultibulkLength, 1),
      maxInlineLength: integer('max-inline-length', DEFAULT_LIMITS.maxInlineLength, 1),
    },
    leaseMs: integer('lease-ms', DEFAULTS.leaseMs, 100),
    connectTimeoutMs: integer('connect-timeout-ms', DEFAULTS.connectTimeoutMs, 1),
    protectedMode: protectedMode === 'yes',
  };
}
