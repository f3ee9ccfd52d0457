// What the proxy's own Redis user (the one in --upstream) must be allowed to do: defined once here.
// The README lists exactly CONTROL_ACL_RULES, test/startup.test.ts runs a proxy as a user with
// exactly these rules, and checkControlPermissions refuses to start when one of them is missing.
//
// The check needs no admin rights and leaves nothing behind: on a raw connection of its own it
// sends MULTI, one probe per command, DISCARD. Redis checks ACLs (command, keys, channels) before
// it queues a command in MULTI, so each probe answers +QUEUED or -NOPERM and none of them runs.
import type { Socket } from 'node:net';
import type { Upstream } from '../upstream/upstream.js';
import { encodeCommand } from '../resp/encode.js';
import { replyEnd } from '../resp/reply-scanner.js';
import { evictedChannel, expiredChannel } from './names.js';

/** Escapes a literal for a Redis glob (SCAN MATCH, ACL key and channel patterns). */
export function escapeGlob(literal: string): string {
  return literal.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** The keyevent channels the proxy listens to (one per database), as an ACL channel pattern. */
export const KEYEVENT_CHANNELS = expiredChannel('*');

export interface ControlPermission {
  /** The ACL rule, as in ACL SETUSER. */
  rule: string;
  /** Why the proxy needs it. */
  why: string;
  /** A command this rule allows; queued (never run) by the start-up check. */
  probe: (prefix: string) => string[];
}

/**
 * Commands of the control connections and of the library functions they call (a function's
 * redis.call is checked against the caller's ACLs). Keys the probes name are internal keys.
 */
export const CONTROL_COMMANDS: readonly ControlPermission[] = [
  { rule: '+multi', why: 'start-up permission check', probe: () => ['MULTI'] },
  { rule: '+discard', why: 'start-up permission check', probe: () => ['DISCARD'] },
  { rule: '+info', why: 'version and run_id (INFO server), ioredis ready check', probe: () => ['INFO', 'server'] },
  { rule: '+role', why: 'confirms the upstream is a master (at start; under Sentinel, every master it is told of)', probe: () => ['ROLE'] },
  { rule: '+client|setname', why: 'names its connections (CLIENT LIST shows notifylist-proxy:*)', probe: () => ['CLIENT', 'SETNAME', 'x'] },
  { rule: '+function|load', why: 'loads the notifylist library', probe: () => ['FUNCTION', 'LOAD', 'x'] },
  { rule: '+fcall_ro', why: "the loaded library's version (notices a flushed or older library)", probe: () => ['FCALL_RO', 'notifylist_version', '0'] },
  { rule: '+fcall', why: 'reaper lease, expiry reports, backfill', probe: (p) => ['FCALL', 'notifylist_lease', '1', `${p}reaper`, 'x', '1'] },
  { rule: '+select', why: 'works in every database', probe: () => ['SELECT', '0'] },
  { rule: '+time', why: "Redis's clock (also inside functions)", probe: () => ['TIME'] },
  { rule: '+hgetall', why: 'loads the registrations; backfill', probe: (p) => ['HGETALL', `${p}registry`] },
  { rule: '+hget', why: 'functions verify registrations', probe: (p) => ['HGET', `${p}registry`, 'x'] },
  { rule: '+hmget', why: 'looks changed registrations up', probe: (p) => ['HMGET', `${p}registry`, 'x'] },
  { rule: '+hlen', why: 'registry counts (maintenance), pending backfills', probe: (p) => ['HLEN', `${p}registry`] },
  { rule: '+hrandfield', why: 'backfill picks a pending pattern', probe: (p) => ['HRANDFIELD', `${p}backfill`] },
  { rule: '+dbsize', why: 'backfill paces its steps', probe: () => ['DBSIZE'] },
  { rule: '+hset', why: 'backfill progress; restores registrations after a Redis restart', probe: (p) => ['HSET', `${p}backfill`, 'x', '0'] },
  { rule: '+hdel', why: 'backfill progress', probe: (p) => ['HDEL', `${p}backfill`, 'x'] },
  { rule: '+hincrby', why: 'event counter', probe: (p) => ['HINCRBY', `${p}stats`, 'events', '1'] },
  { rule: '+zcard', why: 'finds databases with index entries', probe: (p) => ['ZCARD', `${p}expiry`] },
  { rule: '+zrange', why: 'reaper: due entries', probe: (p) => ['ZRANGE', `${p}expiry`, '0', '0'] },
  { rule: '+zscore', why: 'expiry reports', probe: (p) => ['ZSCORE', `${p}expiry`, 'x'] },
  { rule: '+zadd', why: 'expiry index', probe: (p) => ['ZADD', `${p}expiry`, '0', 'x'] },
  { rule: '+zrem', why: 'expiry index', probe: (p) => ['ZREM', `${p}expiry`, 'x'] },
  { rule: '+get', why: 'reaper lease', probe: (p) => ['GET', `${p}reaper`] },
  { rule: '+set', why: 'reaper lease', probe: (p) => ['SET', `${p}reaper`, 'x'] },
  { rule: '+del', why: 'reaper lease release', probe: (p) => ['DEL', `${p}reaper`] },
  { rule: '+scan', why: 'backfill of keys registered after they got a TTL', probe: () => ['SCAN', '0'] },
  { rule: '+pexpiretime', why: "reads a registered key's deadline", probe: (p) => ['PEXPIRETIME', `${p}x`] },
  { rule: '+object|encoding', why: 'checks that a registered key exists', probe: (p) => ['OBJECT', 'ENCODING', `${p}x`] },
  { rule: '+type', why: 'checks the type of an event list', probe: (p) => ['TYPE', `${p}x`] },
  { rule: '+rpush', why: 'pushes events', probe: (p) => ['RPUSH', `${p}x`, 'x'] },
  { rule: '+publish', why: 'wake and change messages', probe: (p) => ['PUBLISH', `${p}wake`, 'x'] },
  { rule: '+acl|getuser', why: "checks that a registering user, and later each registration's owner, may read every key the pattern can match", probe: () => ['ACL', 'GETUSER', 'default'] },
  { rule: '+acl|dryrun', why: "checks that each registration's owner may still push to its list", probe: () => ['ACL', 'DRYRUN', 'default', 'PING'] },
  { rule: '+subscribe', why: 'change, wake and keyevent channels', probe: (p) => ['SUBSCRIBE', `${p}changes`] },
  { rule: '+unsubscribe', why: 'keyevent channels of databases that need them no longer', probe: (p) => ['UNSUBSCRIBE', `${p}changes`] },
];

/** Key and channel patterns; probed with the commands above (they fail on the pattern alone). */
export const CONTROL_PATTERNS: readonly ControlPermission[] = [
  { rule: '~<prefix>*', why: 'internal keys', probe: (p) => ['ZCARD', `${p}expiry`] },
  { rule: '&<prefix>*', why: 'change and wake channels', probe: (p) => ['SUBSCRIBE', `${p}changes`] },
  { rule: `&${KEYEVENT_CHANNELS}`, why: 'expired keyevents (one channel per database)', probe: () => ['SUBSCRIBE', expiredChannel(0)] },
];

/**
 * Not checked at start. Without +config|get / +config|set, set notify-keyspace-events to include
 * Exe yourself; without +config|get, protected mode takes Redis's protected-mode to be yes
 * (src/proxy/protected-mode.ts); without the evicted keyevent channels, no `evicted` events;
 * without +xadd +xlen +ltrim, expirations of keys registered to a stream target or a MAXLEN
 * list wait in the index (the reaper's call is refused, nothing is lost) until they are granted.
 */
export const OPTIONAL_CONTROL_RULES = ['+config|get', '+config|set', `&${evictedChannel('*')}`, '+xadd', '+xlen', '+ltrim'] as const;

/** A pattern rule with the prefix filled in, escaped for a glob. */
const withPrefix = (rule: string, prefix: string): string => rule.replace('<prefix>', escapeGlob(prefix));

/** The rules with the prefix filled in, as for ACL SETUSER. */
export function controlAclRules(prefix: string, options: { optional?: boolean } = {}): string[] {
  return [
    ...CONTROL_COMMANDS.map((p) => p.rule),
    ...(options.optional ? OPTIONAL_CONTROL_RULES : []),
    ...CONTROL_PATTERNS.map((p) => withPrefix(p.rule, prefix)),
  ];
}

const PROBE_TIMEOUT_MS = 5000;

/**
 * Which of the required rules the upstream user lacks; [] when none. Throws when the check could
 * not be made (unreachable, authentication refused, no answer): the caller reports that its way.
 */
export async function missingControlPermissions(upstream: Upstream, prefix: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<string[]> {
  const connection = await RawConnection.open(upstream, timeoutMs);
  try {
    if (upstream.password !== undefined) {
      const [auth] = await connection.send([upstream.username !== undefined ? ['AUTH', upstream.username, upstream.password] : ['AUTH', upstream.password]]);
      if (auth.startsWith('-')) throw new Error(`authentication refused: ${auth.slice(1)}`);
    }
    // MULTI alone first: if it is refused, the probes must not be sent (they would run).
    const [multi] = await connection.send([['MULTI']]);
    if (multi.startsWith('-NOPERM')) return ['+multi'];
    if (!multi.startsWith('+OK')) throw new Error(`MULTI: ${multi.slice(1)}`);
    const probes = [...CONTROL_COMMANDS.filter((p) => p.rule !== '+multi' && p.rule !== '+discard'), ...CONTROL_PATTERNS];
    const replies = await connection.send([...probes.map((p) => p.probe(prefix)), ['DISCARD']]);
    const missing: string[] = [];
    probes.forEach((probe, i) => {
      const reply = replies[i];
      if (!reply.startsWith('-NOPERM')) return;
      // "... to run the 'x' command" names the command; "... to access one of the keys/channels"
      // is reported once, by the pattern's own probe (whose command is allowed, or reported).
      const commandRefused = / command$/.test(reply);
      if (CONTROL_PATTERNS.includes(probe)) {
        if (!commandRefused) missing.push(withPrefix(probe.rule, prefix));
      } else if (commandRefused) {
        missing.push(probe.rule);
      }
    });
    if (replies[replies.length - 1].startsWith('-NOPERM')) missing.push('+discard');
    return missing;
  } finally {
    connection.close();
  }
}

/** A bare RESP connection: requests out, each reply's first line back. */
class RawConnection {
  private buffer = Buffer.alloc(0);
  private replies: string[] = [];
  private waiting: { count: number; resolve: (replies: string[]) => void; reject: (error: Error) => void } | null = null;
  private failure: Error | null = null;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      let start = 0;
      for (let end = replyEnd(this.buffer, start); end !== -1; end = replyEnd(this.buffer, start)) {
        this.replies.push(this.buffer.toString('utf8', start, this.buffer.indexOf('\r\n', start)));
        start = end;
      }
      this.buffer = this.buffer.subarray(start);
      this.settle();
    });
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  static open(upstream: Upstream, timeoutMs: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const { socket, readyEvent } = upstream.openOnce();
      socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      socket.once('error', reject);
      socket.once(readyEvent, () => {
        socket.off('error', reject);
        resolve(new RawConnection(socket));
      });
    });
  }

  send(requests: string[][]): Promise<string[]> {
    this.socket.write(Buffer.concat(requests.map((r) => encodeCommand(r.map((a) => Buffer.from(a, 'utf8'))))));
    return new Promise((resolve, reject) => {
      this.waiting = { count: requests.length, resolve, reject };
      this.settle();
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.settle();
  }

  private settle(): void {
    const waiting = this.waiting;
    if (!waiting) return;
    if (this.replies.length >= waiting.count) {
      this.waiting = null;
      waiting.resolve(this.replies.splice(0, waiting.count));
    } else if (this.failure) {
      this.waiting = null;
      waiting.reject(this.failure);
    }
  }
}
