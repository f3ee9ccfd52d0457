// Settings of one proxy: command-line flags override environment variables override the config
// file (--config) overrides defaults.
import type { FramerLimits } from './resp/request-framer.js';
import { DEFAULT_LIMITS } from './resp/request-framer.js';
import { availableParallelism } from 'node:os';
import { redact, redactUrl } from './redact.js';
import { ConfigFileError, readConfigFile, type FileSetting } from './operations/config-file.js';
import { DEFAULT_LOG_FORMAT, DEFAULT_LOG_LEVEL, LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevelSetting } from './operations/logger.js';

export interface UpstreamAddress {
  host: string;
  port: number;
  /** unix:// upstream: the socket's path (host and port are not used). */
  socketPath?: string;
  /** Credentials for the proxy's own control connections only: client sessions authenticate themselves. */
  username?: string;
  password?: string;
  /** Database new client sessions start in (SELECT before the client's first command). */
  db: number;
  /** rediss://: every connection to Redis (and to the sentinels) is TLS. */
  tls?: UpstreamTlsConfig;
}

/** The --upstream-tls-* flags, named after Redis's own tls-* options. */
export interface UpstreamTlsConfig {
  caCertFile?: string;
  /** Client certificate and key, for Redis's `tls-auth-clients yes`. */
  certFile?: string;
  keyFile?: string;
  /** Name the server's certificate must carry; default: the host connected to. */
  serverName?: string;
  /** No verification of the server's certificate at all. */
  insecure: boolean;
}

/** --sentinel: the master is the one these sentinels name (src/upstream/sentinel.ts). */
export interface SentinelConfig {
  sentinels: Array<{ host: string; port: number }>;
  masterName: string;
  /** Credentials for the sentinels themselves (Redis's come from --upstream). */
  username?: string;
  password?: string;
}

/** The TLS listener for clients (--tls-port and Redis's other tls-* names). */
export interface ListenerTlsConfig {
  port: number;
  certFile: string;
  keyFile: string;
  caCertFile?: string;
  /** As Redis's tls-auth-clients: yes (a valid certificate required), no, optional (checked if sent). */
  authClients: 'yes' | 'no' | 'optional';
}

/** The Unix socket listener for clients (--unixsocket, --unixsocketperm). */
export interface UnixSocketConfig {
  path: string;
  /** File mode (octal in the flag, as Redis's unixsocketperm); undefined: as the umask makes it. */
  perm?: number;
}

export interface ProxyConfig {
  bind: string;
  /** Plain TCP listener; 0 turns it off (as in Redis). */
  port: number;
  tls?: ListenerTlsConfig;
  unixSocket?: UnixSocketConfig;
  upstream: UpstreamAddress;
  sentinel?: SentinelConfig;
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
  // ---- operations: metrics, health, workers (src/operations/) ----
  /** HTTP port of /metrics, /healthz and /readyz; 0: none. */
  metricsPort: number;
  metricsBind: string;
  /** Proxy processes (node:cluster) sharing the listeners; 1: this process is the proxy. */
  workers: number;
  // Operations: graceful drain and the client limit (src/operations/drain.ts, max-clients.ts).
  /** SIGTERM / SIGINT: the drain ends (and the process exits) within this long. */
  drainMs: number;
  /** Largest value an event WITH value carries, and an expired key's copy holds (larger: its length). */
  maxValueBytes: number;
  /** Clients at once, every listener together; one more gets Redis's own error (as maxclients). */
  maxClients: number;
  // Logs (src/operations/logger.ts).
  logLevel: LogLevelSetting;
  logFormat: LogFormat;
}

export const DEFAULTS = {
  bind: '127.0.0.1',
  port: 6380,
  upstream: 'redis://127.0.0.1:6379',
  prefix: 'notifylist:',
  leaseMs: 3000,
  connectTimeoutMs: 5000,
  protectedMode: 'yes',
  drainMs: 10_000,
  maxValueBytes: 65_536,
  maxClients: 10_000,
  metricsPort: 0,
  metricsBind: '127.0.0.1',
  workers: 1,
} as const;

