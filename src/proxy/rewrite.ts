// Which client requests the proxy changes, and into what. Everything else is forwarded as its
// original bytes. A rewritten request becomes an FCALL of the notifylist function library that
// runs the original command on the client's own connection (same db, user, MULTI, protocol).
import type { RequestFrame } from '../resp/request-framer.js';
import { bulkString, multibulkHeader } from '../resp/encode.js';
import type { PatternIndex } from '../notify/pattern-index.js';
import { replyMarker } from './reply-markers.js';

interface WriteCommand {
  /** Redis accepts the argument count (otherwise forward unchanged: Redis rejects it itself,
   * before running it, and inside MULTI that aborts EXEC exactly as without the proxy). */
  accepts(argc: number): boolean;
  /** Argument positions of the keys the command writes, in argument order: a fixed list, every
   * `step`-th argument from `from` on (MSET, DEL: no array of a million positions), or found in
   * the arguments (`of`: null when the command writes no key, e.g. SORT without STORE, or cannot
   * be rewritten, e.g. BITFIELD with a field wider than 53 bits: it is forwarded). */
  keys: KeyPositions;
  /** Redis refuses it above maxmemory (command flag denyoom); the function must match. XGROUP:
   * per subcommand. */
  denyoom?: boolean | ((frame: RequestFrame) => boolean);
  /** Its reply may come marked (a null array, an integer above 2^53: reply-markers.ts). */
  marks?: boolean;
  /** With more than KEYS_IN_ARGS_ABOVE keys, the library reads the keys from the command itself
   * (MSET, DEL, ...) instead of FCALL's KEYS: a large call does not pay for each key twice. */
  keysInArgs?: boolean;
}

/** Below this, keys are declared as FCALL KEYS, so that Redis checks the client's key permissions
 * exactly as for the plain command (also when queued in MULTI). */
const KEYS_IN_ARGS_ABOVE = 1000;

type KeyPositions =
  | { fixed: readonly number[] }
  | { from: number; step: number }
  | { of: (frame: RequestFrame) => number[] | null };

const FIRST_KEY: KeyPositions = { fixed: [1] };
const SECOND_KEY: KeyPositions = { fixed: [2] };
const FIRST_TWO_KEYS: KeyPositions = { fixed: [1, 2] };
const EVERY_OTHER_KEY: KeyPositions = { from: 1, step: 2 };
const ALL_KEYS: KeyPositions = { from: 1, step: 1 };

/** Redis's arity convention (COMMAND INFO): n exactly, -n at least n. */
const arity = (n: number) => (n >= 0 ? (argc: number): boolean => argc === n : (argc: number): boolean => argc >= -n);
const keyValuePairs = (argc: number): boolean => argc >= 3 && argc % 2 === 1;

/** <numkeys> at `at`, then the keys: LMPOP / ZMPOP (at 1), BLMPOP / BZMPOP (at 2, after the timeout). */
const numkeysAt = (at: number): KeyPositions => ({
  of(frame) {
    const count = Number(frame.argLatin1(at));
    if (!Number.isInteger(count) || count < 1 || at + 1 + count > frame.argc) return null;
    return Array.from({ length: count }, (_, i) => at + 1 + i);
  },
});
const NUMKEYS_AT_1 = numkeysAt(1);

/** MIGRATE <host> <port> <key | ""> <db> <timeout> [COPY] [REPLACE] [AUTH pw] [AUTH2 user pw]
 * [KEYS <key>...]: the key, or the keys after KEYS. */
const MIGRATE_KEYS: KeyPositions = {
  of(frame) {
    for (let i = 6; i < frame.argc; ) {
      const option = frame.argLatin1(i).toLowerCase();
      if (option === 'copy' || option === 'replace') i += 1;
      else if (option === 'auth') i += 2;
      else if (option === 'auth2') i += 3;
      else if (option === 'keys') {
        if (frame.argLength(3) !== 0 || i + 1 >= frame.argc) return null;
        return Array.from({ length: frame.argc - i - 1 }, (_, k) => i + 1 + k);
      } else return null;
    }
    return frame.argLength(3) === 0 ? null : [3];
  },
};

/** BITFIELD, unless a field is wider than 53 bits: its integers could not pass through Lua exactly
 * (a double), so it is forwarded (README: known differences). */
const BITFIELD_KEY: KeyPositions = {
  of(frame) {
    for (let i = 2; i < frame.argc; i++) {
      const type = /^[iu](\d+)$/i.exec(frame.argLatin1(i));
      if (type !== null && Number(type[1]) > 53) return null;
    }
    return [1];
  },
};

/** Options parsed the way Redis parses them: name -> arguments it takes. Unknown: null (Redis
 * answers a syntax error itself). */
function optionArgument(frame: RequestFrame, from: number, options: Record<string, number>, wanted: string[]): number | null | undefined {
  let found: number | undefined;
  for (let i = from; i < frame.argc; ) {
    const option = frame.argLatin1(i).toLowerCase();
    const takes = options[option];
    if (takes === undefined) return null;
    if (wanted.includes(option) && i + 1 < frame.argc) found = i + 1;
    i += 1 + takes;
  }
  return found;
}

