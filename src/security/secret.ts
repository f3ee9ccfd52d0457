// The deployment's secret: shared by every proxy in front of one Redis, kept in Redis in the key
// <prefix>secret (database 0), which users are not given (README: Security and trust model). It
// proves to the function library that a call comes from a proxy (the library holds only its
// SHA1), and it makes the tags that mark the library's own internal entries (notifylist.lua:
// tag), so that entries written by hand are never taken for them.
import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { inDatabase } from '../notify/redis-control.js';

function sha1hex(text: string): string {
  return createHash('sha1').update(text, 'latin1').digest('hex');
}

export function secretHash(secret: string): string {
  return sha1hex(secret);
}

/**
 * The secret stored in Redis; if there is none, `known` (the one this proxy used so far: Redis
 * lost it, e.g. restarted without persistence) or a new random one is stored first (SET NX: of
 * two proxies starting together, one wins and both use its secret).
 */
export async function loadSecret(control: Redis, key: string, known: string | null): Promise<string> {
  const [stored] = (await inDatabase(control, 0, [['GET', key]])) as [Buffer | null];
  if (stored !== null) return stored.toString('latin1');
  const fresh = known ?? randomBytes(32).toString('hex');
  const [, again] = (await inDatabase(control, 0, [['SET', key, fresh, 'NX'], ['GET', key]])) as [unknown, Buffer | null];
  return again === null ? fresh : again.toString('latin1');
}

let tagKeys: { secret: string; inner: string; outer: string } | null = null;

/** The library's tag over `fields` (notifylist.lua: tag), for entries the proxy reads. */
export function tag(secret: string, ...fields: string[]): string {
  if (tagKeys?.secret !== secret) {
    tagKeys = { secret, inner: sha1hex(`notifylist tag inner ${secret}`), outer: sha1hex(`notifylist tag outer ${secret}`) };
  }
  const { inner, outer } = tagKeys;
  const message = fields.map((field) => `${field.length}:${field}`).join('');
  return sha1hex(outer + sha1hex(inner + message));
}

export interface StoredRegistration {
  list: string;
  /** The ACL user who registered it; '' for registrations made before owners existed. */
  owner: string;
  /** Its EVENTS (names and classes, space-separated); 'set expired' without EVENTS. */
  events: string;
  /** Its target's options (notifylist.lua: target_options): '', 'stream', 'maxlen=<n>', 'stream maxlen=<n>'. */
  options: string;
}

/** A registration's events without EVENTS (notifylist.lua: DEFAULT_EVENTS). */
export const DEFAULT_EVENTS = 'set expired';

/** The field <letter><length>:<text> of `value` at `at` (or `fallback`), and where what follows starts. */
function optionalField(value: string, letter: string, at: number, fallback: string): [string, number] {
  const header = new RegExp(`^${letter}(\\d+):`).exec(value.slice(at, at + 24));
  if (header === null) return [fallback, at];
  const from = at + header[0].length;
  const text = value.slice(from, from + Number(header[1]));
  return [text, from + text.length];
}

/**
 * A registry value as the library writes it (notifylist.lua: registry_value):
 * <tag><owner length>:<owner><list>, with EVENTS <tag>e<events length>:<events><owner
 * length>:<owner><list>, and with TARGET/MAXLEN an o<options length>:<options> field before the
 * owner. null for anything else (a value written by hand).
 */
export function decodeRegistration(secret: string, pattern: string, value: string): StoredRegistration | null {
  const [events, afterEvents] = optionalField(value, 'e', 40, DEFAULT_EVENTS);
  const [options, at] = optionalField(value, 'o', afterEvents, '');
  const header = /^(\d+):/.exec(value.slice(at, at + 24));
  if (header === null) return null;
  const ownerFrom = at + header[0].length;
  const ownerTo = ownerFrom + Number(header[1]);
  if (ownerTo > value.length) return null;
  const owner = value.slice(ownerFrom, ownerTo);
  const list = value.slice(ownerTo);
  const fields = options !== '' ? [pattern, list, owner, events, options] : events === DEFAULT_EVENTS ? [pattern, list, owner] : [pattern, list, owner, events];
  if (value.slice(0, 40) !== tag(secret, 'registration', ...fields)) return null;
  return { list, owner, events, options };
}