export class ConfigError extends Error {}

const DEFAULT_REDIS_PORT = 6379;

// (Written so that redact() leaves it alone: no user:password@ after a scheme.)
const URL_FORMS = 'redis://host[:port][/db], rediss://... (TLS) or unix:///path[?db=N], with user:password@ or :password@ before the host or path if needed';

function parseDb(text: string): number {
  const db = text === '' ? 0 : Number(text);
  if (!Number.isInteger(db) || db < 0) {
    // A password with a '/' in it can end up in the path (`redis://u:12/34@host`): echo plain names only.
    if (/^[\w.-]*$/.test(text)) throw new ConfigError(`invalid database '${text}' in upstream URL`);
    throw new ConfigError('invalid database in upstream URL');
  }
  return db;
}

const decoded = (text: string | undefined): string | undefined => (text ? decodeURIComponent(text) : undefined);

/**
 * unix://[user[:password]@]/path[?db=N]. By hand: the WHATWG URL parser refuses credentials
 * without a host. The URL is never echoed in errors (it may hold a password).
 */
function parseUnixUrl(text: string): UpstreamAddress {
  const match = /^unix:\/\/(?:([^@/]*)@)?(\/[^?#]*)(?:\?([^#]*))?$/.exec(text);
  if (!match) throw new ConfigError(`invalid unix upstream URL (expected unix://[user[:password]@]/path[?db=N])`);
  const [, credentials, path, query] = match;
  const colon = credentials?.indexOf(':') ?? -1;
  const params = new URLSearchParams(query ?? '');
  for (const name of params.keys()) if (name !== 'db') throw new ConfigError(`unknown parameter '${name}' in unix upstream URL (only db)`);
  return {
    host: '',
    port: 0,
    socketPath: decodeURIComponent(path),
    username: decoded(colon === -1 ? credentials : credentials!.slice(0, colon)),
    password: decoded(colon === -1 ? undefined : credentials!.slice(colon + 1)),
    db: parseDb(params.get('db') ?? ''),
  };
}

export function parseUpstreamUrl(text: string): UpstreamAddress {
  if (text.startsWith('unix:')) return parseUnixUrl(text);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`invalid upstream URL '${redactUrl(text)}' (expected ${URL_FORMS})`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError(`unsupported upstream URL scheme '${url.protocol}' (redis://, rediss:// or unix://)`);
  }
  const port = url.port === '' ? DEFAULT_REDIS_PORT : Number(url.port);
  return {
    host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port,
    username: decoded(url.username),
    password: decoded(url.password),
    db: parseDb(url.pathname.replace(/^\//, '')),
    tls: url.protocol === 'rediss:' ? { insecure: false } : undefined,
  };
}

/** host:port[,host:port...] (a sentinel's default port is 26379, as Redis's). */
function parseSentinels(text: string): Array<{ host: string; port: number }> {
  return text.split(',').map((item) => {
    const match = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d+))?$/.exec(item.trim());
    const port = match?.[3] === undefined ? 26379 : Number(match[3]);
    if (!match || port < 1 || port > 65535) throw new ConfigError(`--sentinel: '${item}' is not host:port`);
    return { host: match[1] ?? match[2], port };
  });
}

/** Every setting: its name (a flag without `--`, a config file's name) and its environment variable. */
export const ENVIRONMENT: Readonly<Record<string, string>> = {
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
  'tls-port': 'NOTIFYLIST_TLS_PORT',
  'tls-cert-file': 'NOTIFYLIST_TLS_CERT_FILE',
  'tls-key-file': 'NOTIFYLIST_TLS_KEY_FILE',
  'tls-ca-cert-file': 'NOTIFYLIST_TLS_CA_CERT_FILE',
  'tls-auth-clients': 'NOTIFYLIST_TLS_AUTH_CLIENTS',
  unixsocket: 'NOTIFYLIST_UNIXSOCKET',
  unixsocketperm: 'NOTIFYLIST_UNIXSOCKETPERM',
  'upstream-tls-ca-cert-file': 'NOTIFYLIST_UPSTREAM_TLS_CA_CERT_FILE',
  'upstream-tls-cert-file': 'NOTIFYLIST_UPSTREAM_TLS_CERT_FILE',
  'upstream-tls-key-file': 'NOTIFYLIST_UPSTREAM_TLS_KEY_FILE',
  'upstream-tls-server-name': 'NOTIFYLIST_UPSTREAM_TLS_SERVER_NAME',
  'upstream-tls-insecure': 'NOTIFYLIST_UPSTREAM_TLS_INSECURE',
  sentinel: 'NOTIFYLIST_SENTINEL',
  'sentinel-master': 'NOTIFYLIST_SENTINEL_MASTER',
  'sentinel-user': 'NOTIFYLIST_SENTINEL_USER',
  'sentinel-password': 'NOTIFYLIST_SENTINEL_PASSWORD',
  // operations: metrics, health, workers
  'metrics-port': 'NOTIFYLIST_METRICS_PORT',
  'metrics-bind': 'NOTIFYLIST_METRICS_BIND',
  workers: 'NOTIFYLIST_WORKERS',
  // Operations: drain and limits.
  'drain-ms': 'NOTIFYLIST_DRAIN_MS',
  'max-value-bytes': 'NOTIFYLIST_MAX_VALUE_BYTES',
  maxclients: 'NOTIFYLIST_MAXCLIENTS',
  // Logs and the config file (src/operations/logger.ts, config-file.ts).
  'log-level': 'NOTIFYLIST_LOG_LEVEL',
  'log-format': 'NOTIFYLIST_LOG_FORMAT',
  config: 'NOTIFYLIST_CONFIG',
};

/** Options without a value on the command line (yes/no in the environment). */
const SWITCHES = new Set(['upstream-tls-insecure']);

export const USAGE = `Usage: notifylist-proxy [options]

A RESP proxy in front of Redis that turns key writes and expirations into events in Redis lists.

Options (each also from the environment variable shown, or as \`name value\` in the --config file):
  --config <file>               settings in redis.conf syntax, one \`name value\` per line with the
                                names below without --, # comments (NOTIFYLIST_CONFIG); flags win
                                over the environment, the environment over the file
  --bind <address>              listen address (NOTIFYLIST_BIND, default ${DEFAULTS.bind})
  --port <port>                 listen port, 0: no plain TCP port (NOTIFYLIST_PORT, default ${DEFAULTS.port})
  --tls-port <port>             TLS listen port (NOTIFYLIST_TLS_PORT); with --tls-cert-file <file>
                                (NOTIFYLIST_TLS_CERT_FILE), --tls-key-file <file>
                                (NOTIFYLIST_TLS_KEY_FILE), --tls-ca-cert-file <file>
                                (NOTIFYLIST_TLS_CA_CERT_FILE) and --tls-auth-clients yes|no|optional
                                (NOTIFYLIST_TLS_AUTH_CLIENTS, default yes: clients need a certificate
                                signed by the CA); SIGHUP reloads the files for new connections
  --unixsocket <path>           Unix socket to listen on (NOTIFYLIST_UNIXSOCKET), mode from
                                --unixsocketperm <octal> (NOTIFYLIST_UNIXSOCKETPERM)
  --upstream <url>              redis://[user[:password]@]host[:port][/db], rediss://... (TLS) or
                                unix://[user[:password]@]/path[?db=N] (NOTIFYLIST_UPSTREAM, default
                                ${DEFAULTS.upstream}); user and password are used by the proxy's own
                                control connections, db is where client sessions start
  --upstream-tls-ca-cert-file <file>, --upstream-tls-cert-file <file>, --upstream-tls-key-file <file>,
  --upstream-tls-server-name <name>, --upstream-tls-insecure
                                TLS to Redis and the sentinels (rediss://): the CA that signed their
                                certificates, a client certificate and key (for Redis's
                                tls-auth-clients), the name their certificate must carry (default:
                                the host connected to), or no verification at all (a switch: yes or
                                no in the environment and the file); NOTIFYLIST_UPSTREAM_TLS_CA_CERT_FILE,
                                NOTIFYLIST_UPSTREAM_TLS_CERT_FILE, NOTIFYLIST_UPSTREAM_TLS_KEY_FILE,
                                NOTIFYLIST_UPSTREAM_TLS_SERVER_NAME, NOTIFYLIST_UPSTREAM_TLS_INSECURE
  --sentinel <host:port,...>    ask these sentinels for the master and follow failovers
                                (NOTIFYLIST_SENTINEL); with --sentinel-master <name>
                                (NOTIFYLIST_SENTINEL_MASTER), and --sentinel-user <user>
                                (NOTIFYLIST_SENTINEL_USER) / --sentinel-password <password>
                                (NOTIFYLIST_SENTINEL_PASSWORD) for the sentinels themselves;
                                --upstream then gives only credentials, db and TLS
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
  --metrics-port <port>         HTTP port of /metrics (Prometheus), /healthz and /readyz, 0: none
                                (NOTIFYLIST_METRICS_PORT, default ${DEFAULTS.metricsPort}); on --metrics-bind <address>
                                (NOTIFYLIST_METRICS_BIND, default ${DEFAULTS.metricsBind})
  --workers <n>|auto            proxy processes sharing the ports, restarted if they die; auto:
                                one per core (NOTIFYLIST_WORKERS, default ${DEFAULTS.workers}: this process)
  --drain-ms <ms>               on SIGTERM / SIGINT: stop accepting, write the replies to what was
                                forwarded, close idle clients, then blocked and subscribed ones,
                                exit 0 within this long (NOTIFYLIST_DRAIN_MS, default ${DEFAULTS.drainMs})
  --max-value-bytes <bytes>     largest value an event WITH value carries and an expired key's copy
                                holds; a larger one: its length only (NOTIFYLIST_MAX_VALUE_BYTES,
                                default ${DEFAULTS.maxValueBytes})
  --maxclients <n>              clients at once on all listeners together; one more gets Redis's
                                -ERR max number of clients reached (NOTIFYLIST_MAXCLIENTS, default ${DEFAULTS.maxClients})
  --log-level <level>           fatal, error, warn, info, debug, trace or silent
                                (NOTIFYLIST_LOG_LEVEL, default ${DEFAULT_LOG_LEVEL}); logs are JSON lines on stdout
  --log-format json|pretty      pretty: human lines, for a terminal (NOTIFYLIST_LOG_FORMAT, default ${DEFAULT_LOG_FORMAT})
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
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return null;
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    // Only the option's name: a mistyped `--upstrem=redis://user:password@...` must not echo the value.
    if (!match || !(match[1] in ENVIRONMENT)) throw new ConfigError(`unknown option '${match ? `--${match[1]}` : redactUrl(arg)}' (see --help)`);
    const value = match[2] ?? (SWITCHES.has(match[1]) ? 'yes' : argv[++i]);
    if (value === undefined) throw new ConfigError(`option --${match[1]} needs a value`);
    flags.set(match[1], value);
  }
  // The file first, then the environment over it, then the flags over both.
  const values = new Map<string, string>();
  const environment = new Map<string, string>();
  for (const [name, variable] of Object.entries(ENVIRONMENT)) {
    const value = env[variable];
    if (value !== undefined && value !== '') environment.set(name, value);
  }
  const file = flags.get('config') ?? environment.get('config');
  const fromFile = file === undefined ? new Map<string, FileSetting>() : settingsOfFile(file);
  for (const [name, { value }] of fromFile) values.set(name, value);
  for (const [name, value] of [...environment, ...flags]) values.set(name, value);
  try {
    return configFrom(values);
  } catch (error) {
    // A bad value read from the file: say where it is.
    const name = error instanceof ConfigError ? /--([a-z-]+)/.exec(error.message)?.[1] : undefined;
    const setting = name === undefined || flags.has(name) || environment.has(name) ? undefined : fromFile.get(name);
    if (setting) throw new ConfigError(`${file}:${setting.line}: ${(error as Error).message}`);
    throw error;
  }
}