/** SORT ... STORE <key> (without STORE it writes nothing). */
const SORT_STORE: KeyPositions = {
  of(frame) {
    const at = optionArgument(frame, 2, { asc: 0, desc: 0, alpha: 0, limit: 2, by: 1, get: 1, store: 1 }, ['store']);
    return at ? [at] : null;
  },
};

/** GEORADIUS / GEORADIUSBYMEMBER ... STORE|STOREDIST <key>, options from `from`. */
const GEO_OPTIONS = { withcoord: 0, withdist: 0, withhash: 0, count: 1, any: 0, asc: 0, desc: 0, store: 1, storedist: 1 };
const geoStore = (from: number): KeyPositions => ({
  of(frame) {
    const at = optionArgument(frame, from, GEO_OPTIONS, ['store', 'storedist']);
    return at ? [at] : null;
  },
});

/** XREADGROUP GROUP <group> <consumer> [COUNT n] [BLOCK ms] [NOACK] STREAMS <keys...> <ids...>:
 * its stream keys (null: a syntax error, Redis answers), and where its BLOCK timeout is (0: none). */
function xreadgroupArguments(frame: RequestFrame): { keys: number[]; blockAt: number } | null {
  let blockAt = 0;
  for (let i = 1; i < frame.argc; ) {
    const option = frame.argLatin1(i).toLowerCase();
    if (option === 'group') i += 3;
    else if (option === 'count') i += 2;
    else if (option === 'block') {
      blockAt = i + 1;
      i += 2;
    } else if (option === 'noack') i += 1;
    else if (option === 'streams') {
      const rest = frame.argc - i - 1;
      if (rest < 2 || rest % 2 !== 0) return null;
      return { keys: Array.from({ length: rest / 2 }, (_, k) => i + 1 + k), blockAt };
    } else return null;
  }
  return null;
}
const XREADGROUP_STREAMS: KeyPositions = { of: (frame) => xreadgroupArguments(frame)?.keys ?? null };

/** XGROUP <subcommand> <key> ...: CREATE and CREATECONSUMER are refused above maxmemory. */
const XGROUP_SUBCOMMANDS = new Map([['create', -5], ['setid', -5], ['destroy', 4], ['createconsumer', 5], ['delconsumer', 5]]);
const XGROUP_KEY: KeyPositions = {
  of(frame) {
    const need = XGROUP_SUBCOMMANDS.get(frame.argLatin1(1).toLowerCase());
    return need !== undefined && arity(need)(frame.argc) ? [2] : null;
  },
};
const xgroupDenyoom = (frame: RequestFrame): boolean => {
  const sub = frame.argLatin1(1).toLowerCase();
  return sub === 'create' || sub === 'createconsumer';
};

/**
 * Every write command of every type, rewritten when one of the keys it writes matches a
 * registration: the library runs it and appends Redis's own keyspace events for it (notifylist.lua:
 * MODELS), and keeps the expiry index true. Arity and denyoom as COMMAND INFO gives them (Redis
 * 7.0). `marks`: the library may give its reply marked (reply-markers.ts). The commands that may
 * block are in BLOCKING_COMMANDS (and XREADGROUP with BLOCK is one of them).
 */
