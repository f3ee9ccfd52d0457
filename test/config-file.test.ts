// --config <file> (issue 9, item 8): redis.conf syntax, precedence flags > environment > file >
// defaults, errors naming file and line (never a value), and --help listing every setting.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, ENVIRONMENT, parseConfig, USAGE } from '../src/config.js';
import { splitConfigLine } from '../src/operations/config-file.js';
import { listeningMessage, logLines, runCli, startCli, stopCli } from './helpers/cli.js';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server.js';

const dir = mkdtempSync(join(tmpdir(), 'notifylist-config-'));
let files = 0;
/** A config file with these lines (mode 600, as the README asks). */
function configFile(...lines: string[]): string {
  const path = join(dir, `p${++files}.conf`);
  writeFileSync(path, lines.join('\n') + '\n');
  chmodSync(path, 0o600);
  return path;
}

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('precedence: flags, then environment, then file, then defaults', () => {
  const file = (): string => configFile('port 7001', 'prefix file:', 'lease-ms 4000', 'log-level debug', 'protected-mode no');

  it('the file over the defaults', () => {
    const config = parseConfig(['--config', file()], {})!;
    expect(config).toMatchObject({ port: 7001, prefix: 'file:', leaseMs: 4000, logLevel: 'debug', protectedMode: false });
    const none = parseConfig([], {})!;
    expect(none).toMatchObject({ port: DEFAULTS.port, prefix: DEFAULTS.prefix, leaseMs: DEFAULTS.leaseMs, logLevel: 'info', protectedMode: true });
  });

  it('the environment over the file, the flags over both', () => {
    const path = file();
    const env = { NOTIFYLIST_PORT: '7002', NOTIFYLIST_PREFIX: 'env:', NOTIFYLIST_LOG_LEVEL: 'warn' };
    expect(parseConfig(['--config', path], env)).toMatchObject({ port: 7002, prefix: 'env:', leaseMs: 4000, logLevel: 'warn' });
    expect(parseConfig(['--config', path, '--port', '7003', '--lease-ms', '5000', '--log-level=error'], env)).toMatchObject({
      port: 7003,
      prefix: 'env:',
      leaseMs: 5000,
      logLevel: 'error',
    });
    // The file itself may be named in the environment.
    expect(parseConfig([], { NOTIFYLIST_CONFIG: path })).toMatchObject({ port: 7001, prefix: 'file:' });
  });

  it('boolean settings in the file: protected-mode yes|no, upstream-tls-insecure with or without yes|no', () => {
    const base = 'upstream rediss://127.0.0.1:7777';
    expect(parseConfig(['--config', configFile(base, 'upstream-tls-insecure')], {})!.upstream.tls?.insecure).toBe(true);
    expect(parseConfig(['--config', configFile(base, 'upstream-tls-insecure yes')], {})!.upstream.tls?.insecure).toBe(true);
    expect(parseConfig(['--config', configFile(base, 'upstream-tls-insecure no')], {})!.upstream.tls?.insecure).toBe(false);
    expect(parseConfig(['--config', configFile('protected-mode yes')], {})!.protectedMode).toBe(true);
    // The flag over the file.
    expect(parseConfig(['--config', configFile('protected-mode no'), '--protected-mode', 'yes'], {})!.protectedMode).toBe(true);
  });
});

describe('syntax', () => {
  it('comments, blank lines, CRLF, quotes and escapes as redis.conf allows', () => {
    const path = join(dir, 'syntax.conf');
    writeFileSync(
      path,
      [
        '# a comment',
        '   # an indented comment',
        '',
        '\t',
        'PORT 7010', // names in any case, as in redis.conf
        'prefix "my app:\\x41\\"q\\":"',
        "bind 'it\\'s'",
        'upstream "redis://127.0.0.1:7011/2"\r',
      ].join('\n'),
    );
    const config = parseConfig(['--config', path], {})!;
    expect(config.port).toBe(7010);
    expect(config.prefix).toBe('my app:A"q":');
    expect(config.bind).toBe("it's");
    expect(config.upstream).toMatchObject({ host: '127.0.0.1', port: 7011, db: 2 });
  });

  it('splits words as Redis does (sdssplitargs)', () => {
    expect(splitConfigLine('a b   c')).toEqual(['a', 'b', 'c']);
    expect(splitConfigLine('x "a b\\n\\t\\\\"')).toEqual(['x', 'a b\n\t\\']);
    expect(splitConfigLine("x 'a \\'b\\n'")).toEqual(['x', "a 'b\\n"]);
    expect(splitConfigLine('x ""')).toEqual(['x', '']);
    expect(splitConfigLine('x "\\x7a\\x4"')).toEqual(['x', 'zx4']);
    expect(splitConfigLine('x "open')).toBeNull();
    expect(splitConfigLine('x "closed"after')).toBeNull();
    expect(splitConfigLine("x 'open")).toBeNull();
  });
});