function settingsOfFile(path: string): Map<string, FileSetting> {
  try {
    return readConfigFile(path, new Set(Object.keys(ENVIRONMENT)), SWITCHES);
  } catch (error) {
    if (error instanceof ConfigFileError) throw new ConfigError(error.message);
    throw error;
  }
}

function configFrom(values: Map<string, string>): ProxyConfig {
  const integer = (name: string, fallback: number, min: number): number => {
    const text = values.get(name);
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new ConfigError(`--${name} must be an integer >= ${min}, got '${text}'`);
    return n;
  };
  const protectedMode = (values.get('protected-mode') ?? DEFAULTS.protectedMode).toLowerCase();
  if (protectedMode !== 'yes' && protectedMode !== 'no') throw new ConfigError(`--protected-mode must be yes or no, got '${redact(values.get('protected-mode')!)}'`);
  const portNumber = (name: string, fallback: number): number => {
    const port = integer(name, fallback, 0);
    if (port > 65535) throw new ConfigError(`--${name} must be at most 65535`);
    return port;
  };
  const port = portNumber('port', DEFAULTS.port);
  const upstream = parseUpstreamUrl(values.get('upstream') ?? DEFAULTS.upstream);
  upstream.tls = upstreamTls(values, upstream);
  const config: ProxyConfig = {
    bind: values.get('bind') ?? DEFAULTS.bind,
    port,
    tls: listenerTls(values, portNumber('tls-port', 0)),
    unixSocket: unixSocket(values),
    upstream,
    sentinel: sentinel(values, upstream),
    prefix: checkPrefix(values.get('prefix') ?? DEFAULTS.prefix),
    limits: {
      maxBulkLength: integer('max-bulk-length', DEFAULT_LIMITS.maxBulkLength, 1),
      maxMultibulkLength: integer('max-multibulk-length', DEFAULT_LIMITS.maxMultibulkLength, 1),
      maxInlineLength: integer('max-inline-length', DEFAULT_LIMITS.maxInlineLength, 1),
    },
    leaseMs: integer('lease-ms', DEFAULTS.leaseMs, 100),
    connectTimeoutMs: integer('connect-timeout-ms', DEFAULTS.connectTimeoutMs, 1),
    protectedMode: protectedMode === 'yes',
    ...operationsSettings(values, portNumber),
    // Operations: drain and limits.
    drainMs: integer('drain-ms', DEFAULTS.drainMs, 1),
    maxValueBytes: integer('max-value-bytes', DEFAULTS.maxValueBytes, 0),
    maxClients: integer('maxclients', DEFAULTS.maxClients, 1),
    logLevel: oneOf(values, 'log-level', LOG_LEVELS, DEFAULT_LOG_LEVEL),
    logFormat: oneOf(values, 'log-format', LOG_FORMATS, DEFAULT_LOG_FORMAT),
  };
  // Redis's own words for the same configuration.
  if (config.port === 0 && !config.tls && !config.unixSocket) {
    throw new ConfigError('configured to not listen anywhere (--port 0 without --tls-port or --unixsocket)');
  }
  return config;
}

