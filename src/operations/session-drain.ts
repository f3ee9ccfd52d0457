// One session's part in a graceful drain (drain.ts). The proxy does not count replies (hot path),
// so it cannot tell whether a request is still in flight. Instead, once nothing more is read from
// the client, it sends Redis `PING <token>` behind everything already forwarded: when that reply
// comes back, every earlier reply has come back too. The marker's reply is never shown to the
// client. Its form tells the session's mode:
//   $<n>\r\n<token>\r\n                    normal: done, close now (a RESP3 subscriber replies so
//                                          too: the session knows it subscribed, and closes it last)
//   *2\r\n$4\r\npong\r\n$<n>\r\n<token>\r\n  RESP2 subscriber: closed last (messages still flow)
//   +QUEUED\r\n (indistinguishable)        inside MULTI: the last +QUEUED before Redis closes is it
//   nothing                                blocked (BLPOP, XREAD BLOCK, WAIT) or a client not reading
// A session whose marker has not come back after QUIET_MS without any byte from Redis is taken as
// blocked or in MULTI: it is closed last, by an EOF to Redis (Redis then ends the blocked command
// without serving it, or discards the transaction, and closes after the replies it has written).
import { randomBytes } from 'node:crypto';
import { encodeCommand } from '../resp/encode.js';

/** No byte from Redis for this long while the marker is out: blocked or in MULTI. */
export const QUIET_MS = 200;

const SUBSCRIBED_PREFIX = Buffer.from('*2\r\n$4\r\npong\r\n', 'latin1');
const QUEUED = Buffer.from('+QUEUED\r\n', 'latin1');

export type DrainState =
  /** marker out, replies still coming */
  | 'pending'
  /** every reply is back (or the session was idle): it closes now */
  | 'done'
  /** a subscriber (RESP2: told by the marker's reply; RESP3: the session saw it subscribe): closed last */
  | 'subscribed'
  /** Redis closes it itself (a protocol error) or gets its EOF now (an unauthenticated client) */
  | 'ending';

export class SessionDrain {
  state: DrainState = 'pending';
  /** When Redis last sent this session anything (or the drain began). */
  lastData = Date.now();
  /** The session's connections are both gone. */
  readonly closed: Promise<void>;
  readonly markerRequest: Buffer;
  private readonly markerReply: Buffer;
  /** Bytes held back because they may be the start of the marker's reply. */
  private held: Buffer | null = null;
  private resolveClosed!: () => void;

  constructor(token: string) {
    this.markerRequest = encodeCommand(['PING', token]);
    this.markerReply = Buffer.from(`$${token.length}\r\n${token}\r\n`, 'latin1');
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Blocked, in MULTI or not reading: nothing from Redis for QUIET_MS while the marker is out. */
  get quiet(): boolean {
    return this.state === 'pending' && Date.now() - this.lastData >= QUIET_MS;
  }

  /** Closed last: a subscriber, or quiet (see above). */
  get last(): boolean {
    return this.state === 'subscribed' || this.quiet;
  }

  onClosed(): void {
    this.resolveClosed();
  }

  /** Redis's bytes for the client, without the marker's reply. (Drain only: allocations are fine.) */
  filter(chunk: Buffer): Buffer {
    this.lastData = Date.now();
    if (this.state !== 'pending') return chunk;
    const bytes = this.held === null ? chunk : Buffer.concat([this.held, chunk]);
    this.held = null;
    const at = bytes.indexOf(this.markerReply);
    if (at !== -1) {
      const from = at >= SUBSCRIBED_PREFIX.length && bytes.subarray(at - SUBSCRIBED_PREFIX.length, at).equals(SUBSCRIBED_PREFIX) ? at - SUBSCRIBED_PREFIX.length : at;
      this.state = from === at ? 'done' : 'subscribed';
      return Buffer.concat([bytes.subarray(0, from), bytes.subarray(at + this.markerReply.length)]);
    }
    // Keep back what could be the beginning of the marker's reply (or a MULTI's last +QUEUED).
    const keep = Math.min(bytes.length, SUBSCRIBED_PREFIX.length + this.markerReply.length - 1);
    this.held = Buffer.from(bytes.subarray(bytes.length - keep));
    return bytes.subarray(0, bytes.length - keep);
  }

  /** At the end of Redis's stream: what was held back, less a MULTI's last +QUEUED (the marker's). */
  rest(): Buffer {
    const held = this.held;
    this.held = null;
    if (held === null) return Buffer.alloc(0);
    if (this.state === 'pending' && held.length >= QUEUED.length && held.subarray(held.length - QUEUED.length).equals(QUEUED)) {
      return held.subarray(0, held.length - QUEUED.length);
    }
    return held;
  }
}

/** One token per drain: a client cannot guess it, so no reply of its own looks like the marker's. */
export function drainToken(): string {
  return `notifylist-drain-${randomBytes(12).toString('hex')}`;
}