const WRITE_COMMANDS = new Map<string, WriteCommand>([
  // strings, bitmaps, HyperLogLog
  ['set', { accepts: arity(-3), keys: FIRST_KEY, denyoom: true }],
  ['setnx', { accepts: arity(3), keys: FIRST_KEY, denyoom: true }],
  ['setex', { accepts: arity(4), keys: FIRST_KEY, denyoom: true }],
  ['psetex', { accepts: arity(4), keys: FIRST_KEY, denyoom: true }],
  ['getset', { accepts: arity(3), keys: FIRST_KEY, denyoom: true }],
  ['mset', { accepts: keyValuePairs, keys: EVERY_OTHER_KEY, denyoom: true, keysInArgs: true }],
  ['msetnx', { accepts: keyValuePairs, keys: EVERY_OTHER_KEY, denyoom: true, keysInArgs: true }],
  ['getex', { accepts: arity(-2), keys: FIRST_KEY }],
  ['getdel', { accepts: arity(2), keys: FIRST_KEY }],
  ['append', { accepts: arity(3), keys: FIRST_KEY, denyoom: true }],
  ['setrange', { accepts: arity(4), keys: FIRST_KEY, denyoom: true }],
  ['incr', { accepts: arity(2), keys: FIRST_KEY, denyoom: true, marks: true }],
  ['decr', { accepts: arity(2), keys: FIRST_KEY, denyoom: true, marks: true }],
  ['incrby', { accepts: arity(3), keys: FIRST_KEY, denyoom: true, marks: true }],
  ['decrby', { accepts: arity(3), keys: FIRST_KEY, denyoom: true, marks: true }],
  ['incrbyfloat', { accepts: arity(3), keys: FIRST_KEY, denyoom: true }],
  ['setbit', { accepts: arity(4), keys: FIRST_KEY, denyoom: true }],
  ['bitfield', { accepts: arity(-2), keys: BITFIELD_KEY, denyoom: true }],
  ['bitop', { accepts: arity(-4), keys: SECOND_KEY, denyoom: true }],
  ['pfadd', { accepts: arity(-2), keys: FIRST_KEY, denyoom: true }],
  ['pfmerge', { accepts: arity(-2), keys: FIRST_KEY, denyoom: true }],
  // lists
  ['lpush', { accepts: arity(-3), keys: FIRST_KEY, denyoom: true }],
  ['rpush', { accepts: arity(-3), keys: FIRST_KEY, denyoom: true }],
  ['lpushx', { accepts: arity(-3), keys: FIRST_KEY, denyoom: true }],
  ['rpushx', { accepts: arity(-3), keys: FIRST_KEY, denyoom: true }],
  ['linsert', { accepts: arity(5), keys: FIRST_KEY, denyoom: true }],
  ['lset', { accepts: arity(4), keys: FIRST_KEY, denyoom: true }],
  ['lpop', { accepts: arity(-2), keys: FIRST_KEY, marks: true }],
  ['rpop', { accepts: arity(-2), keys: FIRST_KEY, marks: true }],
  ['ltrim', { accepts: arity(4), keys: FIRST_KEY }],
  ['lrem', { accepts: arity(4), keys: FIRST_KEY }],
  ['rpoplpush', { accepts: arity(3), keys: FIRST_TWO_KEYS, denyoom: true }],
  ['lmove', { accepts: arity(5), keys: FIRST_TWO_KEYS, denyoom: true }],
  ['lmpop', { accepts: arity(-4), keys: NUMKEYS_AT_1, marks: true }],
  // hashes
  ['hset', { accepts: arity(-4), keys: FIRST_KEY, denyoom: true }],
  ['hmset', { accepts: arity(-4), keys: FIRST_KEY, denyoom: true }],
  ['hsetnx', { accepts: arity(4), keys: FIRST_KEY, denyoom: true }],
  ['hincrby', { accepts: arity(4), keys: FIRST_KEY, denyoom: true, marks: true }],
  ['hincrbyfloat', { accepts: arity(4), keys: FIRST_KEY, denyoom: true }],
  ['hdel', { accepts: arity(-3), keys: FIRST_KEY }],
  // sets
  ['sadd', { accepts: arity(-3), keys: FIRST_KEY, denyoom: true }],
  ['srem', { accepts: arity(-3), keys: FIRST_KEY }],
  ['smove', { accepts: arity(4), keys: FIRST_TWO_KEYS }],
  ['spop', { accepts: arity(-2), keys: FIRST_KEY }],
  ['sinterstore', { accepts: arity(-3), keys: FIRST_KEY, denyoom: true }],
  ['sunionstore', { accepts: arity(-3), keys: FIRST_KEY, denyoom: true }],
  ['sdiffstore', { accepts: arity(-3), keys: FIRST_KEY, denyoom: true }],
  // sorted sets and geo
  ['zadd', { accepts: arity(-4), keys: FIRST_KEY, denyoom: true }],
  ['zincrby', { accepts: arity(4), keys: FIRST_KEY, denyoom: true }],
  ['zrem', { accepts: arity(-3), keys: FIRST_KEY }],
  ['zremrangebyscore', { accepts: arity(4), keys: FIRST_KEY }],
  ['zremrangebyrank', { accepts: arity(4), keys: FIRST_KEY }],
  ['zremrangebylex', { accepts: arity(4), keys: FIRST_KEY }],
  ['zpopmin', { accepts: arity(-2), keys: FIRST_KEY }],
  ['zpopmax', { accepts: arity(-2), keys: FIRST_KEY }],
  ['zmpop', { accepts: arity(-4), keys: NUMKEYS_AT_1, marks: true }],
  ['zunionstore', { accepts: arity(-4), keys: FIRST_KEY, denyoom: true }],
  ['zinterstore', { accepts: arity(-4), keys: FIRST_KEY, denyoom: true }],
  ['zdiffstore', { accepts: arity(-4), keys: FIRST_KEY, denyoom: true }],
  ['zrangestore', { accepts: arity(-5), keys: FIRST_KEY, denyoom: true }],
  ['geoadd', { accepts: arity(-5), keys: FIRST_KEY, denyoom: true }],
  ['georadius', { accepts: arity(-6), keys: geoStore(6), denyoom: true }],
  ['georadiusbymember', { accepts: arity(-5), keys: geoStore(5), denyoom: true }],
  ['geosearchstore', { accepts: arity(-8), keys: FIRST_KEY, denyoom: true }],
  // streams
  ['xadd', { accepts: arity(-5), keys: FIRST_KEY, denyoom: true }],
  ['xtrim', { accepts: arity(-4), keys: FIRST_KEY }],
  ['xdel', { accepts: arity(-3), keys: FIRST_KEY }],
  ['xsetid', { accepts: arity(-3), keys: FIRST_KEY, denyoom: true }],
  ['xgroup', { accepts: arity(-4), keys: XGROUP_KEY, denyoom: xgroupDenyoom }],
  ['xclaim', { accepts: arity(-6), keys: FIRST_KEY }],
  ['xautoclaim', { accepts: arity(-6), keys: FIRST_KEY }],
  ['xreadgroup', { accepts: arity(-7), keys: XREADGROUP_STREAMS, marks: true }],
  // generic
  ['del', { accepts: arity(-2), keys: ALL_KEYS, keysInArgs: true }],
  ['unlink', { accepts: arity(-2), keys: ALL_KEYS, keysInArgs: true }],
  ['expire', { accepts: arity(-3), keys: FIRST_KEY }],
  ['pexpire', { accepts: arity(-3), keys: FIRST_KEY }],
  ['expireat', { accepts: arity(-3), keys: FIRST_KEY }],
  ['pexpireat', { accepts: arity(-3), keys: FIRST_KEY }],
  ['persist', { accepts: arity(2), keys: FIRST_KEY }],
  ['rename', { accepts: arity(3), keys: FIRST_TWO_KEYS }],
  ['renamenx', { accepts: arity(3), keys: FIRST_TWO_KEYS }],
  ['copy', { accepts: arity(-3), keys: FIRST_TWO_KEYS, denyoom: true }],
  ['restore', { accepts: arity(-4), keys: FIRST_KEY, denyoom: true }],
  ['sort', { accepts: arity(-2), keys: SORT_STORE, denyoom: true }],
  ['migrate', { accepts: arity(-6), keys: MIGRATE_KEYS }],
  // KEYS[2] stands for the same key in the target database, whose registrations apply there.
  ['move', { accepts: arity(3), keys: { fixed: [1, 1] } }],
]);