/** --metrics-port, --metrics-bind, --workers. */
function operationsSettings(
  values: Map<string, string>,
  portNumber: (name: string, fallback: number) => number,
): Pick<ProxyConfig, 'metricsPort' | 'metricsBind' | 'workers'> {
  const workersText = values.get('workers') ?? String(DEFAULTS.workers);
  const workers = workersText === 'auto' ? availableParallelism() : Number(workersText);
  if (!Number.isInteger(workers) || workers < 1 || workers > 1024) {
    throw new ConfigError(`--workers must be auto or an integer from 1 to 1024, got '${redact(workersText)}'`);
  }
  return { metricsPort: portNumber('metrics-port', DEFAULTS.metricsPort), metricsBind: values.get('metrics-bind') ?? DEFAULTS.metricsBind, workers };
}

function oneOf<T extends string>(values: Map<string, string>, name: string, allowed: readonly T[], fallback: T): T {
  const value = values.get(name) ?? fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new ConfigError(`--${name} must be ${allowed.join(', ')}; got '${redact(value)}'`);
  return value as T;
}

/** A yes/no switch (flag without a value, or yes/no in the environment). */
function switchOn(values: Map<string, string>, name: string): boolean {
  const value = values.get(name);
  if (value === undefined || value === 'no') return false;
  if (value === 'yes') return true;
  throw new ConfigError(`--${name} takes no value (yes or no in the environment), got '${value}'`);
}

