// The ACL rules a user needs, besides its own commands and keys, to use registered keys through the
// proxy: the library's functions run with the caller's user, so what they run on internal keys
// needs the caller's rights (notifylist.lua). Exactly these, key by key: never `~<prefix>*`, which
// also gives the deployment's secret (<prefix>secret) and with it the power to forge events. The
// README lists them; test/security.test.ts makes users with exactly these.
import { escapeGlob } from '../notify/control-permissions.js';

const key = (prefix: string, name: string): string => escapeGlob(`${prefix}${name}`);

/** Writes to registered keys (and their events): plus the event lists, and `+select` for MOVE / COPY ... DB. */
export function writerRules(prefix: string): string[] {
  return [
    '+fcall', '+time', '+hget', '+hset', '+hdel', '+hincrby', '+zscore', '+zadd', '+zrem', '+zrange', '+publish',
    '+pexpiretime', '+object|encoding', '+type', '+rpush',
    `%R~${key(prefix, 'registry')}`, `%R~${key(prefix, 'targets')}`, `~${key(prefix, 'expiry')}`, `~${key(prefix, 'tags')}`,
    `~${key(prefix, 'stats')}`, `&${key(prefix, 'wake')}`,
  ];
}

/** NOTIFYLIST.SET / DEL / LIST: plus `+rpush` on the event lists (the library checks it, never runs it). */
export function registeringRules(prefix: string): string[] {
  return [
    '+fcall', '+hget', '+hset', '+hdel', '+hgetall', '+type', '+publish', '+rpush',
    `~${key(prefix, 'registry')}`, `~${key(prefix, 'targets')}`, `~${key(prefix, 'backfill')}`, `&${key(prefix, 'changes')}`,
  ];
}
