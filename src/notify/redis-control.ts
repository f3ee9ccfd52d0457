// The proxy's own connections to Redis (ioredis): commands, and a subscriber. Client sessions
// never use these; these use the credentials from the upstream URL.
import { Redis, type RedisOptions } from 'ioredis';
import type { Upstream } from '../upstream/upstream.js';

/** A binary-safe argument: our keys, patterns and lists are latin1 strings (one char per byte). */
export function binary(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

export function createControlClient(upstream: Upstream, name: string, retry: () => boolean): Redis {
  const options: RedisOptions = {
    // Where Redis is, TLS, credentials; following the master under Sentinel.
    ...upstream.clientOptions(),
    connectionName: name,
    // CLIENT SETINFO exists from Redis 7.2 on: not worth a permission or an error in errorstats.
    disableClientInfo: true,
    lazyConnect: true,
    enableAutoPipelining: false,
    maxRetriesPerRequest: null,
    // At start an unreachable Redis is fatal (one clear line, exit 1); later we retry for ever.
    retryStrategy: (times) => (retry() ? Math.min(50 * times, 1000) : null),
  };
  return new Redis(options);
}

/** A command and its arguments, sent binary-safe (callBuffer). */
export type ControlCommand = [string, ...(string | Buffer | number)[]];

/** The replies of a pipeline, or its first error. */
function repliesOf(results: Array<[Error | null, unknown]>): unknown[] {
  return results.map(([error, reply]) => {
    if (error) throw error;
    return reply;
  });
}

/**
 * Runs commands in one database on a shared connection. SELECT and the commands go out in one
 * pipeline, so nothing else interleaves on the connection between them.
 */
export async function inDatabase(redis: Redis, db: number, commands: ControlCommand[]): Promise<unknown[]> {
  const pipeline = redis.pipeline();
  pipeline.select(db);
  for (const command of commands) pipeline.callBuffer(...command);
  const results = ((await pipeline.exec()) ?? []) as Array<[Error | null, unknown]>;
  return repliesOf(results.slice(1));
}

/**
 * Runs each group's commands in its database, all in one pipeline (SELECT before each group's),
 * leaving the connection in database 0; returns each group's replies, or throws the first error.
 */
export async function inDatabases(redis: Redis, groups: Array<{ db: number; commands: ControlCommand[] }>): Promise<unknown[][]> {
  const pipeline = redis.pipeline();
  for (const { db, commands } of groups) {
    pipeline.select(db);
    for (const command of commands) pipeline.callBuffer(...command);
  }
  pipeline.select(0);
  const results = ((await pipeline.exec()) ?? []) as Array<[Error | null, unknown]>;
  let at = 0;
  return groups.map(({ commands }) => {
    const replies = repliesOf(results.slice(at + 1, at + 1 + commands.length));
    at += commands.length + 1;
    return replies;
  });
}

/** The same commands in every database 0..count-1 (see inDatabases). */
export function inEveryDatabase(redis: Redis, count: number, commands: ControlCommand[]): Promise<unknown[][]> {
  return inDatabases(redis, Array.from({ length: count }, (_, db) => ({ db, commands })));
}

/** Redis's number of databases (CONFIG GET databases), or its default 16 if it may not be read. */
export async function databaseCount(redis: Redis): Promise<number> {
  const reply = (await redis.config('GET', 'databases').catch(() => [])) as string[];
  return reply.length === 2 ? Number(reply[1]) : 16;
}

/** notify-keyspace-events with keyevent (E), expired (x) and evicted (e) added, nothing removed. */
export function withKeyeventFlags(flags: string): string {
  let merged = flags;
  if (!merged.includes('E')) merged += 'E';
  for (const flag of ['x', 'e']) if (!merged.includes(flag) && !merged.includes('A')) merged += flag;
  return merged;
}

export function parseRedisVersion(info: string): [number, number, number] | null {
  const match = /redis_version:(\d+)\.(\d+)\.(\d+)/.exec(info);
  return match ? [Number(match[1]), Number(match[2]), Number(match[3])] : null;
}

/**
 * Does a new, unauthenticated connection have to AUTH first? (requirepass, or a default user
 * without nopass or disabled.) Asked on a raw connection, the way a client's session starts.
 * null: no clear answer (unreachable, no reply in time, any other reply such as a full server's).
 */
export function probeAuthRequired(upstream: Upstream, timeoutMs = 2000): Promise<boolean | null> {
  return new Promise((resolve) => {
    const { socket, readyEvent } = upstream.openOnce();
    let reply = '';
    const finish = (required: boolean | null): void => {
      socket.destroy();
      resolve(required);
    };
    socket.setTimeout(timeoutMs, () => finish(null));
    socket.on('error', () => finish(null));
    socket.on(readyEvent, () => socket.write('PING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) finish(reply.startsWith('-NOAUTH') ? true : reply.startsWith('+PONG') ? false : null);
    });
  });
}