function upstreamTls(values: Map<string, string>, upstream: UpstreamAddress): UpstreamTlsConfig | undefined {
  const given = [...values.keys()].filter((name) => name.startsWith('upstream-tls-') && !(name === 'upstream-tls-insecure' && values.get(name) === 'no'));
  if (!upstream.tls) {
    if (given.length > 0) throw new ConfigError(`--${given[0]} needs a rediss:// upstream (TLS)`);
    return undefined;
  }
  const certFile = values.get('upstream-tls-cert-file');
  const keyFile = values.get('upstream-tls-key-file');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError('--upstream-tls-cert-file and --upstream-tls-key-file go together (a client certificate and its key)');
  }
  return {
    caCertFile: values.get('upstream-tls-ca-cert-file'),
    certFile,
    keyFile,
    serverName: values.get('upstream-tls-server-name'),
    insecure: switchOn(values, 'upstream-tls-insecure'),
  };
}

function listenerTls(values: Map<string, string>, port: number): ListenerTlsConfig | undefined {
  const files = ['tls-cert-file', 'tls-key-file', 'tls-ca-cert-file', 'tls-auth-clients'].filter((name) => values.has(name));
  if (port === 0) {
    if (files.length > 0) throw new ConfigError(`--${files[0]} needs --tls-port`);
    return undefined;
  }
  const certFile = values.get('tls-cert-file');
  const keyFile = values.get('tls-key-file');
  if (certFile === undefined || keyFile === undefined) throw new ConfigError('--tls-port needs --tls-cert-file and --tls-key-file');
  const authClients = values.get('tls-auth-clients') ?? 'yes';
  if (authClients !== 'yes' && authClients !== 'no' && authClients !== 'optional') {
    throw new ConfigError(`--tls-auth-clients must be yes, no or optional, got '${authClients}'`);
  }
  const caCertFile = values.get('tls-ca-cert-file');
  if (authClients !== 'no' && caCertFile === undefined) {
    throw new ConfigError(`--tls-ca-cert-file must be specified when --tls-auth-clients is ${authClients} (the default is yes; no turns client certificates off)`);
  }
  return { port, certFile, keyFile, caCertFile, authClients };
}

