// The proxy's own connections to Redis (ioredis): commands, and a subscriber. Client sessions
// never use these; these use the credentials from the upstream URL.
import { connect } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import type { UpstreamAddress } from '../config.js';

/** A binary-safe argument: our keys, patterns and lists are latin1 strings (one char per byte). */
export function binary(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

export function createControlClient(upstream: UpstreamAddress, name: string, retry: () => boolean): Redis {
  const options: RedisOptions = {
    host: upstream.host,
    port: upstream.port,
    username: upstream.username,
    password: upstream.password,
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

/**
 * Runs commands in one database on a shared connection. SELECT and the commands go out in one
 * pipeline, so nothing else interleaves on the connection between them.
 */
export async function inDatabase(
  redis: Redis,
  db: number,
  commands: Array<[string, ...(string | Buffer | number)[]]>,
): Promise<unknown[]> {
  const pipeline = redis.pipeline();
  pipeline.select(db);
  for (const [command, ...args] of commands) pipeline.callBuffer(command, ...args);
  const results = (await pipeline.exec()) ?? [];
  const replies: unknown[] = [];
  for (const [error, reply] of results.slice(1)) {
    if (error) throw error;
    replies.push(reply);
  }
  return replies;
}

/**
 * Runs one command in every database 0..count-1 in one pipeline (SELECT before each); returns
 * each database's [error, reply]. Leaves the connection in database 0.
 */
export async function inEveryDatabase(
  redis: Redis,
  count: number,
  command: [string, ...(string | Buffer | number)[]],
): Promise<Array<[Error | null, unknown]>> {
  const pipeline = redis.pipeline();
  for (let db = 0; db < count; db++) pipeline.select(db).callBuffer(...command);
  pipeline.select(0);
  const results = (await pipeline.exec()) ?? [];
  return Array.from({ length: count }, (_, db) => results[2 * db + 1] as [Error | null, unknown]);
}

/** notify-keyspace-events with keyevent (E) and expired (x) added, nothing removed. */
export function withExpiredEvents(flags: string): string {
  let merged = flags;
  if (!merged.includes('E')) merged += 'E';
  if (!merged.includes('x') && !merged.includes('A')) merged += 'x';
  return merged;
}

export function parseRedisVersion(info: string): [number, number, number] | null {
  const match = /redis_version:(\d+)\.(\d+)\.(\d+)/.exec(info);
  return match ? [Number(match[1]), Number(match[2]), Number(match[3])] : null;
}

/**
 * Does a new, unauthenticated connection have to AUTH first? (requirepass, or a default user
 * without nopass.) Asked on a raw connection, the way a client's session starts.
 */
export function probeAuthRequired(upstream: UpstreamAddress, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: upstream.host, port: upstream.port });
    let reply = '';
    const finish = (required: boolean): void => {
      socket.destroy();
      resolve(required);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.on('error', () => finish(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) finish(reply.startsWith('-NOAUTH'));
    });
  });
}