describe('errors: one line on stderr naming the file and line, exit 1, no value echoed', () => {
  const refused = async (lines: string[], message: (path: string) => string): Promise<void> => {
    const path = configFile(...lines);
    const result = await runCli(['--config', path]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`notifylist-proxy: ${message(path)}\n`);
  };

  it('an unknown setting', () => refused(['# settings', 'port 7020', 'prot 7021'], (path) => `${path}:3: unknown setting 'prot' (see --help)`));
  it('a missing value', () => refused(['', 'upstream'], (path) => `${path}:2: setting 'upstream' needs a value`));
  it('more than one value', () => refused(['port 7020 7021'], (path) => `${path}:1: setting 'port' takes one value, got 2 (quote a value with blanks in it)`));
  it('unbalanced quotes', () => refused(['port 7020', 'upstream "redis://:pw-4471@127.0.0.1'], (path) => `${path}:2: unbalanced quotes`));
  it('config inside a config file', () => refused(['config /etc/other.conf'], (path) => `${path}:1: 'config' cannot be set in a config file`));
  it('a bad value read from the file', () => refused(['', 'port many'], (path) => `${path}:2: --port must be an integer >= 0, got 'many'`));
  it('a bad log level read from the file', () => refused(['log-level loud'], (path) => `${path}:1: --log-level must be fatal, error, warn, info, debug, trace, silent; got 'loud'`));

  it('a value on a line without a name is not echoed (it may be a password)', async () => {
    const path = configFile('redis://:pw-8812@127.0.0.1:6379');
    const result = await runCli(['--config', path]);
    expect(result.stderr).toBe(`notifylist-proxy: ${path}:1: unknown setting name (see --help)\n`);
  });

  it('a missing file, a directory', async () => {
    const missing = join(dir, 'nope.conf');
    expect((await runCli(['--config', missing])).stderr).toBe(`notifylist-proxy: cannot read config file ${missing}: ENOENT\n`);
    expect((await runCli(['--config', dir])).stderr).toBe(`notifylist-proxy: ${dir}: not a regular file\n`);
    expect((await runCli(['--config'])).stderr).toBe('notifylist-proxy: option --config needs a value\n');
  });
});

describe('a proxy run from a config file', () => {
  let redis: RedisServer;
  const PASSWORD = 'conf-pw-3390';
  beforeAll(async () => {
    redis = await startRedis({ config: { requirepass: PASSWORD } });
  });
  afterAll(() => redis.destroy());

  it('listens where the file says, reaches Redis with its password, and logs no secret', async () => {
    const port = await freePort();
    const path = configFile('# the proxy', `port ${port}`, `upstream "redis://:${PASSWORD}@127.0.0.1:${redis.port}/1"`, 'log-level debug');
    const cli = startCli(['--config', path]);
    cleanups.push(() => stopCli(cli, 'SIGKILL'));
    expect(await listeningMessage(cli)).toBe(`notifylist-proxy listening on 127.0.0.1:${port}, upstream redis://127.0.0.1:${redis.port}/1`);
    const client = new Redis(port, { password: PASSWORD });
    cleanups.push(() => client.disconnect());
    await client.set('conf:1', 'v');
    const direct = new Redis(redis.port, { password: PASSWORD, db: 1 });
    cleanups.push(() => direct.disconnect());
    expect(await direct.get('conf:1')).toBe('v');
    expect(await stopCli(cli)).toBe(0);
    expect(logLines(cli).length).toBeGreaterThan(0);
    expect(cli.stdout + cli.stderr).not.toContain(PASSWORD);
  });
});

describe('--help lists every setting', () => {
  it('each flag parseConfig knows, with its environment variable', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(USAGE);
    const names = Object.keys(ENVIRONMENT);
    expect(names.length).toBeGreaterThan(25);
    for (const name of names) {
      expect(USAGE, name).toMatch(new RegExp(`--${name}\\b`));
      expect(USAGE, name).toContain(ENVIRONMENT[name]);
      // Each flag parseConfig accepts is a setting of its own (and so in the file too).
      expect(() => parseConfig([`--${name}=x`], {}), name).not.toThrow(/unknown option/);
    }
    for (const value of [DEFAULTS.bind, DEFAULTS.port, DEFAULTS.upstream, DEFAULTS.prefix, DEFAULTS.leaseMs, DEFAULTS.connectTimeoutMs, DEFAULTS.protectedMode, 'info', 'json']) {
      expect(USAGE.replace(/\s+/g, ' ')).toContain(`default ${value}`);
    }
    expect(USAGE).toContain('--config <file>');
  });
});