/** Every argument but the first (the command) and the last (the timeout): BLPOP, BZPOPMIN, ... */
const ALL_BUT_TIMEOUT: KeyPositions = { of: (frame) => Array.from({ length: frame.argc - 2 }, (_, i) => 1 + i) };
const NUMKEYS_AT_2 = numkeysAt(2);

interface BlockingCommand extends WriteCommand {
  /** Where its timeout is. */
  timeoutAt: (argc: number) => number;
}
const LAST = (argc: number): number => argc - 1;
const FIRST = (): number => 1;

/**
 * The blocking commands: the library runs them without blocking (a function cannot block: those
 * Redis refuses in scripts are run as their non-blocking forms). Inside MULTI that is what Redis
 * does too. Outside, a command that would block comes back marked, and the session sends the
 * original command in its place (README: a client served later pops outside any function).
 */
const BLOCKING_COMMANDS = new Map<string, BlockingCommand>([
  ['blpop', { accepts: arity(-3), keys: ALL_BUT_TIMEOUT, timeoutAt: LAST, marks: true }],
  ['brpop', { accepts: arity(-3), keys: ALL_BUT_TIMEOUT, timeoutAt: LAST, marks: true }],
  ['blmove', { accepts: arity(6), keys: FIRST_TWO_KEYS, timeoutAt: LAST, denyoom: true, marks: true }],
  ['brpoplpush', { accepts: arity(4), keys: FIRST_TWO_KEYS, timeoutAt: LAST, denyoom: true, marks: true }],
  ['blmpop', { accepts: arity(-5), keys: NUMKEYS_AT_2, timeoutAt: FIRST, marks: true }],
  ['bzpopmin', { accepts: arity(-3), keys: ALL_BUT_TIMEOUT, timeoutAt: LAST, marks: true }],
  ['bzpopmax', { accepts: arity(-3), keys: ALL_BUT_TIMEOUT, timeoutAt: LAST, marks: true }],
  ['bzmpop', { accepts: arity(-5), keys: NUMKEYS_AT_2, timeoutAt: FIRST, marks: true }],
]);
/** Timeouts the proxy takes as valid without asking Redis (any other: forwarded, Redis answers). */
const PLAIN_TIMEOUT = /^(0|[1-9][0-9]{0,8})(\.[0-9]{1,6})?$/;

/** MULTI, EXEC and DISCARD: whether a blocking command can block (see BLOCKING_COMMANDS). */
const TRANSACTION_COMMANDS = new Set(['multi', 'exec', 'discard']);

/** Flushes keep the registrations (see notifylist_flush); SWAPDB moves them with the data and
 * tells every proxy (notifylist_swapdb). */
const FLUSH_COMMANDS = new Set(['flushdb', 'flushall']);

/** NOTIFYLIST.* commands and the library function each one runs. */
const ADMIN_COMMANDS = new Map<string, string>([
  ['notifylist.set', 'notifylist_set'],
  ['notifylist.del', 'notifylist_del'],
  ['notifylist.list', 'notifylist_list'],
  ['notifylist.info', 'notifylist_info'],
]);

/** Command names bucketed by length, so most requests (GET, HGET, ...) are rejected by one compare. */
/** Noted, not rewritten: a graceful drain closes subscribed clients last, and a RESP3 one cannot
 * be told by its replies (session-drain.ts). */
