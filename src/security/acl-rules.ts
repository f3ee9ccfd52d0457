// May an ACL user read every key a pattern can match? A registration makes the proxy send its owner
// the names of keys written and expired (and act for it under the proxy's own login: backfill,
// reaper), so the owner must be allowed to read them all. Redis cannot answer that for a pattern
// (ACL DRYRUN takes one key), so the proxy reads the user's rules (ACL GETUSER) and decides
// conservatively: yes only if one key pattern with read permission, in the user's rules or in one
// of its selectors, surely covers the registered pattern. Otherwise the registration is refused.
import type { Redis } from 'ioredis';

/** A key pattern of an ACL user, with the permissions it gives (ACL v2: ~, %R~, %W~, %RW~). */
export interface KeyRule {
  pattern: string;
  read: boolean;
  write: boolean;
}

/** The key rules of the user's root rules and of each selector (a key is allowed by any one). */
export type KeyRuleSets = KeyRule[][];

/** Parses the `keys` text of ACL GETUSER (rules separated by spaces, e.g. "~app:* %R~ro:*"). */
export function parseKeyRules(text: string): KeyRule[] {
  const rules: KeyRule[] = [];
  for (const token of text.split(' ')) {
    const match = /^(?:%([RW]+))?~(.*)$/s.exec(token);
    if (!match) continue;
    const permissions = match[1] ?? 'RW';
    rules.push({ pattern: match[2], read: permissions.includes('R'), write: permissions.includes('W') });
  }
  return rules;
}

/** Replies as binary strings (latin1: key patterns are bytes). */
const text = (value: unknown): string => (Buffer.isBuffer(value) ? value.toString('latin1') : String(value ?? ''));

/** The key rules of ACL GETUSER's reply (a flat field/value array; null: no such user). */
export function keyRulesOf(reply: unknown): KeyRuleSets | null {
  if (!Array.isArray(reply)) return null;
  const fields = new Map<string, unknown>();
  for (let i = 0; i + 1 < reply.length; i += 2) fields.set(text(reply[i]), reply[i + 1]);
  const sets: KeyRuleSets = [parseKeyRules(text(fields.get('keys')))];
  const selectors = fields.get('selectors');
  if (Array.isArray(selectors)) {
    for (const selector of selectors) {
      if (!Array.isArray(selector)) continue;
      for (let i = 0; i + 1 < selector.length; i += 2) {
        if (text(selector[i]) === 'keys') sets.push(parseKeyRules(text(selector[i + 1])));
      }
    }
  }
  return sets;
}

const SPECIAL = new Set(['*', '?', '[', '\\']);

/**
 * The literal bytes every key matching `pattern` starts with (escapes resolved), and whether the
 * pattern is nothing but that literal. Redis's glob (src/util.c): outside a class `\x` is x, and a
 * trailing lone `\` matches `\`.
 */
function literalPrefix(pattern: string): { prefix: string; whole: boolean } {
  let prefix = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      prefix += i + 1 < pattern.length ? pattern[++i] : '\\';
    } else if (SPECIAL.has(c)) {
      return { prefix, whole: false };
    } else {
      prefix += c;
    }
  }
  return { prefix, whole: true };
}

/**
 * True only if every key `pattern` matches is matched by `rule` (a sufficient check, not a
 * complete one): the rule is `*` (all keys), `**`..., the same pattern, or a literal followed by `*`s, `X*`,
 * that the pattern's keys all start with and all extend. (A trailing `*` needs at least one byte:
 * `X*` does not match X itself; any non-empty rest of a pattern needs at least one byte too.)
 */
export function covers(rule: string, pattern: string): boolean {
  // `~*` is ACL's allkeys (the empty key too); `**` is a glob, which no key "" matches.
  if (rule === '*' || rule === pattern) return true;
  if (/^\*+$/.test(rule)) return pattern !== '';
  const star = /^([^*?[\\]*)\*+$/.exec(rule);
  if (star === null) return false;
  const head = star[1];
  const { prefix, whole } = literalPrefix(pattern);
  if (!prefix.startsWith(head)) return false;
  return prefix.length > head.length || !whole;
}

/** May a user with these rules read every key `pattern` can match? (conservative, see covers) */
export function readsAll(rules: KeyRuleSets, pattern: string): boolean {
  return rules.some((set) => set.some((rule) => rule.read && covers(rule.pattern, pattern)));
}

/**
 * '' if `user` may register (or change, or remove the registration of) `pattern`, else the error
 * to give: Redis's NOPERM wording, saying why.
 */
export async function registrationRefusal(control: Redis, user: string, pattern: string): Promise<string> {
  let rules: KeyRuleSets | null;
  try {
    rules = keyRulesOf(await control.callBuffer('ACL', 'GETUSER', Buffer.from(user, 'latin1')));
  } catch (error) {
    return `NOPERM notifylist: cannot check the key permissions of user '${user}' (${(error as Error).message})`;
  }
  if (rules === null) return `NOPERM notifylist: no such user '${user}'`;
  if (readsAll(rules, pattern)) return '';
  return `NOPERM notifylist: user '${user}' may not read every key the pattern can match (register a pattern that one of its key patterns with read permission covers)`;
}
