// notifylist-proxy --uninstall: removes from Redis what proxies put there: the function library
// and every key starting with the prefix, in every database. notify-keyspace-events is left as
// it is (other software may rely on the flags the proxy added); the output says how to reset it.
import type { Redis } from 'ioredis';
import type { ProxyConfig } from '../config.js';
import { redact } from '../redact.js';
import { escapeGlob } from '../notify/control-permissions.js';
import { binary, createControlClient, databaseCount, inDatabase } from '../notify/redis-control.js';
import { Upstream } from '../upstream/upstream.js';
import { silentLog } from './logger.js';

const SCAN_COUNT = 1000;
const UNLINK_BATCH = 500;
/** Key names printed per database; beyond that, a count. */
const NAMES_SHOWN = 20;
const LIBRARY = 'notifylist';

/** Prints what it removed; returns null on success, else the one line that says why not. */
export async function uninstall(config: ProxyConfig, output: (line: string) => void): Promise<string | null> {
  // Errors of ioredis and Node are quoted in both: no credentials in them.
  const print = (line: string): void => output(redact(line));
  const failure = await uninstallFrom(config, print);
  return failure === null ? null : redact(failure);
}

async function uninstallFrom(config: ProxyConfig, print: (line: string) => void): Promise<string | null> {
  let upstream: Upstream;
  try {
    upstream = new Upstream(config, silentLog);
  } catch (error) {
    return (error as Error).message; // a certificate file
  }
  const where = (): string => upstream.name;
  const redis = createControlClient(upstream, 'notifylist-proxy:uninstall', () => false);
  let lastError = '';
  redis.on('error', (error: Error) => (lastError = error.message));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`Redis at ${where()} did not answer within ${config.connectTimeoutMs} ms (--connect-timeout-ms)`), config.connectTimeoutMs);
  });
  try {
    const reached = upstream.start().then(
      () => redis.connect().then(() => null, (e: Error) => `cannot reach Redis at ${where()}: ${lastError || e.message}`),
      (e: Error) => e.message, // a replica, TLS, no master from the sentinels
    );
    const connected = await Promise.race([reached, timeout]);
    if (connected !== null) return connected;
    clearTimeout(timer);
    return await removeAll(redis, config.prefix, print);
  } catch (error) {
    return `uninstall from ${where()} failed: ${(error as Error).message}`;
  } finally {
    clearTimeout(timer);
    redis.disconnect();
    upstream.stop();
  }
}

async function removeAll(redis: Redis, prefix: string, print: (line: string) => void): Promise<string | null> {
  // A running proxy would load its library again within seconds: refuse while one is connected.
  const clients = await redis.client('LIST').then(
    (list) => String(list).split('\n').filter((line) => /\bname=notifylist-proxy:(?!uninstall\b)/.test(line)).length,
    () => null,
  );
  if (clients === null) print('cannot run CLIENT LIST to look for running proxies: make sure none runs, or they will load the library again');
  else if (clients > 0) return `${clients} proxy connection(s) are open on this Redis (CLIENT LIST, name=notifylist-proxy:*): stop every proxy first`;

  const deleted = await redis.call('FUNCTION', 'DELETE', LIBRARY).then(
    () => true,
    (error: Error) => {
      if (/library not found/i.test(error.message)) return false;
      throw error;
    },
  );
  print(deleted ? `removed function library ${LIBRARY}` : `no function library ${LIBRARY}`);

  const databases = await databaseCount(redis);
  const match = `${escapeGlob(prefix)}*`;
  let total = 0;
  for (let db = 0; db < databases; db++) {
    // SCAN may return a key twice; UNLINK of a missing key is harmless, the count is not.
    const found = new Set<string>();
    let cursor = '0';
    do {
      const [reply] = (await inDatabase(redis, db, [['SCAN', cursor, 'MATCH', match, 'COUNT', SCAN_COUNT]])) as [[Buffer, Buffer[]]];
      cursor = reply[0].toString();
      for (const key of reply[1]) found.add(key.toString('latin1'));
    } while (cursor !== '0');
    const removed = [...found];
    for (let i = 0; i < removed.length; i += UNLINK_BATCH) {
      const batch = removed.slice(i, i + UNLINK_BATCH).map(binary);
      await inDatabase(redis, db, [['UNLINK', ...batch]]);
    }
    if (removed.length > 0) {
      const names = removed.slice(0, NAMES_SHOWN).join(', ') + (removed.length > NAMES_SHOWN ? `, ... (${removed.length - NAMES_SHOWN} more)` : '');
      print(`db${db}: removed ${removed.length} key(s): ${names}`);
    }
    total += removed.length;
  }
  await redis.select(0);
  print(`removed ${total} key(s) matching ${match} in ${databases} database(s)`);

  const flags = (await redis.config('GET', 'notify-keyspace-events').catch(() => [])) as string[];
  const current = flags.length === 2 ? `'${flags[1]}'` : '(cannot read it)';
  print(
    `notify-keyspace-events left as it is, ${current}: the proxy added E and x if they were missing; ` +
      `if nothing else needs them, CONFIG SET notify-keyspace-events '' (or your original value)`,
  );
  return null;
}