const SUBSCRIBE_COMMANDS = new Set(['subscribe', 'psubscribe', 'ssubscribe']);
const NAMES_BY_LENGTH = new Map<number, string[]>();
for (const name of [...WRITE_COMMANDS.keys(), ...BLOCKING_COMMANDS.keys(), ...ADMIN_COMMANDS.keys(), ...FLUSH_COMMANDS, ...SUBSCRIBE_COMMANDS, ...TRANSACTION_COMMANDS, 'hello', 'select', 'swapdb', 'function']) {
  const names = NAMES_BY_LENGTH.get(name.length) ?? [];
  names.push(name);
  NAMES_BY_LENGTH.set(name.length, names);
}

/**
 * The commands rewrite() acts on even with nothing registered (the branches before its
 * nothingRegistered checks: subscriptions, transactions, HELLO, SELECT, FUNCTION, NOTIFYLIST.*), by
 * length and first letter: a request with another length or first letter is forwarded as it is
 * (one lookup: most requests when nothing is registered). Slots are shared by bytes equal modulo 32
 * (a slot may let others through, never miss one).
 */
const UNREGISTERED_SLOTS = new Uint8Array(64 * 32);
const slotOf = (length: number, first: number): number => (length < 64 ? length : 0) * 32 + ((first | 0x20) & 31);
for (const name of [...ADMIN_COMMANDS.keys(), ...SUBSCRIBE_COMMANDS, ...TRANSACTION_COMMANDS, 'hello', 'select', 'function']) {
  UNREGISTERED_SLOTS[slotOf(name.length, name.charCodeAt(0))] = 1;
}

function commandName(frame: RequestFrame): string | undefined {
  if (frame.argc === 0) return undefined;
  const names = NAMES_BY_LENGTH.get(frame.argLength(0));
  if (names === undefined) return undefined;
  for (const name of names) if (frame.argIs(0, name)) return name;
  return undefined;
}

/** The commands rewritten into each write function (the library runs each function's only). */
export function rewrittenCommands(): { denyoom: string[]; others: string[] } {
  const denyoom: string[] = [];
  const others: string[] = [];
  for (const [name, command] of [...WRITE_COMMANDS, ...BLOCKING_COMMANDS]) {
    if (typeof command.denyoom === 'function') {
      denyoom.push(name);
      others.push(name);
    } else (command.denyoom ? denyoom : others).push(name);
  }
  return { denyoom, others };
}

/** What the rewriter needs to know of the client's session. */
export interface SessionState {
  /** Candidate registrations of every database (the proxy's registry view, announced ones included). */
  registry: PatternIndex;
  /** Redis considers the connection authenticated: AUTH or HELLO ... AUTH succeeded (the session
   * read the reply), or the default user needed no password when it connected or last RESET. */
  authenticated: boolean;
  /**
   * The ACL users the connection may be authenticated as: one, except after an authenticated
   * client's AUTH (whose reply the session does not read: hot path), then also that AUTH's user.
   * A registration is authorized only if every one of them may make it; the first is its owner.
   */
  users: string[];
  /** The client has subscribed (SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE) at some time. */
  subscribed: boolean;
  /** Inside MULTI (as the session saw MULTI, EXEC, DISCARD and RESET go by). */
  inMulti: boolean;
  /** The connection speaks RESP3 (HELLO 3): the library runs the client's command in the client's
   * protocol, whose replies differ in shape (ZPOPMIN with a count, XREADGROUP, doubles, ...). */
  resp3: boolean;
  /** The protocol a HELLO queued in MULTI sets at EXEC (null: none queued). */
  queuedResp3: boolean | null;
  /** The selected database (SELECT, RESET; queued in MULTI until EXEC), for events WITH db. */
  db: number;
  /** The database a SELECT queued in MULTI selects at EXEC (null: none queued). */
  queuedDb: number | null;
}

interface CandidateRun {
  first: number;
  last: number;
  pattern: string;
  list: string;
}

/**
 * `marks`: its reply may come marked (reply-markers.ts).
 * `resend`: a blocking command outside MULTI. Its reply comes marked if it would block: the session
 * then sends these bytes (the original command) in its place; the client's later requests wait.
 * `hold`: the replacement may go to Redis only once this resolves (the session waits, in order);
 * `later`: with a hold, the replacement is made only then (it depends on what the hold learned),
 * instead of `bytes`.
 */
export type Rewrite =
  | { kind: 'forward' }
  | { kind: 'replace'; bytes: Buffer[]; hold?: Promise<void>; later?: () => Buffer[]; admin?: true; marks?: true; resend?: Buffer };

const FORWARD: Rewrite = { kind: 'forward' };