function unixSocket(values: Map<string, string>): UnixSocketConfig | undefined {
  const path = values.get('unixsocket');
  const perm = values.get('unixsocketperm');
  if (path === undefined) {
    if (perm !== undefined) throw new ConfigError('--unixsocketperm needs --unixsocket');
    return undefined;
  }
  if (perm !== undefined && !/^[0-7]{1,4}$/.test(perm)) throw new ConfigError(`--unixsocketperm must be an octal file mode such as 700, got '${perm}'`);
  return { path, perm: perm === undefined ? undefined : parseInt(perm, 8) };
}

function sentinel(values: Map<string, string>, upstream: UpstreamAddress): SentinelConfig | undefined {
  const list = values.get('sentinel');
  const masterName = values.get('sentinel-master');
  if (list === undefined) {
    const stray = ['sentinel-master', 'sentinel-user', 'sentinel-password'].find((name) => values.has(name));
    if (stray) throw new ConfigError(`--${stray} needs --sentinel`);
    return undefined;
  }
  if (masterName === undefined) throw new ConfigError('--sentinel needs --sentinel-master <name>');
  if (upstream.socketPath !== undefined) throw new ConfigError('--sentinel does not go with a unix:// upstream (sentinels name masters by host and port)');
  return { sentinels: parseSentinels(list), masterName, username: values.get('sentinel-user'), password: values.get('sentinel-password') };
}
