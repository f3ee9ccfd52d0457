// Replies a library function cannot give as Redis does, put right on their way to the client.
// A function's reply goes through Lua, which has no null array (RESP2 `*-1`: LPOP with a count,
// LMPOP, ZMPOP, XREADGROUP with nothing to give) and no integer above 2^53 (INCRBY, HINCRBY near
// the 64-bit limits). In those cases the library returns a RESP3 big number holding the marker
// (made with the deployment's secret: no user can make one) and what to reply:
//   RESP2 client: $<len>\r\n<marker><payload>\r\n      RESP3 client: (<marker><payload>\r\n
//   payload `n`: a null array (RESP2 *-1, RESP3 _); `i<digits>`: that integer (:<digits>);
//   `w`: a blocking command that would block, and `p`: the reply to the session's own PING after
//   it (both go to the session, not to the client: see Session's resend).
// The session runs its replies through this once it has sent a command that may be marked
// (rare): one native search per chunk. A marker split across chunks is held until its end comes;
// a tail that only looks like a marker's beginning is let go after HOLD_MS at the latest.
import { tag } from '../security/secret.js';

/** The marker of a deployment's secret (notifylist.lua: reply_marker). */
export function replyMarker(secret: string): Buffer {
  return Buffer.from(`\u0000notifylist-reply:${tag(secret, 'reply marker')}:`, 'latin1');
}

const HOLD_MS = 100;
const EMPTY = Buffer.alloc(0);
const CR = 0x0d;
const LF = 0x0a;
const DOLLAR = 0x24;
const PAREN = 0x28;
const LONGEST_PAYLOAD = 21; // i, sign and 19 digits

export class ReplyMarkers {
  private held: Buffer | null = null;
  private holdTimer: NodeJS.Timeout | null = null;
  /** Markers meant for the session, found in the current chunk (told once it is filtered). */
  private readonly signals: string[] = [];

  constructor(
    private readonly marker: () => Buffer,
    /** Sends held bytes that turned out not to be a marker (after HOLD_MS). */
    private readonly release: (bytes: Buffer) => void,
    /** Told of the markers meant for the session (`w`, `p`), in stream order. */
    private readonly signal: (payload: string) => void = () => undefined,
  ) {}

  /** The bytes for the client now (markers replaced; a possible marker's beginning held). */
  filter(chunk: Buffer): Buffer {
    const data = this.held === null ? chunk : Buffer.concat([this.held, chunk]);
    this.held = null;
    if (this.holdTimer !== null) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const marker = this.marker();
    const pieces: Buffer[] = [];
    let from = 0;
    // Where to hold from: a marker's element not whole yet, else a tail that may begin one.
    let holdAt = -1;
    for (;;) {
      const at = data.indexOf(marker, from);
      if (at === -1) break;
      const element = this.elementAt(data, at, marker.length);
      if (element === null) {
        holdAt = this.elementStart(data, at);
        break;
      }
      if (element.start < from) break; // (cannot happen: a marker's header follows a boundary)
      pieces.push(data.subarray(from, element.start), element.replacement);
      from = element.end;
    }
    const out = this.holdFrom(data, holdAt === -1 ? this.possibleStart(data, from, marker) : holdAt, pieces, from);
    // (After the bytes are in order: a signal may make the session write to Redis.)
    for (const payload of this.signals.splice(0)) this.signal(payload);
    return out;
  }

  /** What a marker stands for (an unknown payload: an empty reply, never a crash). */
  private decode(payload: string, protocol: 2 | 3): Buffer {
    if (payload === 'w' || payload === 'p') {
      this.signals.push(payload);
      return EMPTY;
    }
    return decode(payload, protocol);
  }

  /** Where the element holding the marker at `at` starts: its `(` or its `$<len>\r\n`. */
  private elementStart(data: Buffer, at: number): number {
    if (at >= 1 && data[at - 1] === PAREN) return at - 1;
    return data.lastIndexOf(DOLLAR, at - 1);
  }

  private elementAt(data: Buffer, at: number, markerLength: number): { start: number; end: number; replacement: Buffer } | null {
    const payloadFrom = at + markerLength;
    if (at >= 1 && data[at - 1] === PAREN) {
      const crlf = data.indexOf('\r\n', payloadFrom);
      if (crlf === -1) return null;
      return { start: at - 1, end: crlf + 2, replacement: this.decode(data.toString('latin1', payloadFrom, crlf), 3) };
    }
    const start = data.lastIndexOf(DOLLAR, at - 1);
    const length = Number(data.toString('latin1', start + 1, at - 2));
    if (start === -1 || data[at - 2] !== CR || data[at - 1] !== LF || !Number.isInteger(length)) return null;
    const end = at + length + 2;
    if (end > data.length) return null;
    return { start, end, replacement: this.decode(data.toString('latin1', payloadFrom, at + length), 2) };
  }

  /** The start of a tail that may be a marker's beginning (`(` or `$<len>\r\n` of a marker's
   * length, then a prefix of the marker), else data.length. */
  private possibleStart(data: Buffer, from: number, marker: Buffer): number {
    const lowest = Math.max(from, data.length - marker.length - 8);
    for (let p = lowest; p < data.length; p++) {
      const byte = data[p];
      if (byte !== PAREN && byte !== DOLLAR) continue;
      let q = p + 1;
      if (byte === DOLLAR) {
        while (q < data.length && data[q] >= 0x30 && data[q] <= 0x39) q++;
        if (q < data.length) {
          const length = Number(data.toString('latin1', p + 1, q));
          if (length <= marker.length || length > marker.length + LONGEST_PAYLOAD) continue;
        }
        if (q < data.length && data[q] !== CR) continue;
        if (q < data.length) q++;
        if (q < data.length && data[q] !== LF) continue;
        if (q < data.length) q++;
      }
      const rest = data.length - q;
      if (rest <= marker.length && data.subarray(q).equals(marker.subarray(0, rest))) return p;
    }
    return data.length;
  }

  private holdFrom(data: Buffer, holdAt: number, pieces: Buffer[], from: number): Buffer {
    if (holdAt < data.length) {
      this.held = Buffer.from(data.subarray(holdAt));
      this.holdTimer = setTimeout(() => {
        const held = this.held;
        this.held = null;
        this.holdTimer = null;
        if (held !== null) this.release(held);
      }, HOLD_MS);
    }
    const end = Math.min(holdAt, data.length);
    if (pieces.length === 0) return from === 0 && end === data.length ? data : data.subarray(from, end);
    pieces.push(data.subarray(from, end));
    return Buffer.concat(pieces);
  }
}

/** What a reply marker stands for (an unknown payload: an empty reply, never a crash). */
function decode(payload: string, protocol: 2 | 3): Buffer {
  if (payload === 'n') return Buffer.from(protocol === 2 ? '*-1\r\n' : '_\r\n', 'latin1');
  if (/^i-?\d+$/.test(payload)) return Buffer.from(`:${payload.slice(1)}\r\n`, 'latin1');
  return Buffer.from(protocol === 2 ? '$-1\r\n' : '_\r\n', 'latin1');
}