/** What the rewriter needs from the control plane. */
export interface ControlHooks {
  /** Number of databases of the upstream Redis. */
  databases(): number;
  /** This proxy's state for NOTIFYLIST.INFO, as `name:value` lines. */
  infoFields(): string[];
  /** New connections must AUTH before any command (as last probed). */
  authRequired(): boolean;
  /** Probe that again soon: a write's fate depended on it. */
  recheckAuth(): void;
  /** A client sent FUNCTION FLUSH / DELETE / RESTORE: the library may be gone, load it again. */
  libraryMayBeGone(): void;
  /** Resolves once the function library is loaded (NOTIFYLIST.* commands wait for it). */
  libraryLoaded(): Promise<void>;
  /** A registration is about to be made: a candidate at once; resolves once every proxy has it. */
  announceRegistration(registration: { pattern: string; list: string }): Promise<void>;
  /** '' if every one of `users` may register, change or remove `pattern`, else the error to give. */
  authorizeRegistration(users: string[], pattern: string): Promise<string>;
  /** The deployment's secret: every call of the library carries it ('' until it is known). */
  secret(): string;
  /** This proxy's counter in the library: write calls name it, so that their events count for it. */
  readonly eventCounter: string;
  /** --max-value-bytes: the largest value events and expired-value copies carry. */
  readonly maxValueBytes: number;
  /** Brings the proxy's event counters up to date (NOTIFYLIST.INFO shows them). */
  takeEventCounts(): Promise<void>;
}

/** Nothing is registered anywhere: no write needs the library. */
function nothingRegistered(state: SessionState): boolean {
  return state.registry.size === 0;
}

export class Rewriter {
  private marker: { secret: string; bytes: Buffer } | null = null;

  constructor(
    private readonly internalPrefix: string,
    private readonly control: ControlHooks,
  ) {}

  /** The marker of replies the library cannot give as Redis does (reply-markers.ts). */
  replyMarker(): Buffer {
    const secret = this.control.secret();
    if (this.marker?.secret !== secret) this.marker = { secret, bytes: replyMarker(secret) };
    return this.marker.bytes;
  }

  /** Redis may refuse this client's commands (NOAUTH). Whether new connections must AUTH is
   * asked again when it decides a request's fate (see recheckAuth). */
  private mayBeUnauthenticated(state: SessionState): boolean {
    if (state.authenticated || !this.control.authRequired()) return false;
    this.control.recheckAuth();
    return true;
  }

  rewrite(frame: RequestFrame, candidates: SessionState): Rewrite {
    if (nothingRegistered(candidates) && (frame.argc === 0 || UNREGISTERED_SLOTS[slotOf(frame.argLength(0), frame.argFirstByte(0))] === 0)) return FORWARD;
    const name = commandName(frame);
    if (name === undefined) return FORWARD;
    if (SUBSCRIBE_COMMANDS.has(name)) {
      candidates.subscribed = true;
      return FORWARD;
    }
    if (TRANSACTION_COMMANDS.has(name)) {
      // (MULTI inside MULTI is refused and leaves it open; EXEC and DISCARD close it, also on error.)
      if (candidates.inMulti && candidates.queuedResp3 !== null) {
        if (name === 'exec') candidates.resp3 = candidates.queuedResp3;
        if (name !== 'multi') candidates.queuedResp3 = null;
      }
      if (candidates.inMulti && candidates.queuedDb !== null) {
        if (name === 'exec') candidates.db = candidates.queuedDb;
        if (name !== 'multi') candidates.queuedDb = null;
      }
      if (candidates.authenticated) candidates.inMulti = name === 'multi';
      return FORWARD;
    }
    if (name === 'hello') {
      // HELLO 2|3 sets the connection's protocol (taken as done: a HELLO whose AUTH fails keeps
      // it; queued in MULTI, at EXEC, taken as not aborted: README, known differences).
      const resp3 = frame.argc < 2 ? null : frame.argIs(1, '3') ? true : frame.argIs(1, '2') ? false : null;
      if (resp3 !== null && candidates.inMulti) candidates.queuedResp3 = resp3;
      else if (resp3 !== null) candidates.resp3 = resp3;
      return FORWARD;
    }
    if (name === 'select') {
      // (Taken as done when the index is one Redis has and the client is authenticated: README,
      // known differences, as for HELLO.)
      const db = frame.argc === 2 && /^\d{1,5}$/.test(frame.argLatin1(1)) ? Number(frame.argLatin1(1)) : -1;
      if (db >= 0 && db < this.control.databases() && candidates.authenticated) {
        if (candidates.inMulti) candidates.queuedDb = db;
        else candidates.db = db;
      }
      return FORWARD;
    }
    if (name === 'function') {
      if (frame.argc >= 2 && (frame.argIs(1, 'flush') || frame.argIs(1, 'delete') || frame.argIs(1, 'restore'))) {
        this.control.libraryMayBeGone();
      }
      return FORWARD;
    }
    // SWAPDB and FLUSHDB/FLUSHALL become calls of at most 5 short arguments, within Redis's
    // unauthenticated limits: an unauthenticated client gets the very NOAUTH of the command.
    if (name === 'swapdb') {
      if (frame.argc !== 3 || nothingRegistered(candidates)) return FORWARD;
      return { kind: 'replace', bytes: fcall('notifylist_swapdb', [], [this.control.secret()], frameTail(frame, 0)) };
    }
    if (FLUSH_COMMANDS.has(name)) {
      if (frame.argc > 2 || nothingRegistered(candidates)) return FORWARD;
      return { kind: 'replace', bytes: fcall('notifylist_flush', [], [this.control.secret(), String(this.control.databases())], frameTail(frame, 0)) };
    }
    const adminFunction = ADMIN_COMMANDS.get(name);
    if (adminFunction !== undefined) return this.admin(name, adminFunction, frame, candidates);
    if (nothingRegistered(candidates)) return FORWARD;
    // XREADGROUP: its keys, and whether it may block (BLOCK), from one parse.
    const xread = name === 'xreadgroup' ? xreadgroupArguments(frame) : null;
    const blockAt = xread?.blockAt ?? 0;
    const blocking = BLOCKING_COMMANDS.get(name) ?? (blockAt > 0 ? { ...WRITE_COMMANDS.get(name)!, timeoutAt: () => blockAt } : undefined);
    const command = blocking ?? WRITE_COMMANDS.get(name)!;
    if (!command.accepts(frame.argc)) return FORWARD;
    if (blocking && !PLAIN_TIMEOUT.test(frame.argLatin1(blocking.timeoutAt(frame.argc)))) return FORWARD;
    // (A subscribed RESP2 client's PING reply is an array: the session's PING could not be told apart.)
    if (blocking && candidates.subscribed) return FORWARD;
    // Outside MULTI a blocking command that would block is sent again as it is (see Rewrite).
    const resend = blocking !== undefined && !candidates.inMulti;
    let positions = xread !== null ? { fixed: xread.keys } : command.keys;
    if ('of' in positions) {
      const found = positions.of(frame);
      if (found === null) return FORWARD;
      positions = { fixed: found };
    }
    const fixed = 'fixed' in positions ? positions.fixed : null;
    const from = fixed ? 0 : (positions as { from: number }).from;
    const step = fixed ? 0 : (positions as { step: number }).step;
    const keyCount = fixed ? fixed.length : Math.ceil((frame.argc - from) / step);
    // Keys are declared as FCALL KEYS, except for a large MSET/DEL (see KEYS_IN_ARGS_ABOVE).
    const declared = !(command.keysInArgs && keyCount > KEYS_IN_ARGS_ABOVE);
    const keys: string[] = [];
    // Candidates as (key index, pattern, list); consecutive keys with the same candidate share one
    // run, sent as the index range `first-last` (a large MSET sends a few triples, not one per key).
    const runs: CandidateRun[] = [];
    const open = new Map<string, Map<string, CandidateRun>>();
    let keyIndex = 0;
    let lastRun: CandidateRun | null = null;
    const visit = (pattern: string, list: string): void => {
      // Most large writes have one candidate per key: the run of the previous key, extended.
      if (lastRun !== null && lastRun.pattern === pattern && lastRun.list === list && lastRun.last >= keyIndex - 1) {
        lastRun.last = keyIndex;
        return;
      }
      let byList = open.get(pattern);
      if (byList === undefined) open.set(pattern, (byList = new Map()));
      const run = byList.get(list);
      if (run !== undefined && run.last >= keyIndex - 1) {
        run.last = keyIndex;
        lastRun = run;
        return;
      }
      const fresh = { first: keyIndex, last: keyIndex, pattern, list };
      byList.set(list, fresh);
      runs.push(fresh);
      lastRun = fresh;
    };
    const registry = candidates.registry;
    for (let k = 0; k < keyCount; k++) {
      const key = frame.argLatin1(fixed ? fixed[k] : from + k * step);
      if (declared) keys.push(key);
      keyIndex = k + 1;
      if (key.startsWith(this.internalPrefix)) continue; // internal keys never match patterns
      registry.match(key, visit);
    }
    if (runs.length === 0) return FORWARD;
    // Redis refuses an unauthenticated client's write with NOAUTH; unchanged, it still does. (A
    // rewritten one would instead hit Redis's "unauthenticated multibulk length" limit of 10 and
    // be closed.)
    if (this.mayBeUnauthenticated(candidates)) return FORWARD;
    const triples: string[] = [];
    for (const run of runs) triples.push(run.first === run.last ? String(run.first) : `${run.first}-${run.last}`, run.pattern, run.list);
    const denyoom = typeof command.denyoom === 'function' ? command.denyoom(frame) : command.denyoom;
    const fn = denyoom ? 'notifylist_write' : 'notifylist_write_allow_oom';
    const tail = frameTail(frame, 0);
    // `<n>/<protocol>/<counter>/<db>/<max value bytes>`: the client's protocol, the counter of the
    // events pushed for this proxy, and what WITH fields need (notifylist.lua: set_context).
    const counted = `${triples.length / 3}/${candidates.resp3 ? 3 : 2}${resend ? 'b' : ''}/${this.control.eventCounter}/${candidates.db}/${this.control.maxValueBytes}`;
    const made = (): Buffer[] => fcall(fn, keys, [this.control.secret(), counted, ...triples], tail);
    // The call carries the secret, known once the library is loaded (a write pipelined behind the
    // first registration waits for that; the session holds its requests meanwhile anyway).
    const marks = command.marks ? (true as const) : undefined;
    if (this.control.secret() === '') {
      if (resend) return FORWARD; // (the library is not loaded yet: as before it)
      return { kind: 'replace', bytes: [], hold: this.control.libraryLoaded(), later: made, marks };
    }
    if (resend) return { kind: 'replace', bytes: made(), marks, resend: frameBytes(frame) };
    return { kind: 'replace', bytes: made(), marks };
  }

  /**
   * NOTIFYLIST.* runs as a library function on the client's own connection, after the library is
   * loaded (which also makes the secret known). SET and DEL are first authorized for the session's
   * user (the library gets the verdict), and a SET that may go ahead is announced to every proxy.
   */
  private admin(name: string, fn: string, frame: RequestFrame, state: SessionState): Rewrite {
    // An unauthenticated client's command is refused by Redis (NOAUTH) like any command, before
    // the function's arguments matter (unchanged, Redis would call it an unknown command); its
    // full FCALL could exceed Redis's unauthenticated limits: a 3-argument call gets that NOAUTH.
    if (this.mayBeUnauthenticated(state)) return { kind: 'replace', bytes: [fcallStandIn(fn)], admin: true };
    const tail = frameTail(frame, 1);
    if (name === 'notifylist.info') {
      // The fields once the counters are up to date.
      const later = (): Buffer[] => {
        const fields = this.control.infoFields();
        return fcall(fn, [], [this.control.secret(), String(this.control.databases()), String(fields.length), ...fields], tail);
      };
      const hold = Promise.all([this.control.libraryLoaded(), this.control.takeEventCounts()]).then(() => undefined);
      return { kind: 'replace', bytes: [], hold, later, admin: true };
    }
    if (name === 'notifylist.list') {
      return { kind: 'replace', bytes: [], hold: this.control.libraryLoaded(), later: () => fcall(fn, [], [this.control.secret()], tail), admin: true };
    }
    const users = [...state.users];
    // NOTIFYLIST.SET <pattern> <list> [EVENTS ...], NOTIFYLIST.DEL <pattern>.
    const shaped = name === 'notifylist.set' ? frame.argc >= 3 : frame.argc === 2;
    let refusal = '';
    // (Wrong arity: the library says so; nothing to authorize.)
    const authorized = !shaped ? Promise.resolve() : this.control.authorizeRegistration(users, frame.argLatin1(1)).then((verdict) => {
      refusal = verdict;
    });
    let hold: Promise<void>;
    // (A list under the internal prefix is refused by the library: nothing to announce.) The pair
    // is a candidate at once, before the authorization is known: the very next command may need
    // it, and a refused one only costs candidate lookups until it is dropped.
    if (name === 'notifylist.set' && shaped && !frame.argLatin1(2).startsWith(this.internalPrefix)) {
      const announced = this.control.announceRegistration({ pattern: frame.argLatin1(1), list: frame.argLatin1(2) });
      hold = Promise.all([authorized, announced]).then(() => undefined);
    } else {
      hold = authorized.then(() => this.control.libraryLoaded());
    }
    return { kind: 'replace', bytes: [], hold, later: () => fcall(fn, [], [this.control.secret(), users[0], refusal], tail), admin: true };
  }
}

/** A frame's arguments from one on, as their raw bytes (kept past the frame callback: views of
 * buffers the framer never writes again), and how many they are. */
interface FrameTail {
  count: number;
  bytes: Buffer | null;
}

function frameTail(frame: RequestFrame, fromArg: number): FrameTail {
  const count = frame.argc - fromArg;
  if (count <= 0) return { count: 0, bytes: null };
  if (!frame.inline) return { count, bytes: frame.buf.subarray(frame.argHeaderStart(fromArg), frame.end) };
  // Inline requests have no such bytes: encoded.
  let tail = '';
  for (let i = fromArg; i < frame.argc; i++) tail += bulkString(frame.argLatin1(i));
  return { count, bytes: Buffer.from(tail, 'latin1') };
}

/** The frame's own bytes (a view, kept past the frame callback; inline requests encoded). */
function frameBytes(frame: RequestFrame): Buffer {
  if (!frame.inline) return frame.buf.subarray(frame.start, frame.end);
  return Buffer.concat([Buffer.from(multibulkHeader(frame.argc), 'latin1'), frameTail(frame, 0).bytes!]);
}

/** FCALL <fn> 0: for a client Redis refuses anyway; within every unauthenticated limit. */
function fcallStandIn(fn: string): Buffer {
  return Buffer.from(multibulkHeader(3) + bulkString('FCALL') + bulkString(fn) + bulkString('0'), 'latin1');
}

/**
 * FCALL <fn> <numkeys> <keys...> <extra...> <the frame's arguments>. The frame's own arguments
 * are reused as their raw bytes (values are never re-encoded).
 */
function fcall(fn: string, keys: string[], extra: string[], tail: FrameTail): Buffer[] {
  let head = multibulkHeader(3 + keys.length + extra.length + tail.count) + bulkString('FCALL') + bulkString(fn);
  head += bulkString(String(keys.length));
  for (const key of keys) head += bulkString(key);
  for (const arg of extra) head += bulkString(arg);
  const headBytes = Buffer.from(head, 'latin1');
  return tail.bytes === null ? [headBytes] : [headBytes, tail.bytes];
}
