// Incremental, zero-copy framer for the request stream a client sends to Redis.
//
// It splits the byte stream into requests exactly as Redis 7.0 does
// (src/networking.c: processInputBuffer, processInlineBuffer, processMultibulkBuffer;
// src/util.c: string2ll; src/sds.c: sdssplitargs), quirks included, because the proxy
// forwards the same bytes and must never disagree with Redis about where a request ends.
//
// Redis quirks reproduced here:
// - A request starting with `*` is multibulk, anything else inline.
// - Line ends are found with strchr() on a NUL-terminated buffer: multibulk count and bulk
//   header lines end at the first `\r`, inline lines at the first `\n`, and a NUL byte before
//   that terminator means "not found" (forever: Redis waits until more than
//   PROTO_INLINE_MAX_SIZE bytes are buffered from the line start, then fails with "too big").
// - After the `\r` of a count/header line one more byte must be present; it is skipped
//   without checking that it is `\n`. The 2 bytes after bulk data are skipped unchecked too.
// - Numbers use string2ll: optional '-', no '+', no leading zeros (except "0"), no "-0",
//   at most 20 characters, must fit a signed 64-bit integer.
// - A multibulk count <= 0 is an empty request (consumed, no command); > INT_MAX is an error.
// - An inline `\n` preceded by `\r` strips the `\r` (unless the `\n` is the first byte).
// - "too big" checks apply only when no terminator is found in everything buffered, so a
//   longer line that arrives in one read is accepted (as in Redis, this depends on chunking).
// - While the client is not authenticated (authRequired), a count over 10 or a bulk length over
//   16384 fails at its header line, checked after the INT_MAX / proto-max-bulk-len checks.

import { constants as bufferConstants } from 'node:buffer';

export interface FramerLimits {
  /** proto-max-bulk-len: largest accepted bulk argument. */
  maxBulkLength: number;
  /** Largest accepted multibulk count (Redis 7.0 accepts up to INT_MAX). */
  maxMultibulkLength: number;
  /** PROTO_INLINE_MAX_SIZE: how much may be buffered without finding the end of an inline
   *  request, a multibulk count line or a bulk header line. */
  maxInlineLength: number;
}

const INT_MAX = 2147483647;
const PROTO_INLINE_MAX_SIZE = 65536;

export const DEFAULT_LIMITS: FramerLimits = Object.freeze({
  maxBulkLength: 512 * 1024 * 1024,
  // Redis 7.0 checks `ll > INT_MAX` (6.2 and older: 1024*1024); anything lower would make the
  // proxy refuse requests Redis accepts.
  maxMultibulkLength: INT_MAX,
  maxInlineLength: PROTO_INLINE_MAX_SIZE,
});

export interface ProtocolError {
  /** What Redis sends after "-ERR " (a binary/latin1 string: "expected '$', got 'c'" carries
   *  the raw byte; write it with the 'latin1' encoding). */
  message: string;
  /** Bytes that, sent to a Redis 7.0 connection at a request boundary, make it reply exactly
   *  `-ERR ${message}\r\n` and close the connection. */
  upstreamTrigger: Buffer;
  /**
   * One of Redis's limits for unauthenticated clients (only while `unauthenticated` is set; the
   * trigger works only on a connection Redis still considers unauthenticated). The framer is not
   * dead: `takeRemainder()` gives the input from this frame's first byte on, to push again (with
   * the limits off) if Redis turns out not to require AUTH after all.
   */
  unauthenticated?: true;
}

const MSG_TOO_BIG_INLINE = 'Protocol error: too big inline request';
const MSG_TOO_BIG_MBULK = 'Protocol error: too big mbulk count string';
const MSG_TOO_BIG_BULK = 'Protocol error: too big bulk count string';
const MSG_INVALID_MBULK = 'Protocol error: invalid multibulk length';
const MSG_INVALID_BULK = 'Protocol error: invalid bulk length';
const MSG_UNBALANCED = 'Protocol error: unbalanced quotes in request';
const MSG_UNAUTH_MBULK = 'Protocol error: unauthenticated multibulk length';
const MSG_UNAUTH_BULK = 'Protocol error: unauthenticated bulk length';

// The "too big" triggers are exactly PROTO_INLINE_MAX_SIZE + 1 bytes counted from the line
// start, so Redis has read every byte when it fails (unread input would turn its close into
// a TCP reset that can destroy the error reply).
function tooBigInlineError(): ProtocolError {
  return { message: MSG_TOO_BIG_INLINE, upstreamTrigger: Buffer.alloc(PROTO_INLINE_MAX_SIZE + 1, 'a') };
}
function tooBigMbulkError(): ProtocolError {
  const b = Buffer.alloc(PROTO_INLINE_MAX_SIZE + 1, '1');
  b[0] = 0x2a; // '*'
  return { message: MSG_TOO_BIG_MBULK, upstreamTrigger: b };
}
function tooBigBulkError(): ProtocolError {
  const b = Buffer.alloc(4 + PROTO_INLINE_MAX_SIZE + 1, '1');
  b.write('*1\r\n$', 0, 'latin1');
  return { message: MSG_TOO_BIG_BULK, upstreamTrigger: b };
}
function invalidMbulkError(): ProtocolError {
  return { message: MSG_INVALID_MBULK, upstreamTrigger: Buffer.from('*x\r\n', 'latin1') };
}
function invalidBulkError(): ProtocolError {
  return { message: MSG_INVALID_BULK, upstreamTrigger: Buffer.from('*1\r\n$x\r\n', 'latin1') };
}
// src/networking.c processMultibulkBuffer: `ll > 10 && authRequired(c)`, `ll > 16384 && authRequired(c)`.
const UNAUTH_MAX_MULTIBULK = 10;
const UNAUTH_MAX_BULK = 16384;
function unauthMbulkError(): ProtocolError {
  return { message: MSG_UNAUTH_MBULK, upstreamTrigger: Buffer.from(`*${UNAUTH_MAX_MULTIBULK + 1}\r\n`, 'latin1'), unauthenticated: true };
}
function unauthBulkError(): ProtocolError {
  return { message: MSG_UNAUTH_BULK, upstreamTrigger: Buffer.from(`*1\r\n$${UNAUTH_MAX_BULK + 1}\r\n`, 'latin1'), unauthenticated: true };
}
function unbalancedError(): ProtocolError {
  return { message: MSG_UNBALANCED, upstreamTrigger: Buffer.from('"\n', 'latin1') };
}
function expectedDollarError(byte: number): ProtocolError {
  // addReplyErrorFormat() maps '\r' and '\n' in the message to spaces.
  const shown = byte === 13 || byte === 10 ? 32 : byte;
  const trigger = Buffer.from('*1\r\n?\r\n', 'latin1');
  trigger[4] = byte;
  return {
    message: `Protocol error: expected '$', got '${String.fromCharCode(shown)}'`,
    upstreamTrigger: trigger,
  };
}

const ST_IDLE: number = 0;
const ST_MB_COUNT: number = 1;
const ST_MB_HEADER: number = 2;
const ST_MB_DATA: number = 3;
const ST_INLINE: number = 4;
/** A NUL byte came before the line terminator: Redis can never finish this line. */
const ST_DEAD: number = 5;

const NEED_MORE = -1;
const FAILED = -2;
/** A header over the unauthenticated limits (see ProtocolError.unauthenticated). */
const LIMITED = -3;

const EMPTY = Buffer.alloc(0);
// 16 (64 bytes each): V8 keeps typed arrays this small on its heap, cheap to make per connection.
const INITIAL_ARGS = 16;
const SHRINK_ARGS_ABOVE = 4096;

/** C isspace() in the "C" locale. */
function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}
function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

const LLONG_MAX_DIGITS = [9, 2, 2, 3, 3, 7, 2, 0, 3, 6, 8, 5, 4, 7, 7, 5, 8, 0, 7];

/**
 * Redis string2ll() on b[s, e). Returns NaN when Redis would say "not ok", otherwise the
 * value (exact up to 2^53; larger magnitudes are approximated, which is fine because they
 * are only compared against limits far below 2^53 or checked for sign).
 */
export function string2ll(b: Uint8Array, s: number, e: number): number {
  const slen = e - s;
  if (slen === 0 || slen >= 21) return NaN;
  if (slen === 1 && b[s] === 48) return 0;
  let p = s;
  let negative = false;
  if (b[p] === 45) {
    negative = true;
    p++;
    if (p === e) return NaN;
  }
  const digitsStart = p;
  let c = b[p];
  if (c < 49 || c > 57) return NaN;
  let v = c - 48;
  p++;
  while (p < e) {
    c = b[p];
    if (c < 48 || c > 57) return NaN;
    v = v * 10 + (c - 48);
    p++;
  }
  const nd = e - digitsStart;
  if (nd > 19) return NaN;
  if (nd === 19) {
    // Exact overflow check against LLONG_MAX (9223372036854775807) / LLONG_MIN magnitude.
    for (let i = 0; i < 19; i++) {
      const d = b[digitsStart + i] - 48;
      const m = i === 18 && negative ? 8 : LLONG_MAX_DIGITS[i];
      if (d < m) break;
      if (d > m) return NaN;
    }
  }
  return negative ? -v : v;
}

/** One complete request. The object is reused: valid only during the callback. */
export class RequestFrame {
  /** Buffer that holds the whole frame's raw bytes. */
  buf: Buffer = EMPTY;
  /** Offset of the frame's first byte in buf. */
  start = 0;
  /** Offset just past its last byte. */
  end = 0;
  /** Number of arguments; 0 for empty requests (`*0\r\n`, `*-1\r\n`, blank inline line). */
  argc = 0;
  inline = false;

  /** @internal multibulk: argument data offsets, relative to `start`. */
  _off: Uint32Array;
  /** @internal multibulk: argument lengths. */
  _len: Uint32Array;
  /** @internal multibulk: `$len\r\n` header offsets, relative to `start`. */
  _hdr: Uint32Array;
  /** @internal inline: decoded arguments. */
  _inlineArgs: Buffer[] = [];

  constructor(off: Uint32Array, len: Uint32Array, hdr: Uint32Array) {
    this._off = off;
    this._len = len;
    this._hdr = hdr;
  }

  /** Raw bytes of the whole frame (a view, no copy). */
  raw(): Buffer {
    return this.buf.subarray(this.start, this.end);
  }

  /** The i-th argument as a view (multibulk: subarray of buf, no copy; inline: decoded). */
  arg(i: number): Buffer {
    if (this.inline) return this._inlineArgs[i];
    const s = this.start + this._off[i];
    return this.buf.subarray(s, s + this._len[i]);
  }

  argLength(i: number): number {
    return this.inline ? this._inlineArgs[i].length : this._len[i];
  }

  /** The first byte of argument i; -1 if it is empty. */
  argFirstByte(i: number): number {
    if (this.inline) {
      const a = this._inlineArgs[i];
      return a.length === 0 ? -1 : a[0];
    }
    return this._len[i] === 0 ? -1 : this.buf[this.start + this._off[i]];
  }

  /** The i-th argument as a binary (latin1) string. */
  argLatin1(i: number): string {
    if (this.inline) return this._inlineArgs[i].toString('latin1');
    const s = this.start + this._off[i];
    return this.buf.toString('latin1', s, s + this._len[i]);
  }

  /** True if argument i equals `lowerAscii` ignoring ASCII case (no allocation). */
  argIs(i: number, lowerAscii: string): boolean {
    let b: Uint8Array;
    let s: number;
    let n: number;
    if (this.inline) {
      b = this._inlineArgs[i];
      s = 0;
      n = b.length;
    } else {
      b = this.buf;
      s = this.start + this._off[i];
      n = this._len[i];
    }
    if (n !== lowerAscii.length) return false;
    for (let j = 0; j < n; j++) {
      let c = b[s + j];
      if (c >= 65 && c <= 90) c |= 0x20;
      if (c !== lowerAscii.charCodeAt(j)) return false;
    }
    return true;
  }

  /**
   * Multibulk frames: offset in buf where argument i's `$len\r\n` header starts, so that
   * buf.subarray(argHeaderStart(i), end) are the raw bytes of arguments i..argc-1.
   * Inline frames: -1.
   */
  argHeaderStart(i: number): number {
    if (this.inline) return -1;
    return this.start + this._hdr[i];
  }
}

/**
 * Index of the first `terminator` (`\r` for count and bulk headers, `\n` for inline lines) or NUL
 * in b[from, lim), else lim. Redis finds line ends with strchr/memchr on a NUL-terminated buffer,
 * so a NUL first means the line end is never found.
 */
function findLineEnd(b: Buffer, from: number, lim: number, terminator: number): number {
  let i = from;
  while (i < lim) {
    const c = b[i];
    if (c === terminator || c === 0) return i;
    i++;
  }
  return lim;
}

export class RequestFramer {
  private readonly maxBulk: number;
  private readonly maxMbulk: number;
  private readonly maxInline: number;
  /** The limits in force: the configured ones, or lower ones while unauthenticated (one
   *  comparison per header either way; which error applies is sorted out past it). */
  private mbulkLimit: number;
  private bulkLimit: number;

  private error: ProtocolError | null = null;
  /** Set when an unauthenticated limit was hit. */
  private limitHit: ProtocolError | null = null;
  /** stop() was called from the frame callback. */
  private stopRequested = false;
  /** Input not consumed after a stop or an unauthenticated limit. */
  private remainder: Buffer | null = null;

  // Parse state. Positions are relative to the start of the frame being parsed.
  private state = ST_IDLE;
  /** Start of the current line (count, header or inline line). */
  private lineStart = 0;
  /** Next byte to examine in the current line search. */
  private scanPos = 0;
  /** Position of the `\r` ending the current count/header line, -1 if not found yet. */
  private crPos = -1;
  private itemsLeft = 0;
  private bulkLen = 0;
  private dataStart = 0;
  private argc = 0;
  /** ST_DEAD: error to return once more than maxInline bytes follow the line start. */
  private deadError: (() => ProtocolError) | null = null;
  /** ST_DEAD: bytes received from the frame start (not stored). */
  private deadBytes = 0;

  private off: Uint32Array;
  private len: Uint32Array;
  private hdr: Uint32Array;
  private readonly frame: RequestFrame;

  /** Holds the incomplete frame that spans chunks, from its first byte at offset 0. */
  private acc: Buffer = EMPTY;
  private accLen = 0;

  constructor(limits?: Partial<FramerLimits>) {
    const l = { ...DEFAULT_LIMITS, ...limits };
    this.maxBulk = l.maxBulkLength;
    this.maxMbulk = Math.min(l.maxMultibulkLength, INT_MAX);
    this.maxInline = l.maxInlineLength;
    this.mbulkLimit = this.maxMbulk;
    this.bulkLimit = this.maxBulk;
    this.off = new Uint32Array(INITIAL_ARGS);
    this.len = new Uint32Array(INITIAL_ARGS);
    this.hdr = new Uint32Array(INITIAL_ARGS);
    this.frame = new RequestFrame(this.off, this.len, this.hdr);
  }

  /** Bytes received for the incomplete frame (held in memory, except after a NUL in a
   *  header line, where Redis can only fail later and the bytes are merely counted). */
  get bufferedBytes(): number {
    return this.state === ST_DEAD ? this.deadBytes : this.accLen;
  }

  /** The error that killed this framer, if any. */
  get failed(): ProtocolError | null {
    return this.error;
  }

  /**
   * Redis's limits for a client that is not authenticated (authRequired): a multibulk count over
   * 10 or a bulk over 16384 makes push() return an `unauthenticated` ProtocolError at that header,
   * before the frame is buffered. Takes effect from the next frame header parsed.
   */
  set unauthenticated(on: boolean) {
    this.mbulkLimit = on ? Math.min(this.maxMbulk, UNAUTH_MAX_MULTIBULK) : this.maxMbulk;
    this.bulkLimit = on ? Math.min(this.maxBulk, UNAUTH_MAX_BULK) : this.maxBulk;
  }

  /**
   * From the frame callback: stop after this frame. push() then returns (null) without parsing
   * further; takeRemainder() gives the rest of the chunk, to push later.
   */
  stop(): void {
    this.stopRequested = true;
  }

  /** The input left after a stop() or an unauthenticated limit (then null again); null if none. */
  takeRemainder(): Buffer | null {
    const rest = this.remainder;
    this.remainder = null;
    return rest;
  }

  /**
   * Parses chunk; calls onFrame for each complete frame, in order. Returns a ProtocolError
   * if the stream is malformed (frames before the bad one were already delivered); the
   * framer is then dead and returns the same error on every later call (not so for an
   * `unauthenticated` one, see ProtocolError).
   */
  push(chunk: Buffer, onFrame: (frame: RequestFrame) => void): ProtocolError | null {
    if (this.error !== null) return this.error;
    const clen = chunk.length;
    let cpos = 0;

    if (this.state === ST_DEAD) {
      this.deadBytes += clen;
      if (this.deadBytes - this.lineStart > this.maxInline) return this.fail(this.deadError!());
      return null;
    }

    // A frame spans chunks: feed it from this chunk, copying only bytes that belong to it.
    if (this.state !== ST_IDLE) {
      while (cpos < clen) {
        const n = this.wanted(chunk, cpos, clen);
        if (!this.append(chunk, cpos, n)) return this.error;
        cpos += n;
        const r = this.parse(this.acc, 0, this.accLen);
        if (r >= 0) {
          // Bytes copied past the frame end (none in practice) go back to the chunk.
          cpos -= this.accLen - r;
          const acc = this.acc;
          // The caller may keep views of this frame: never write into this memory again.
          this.acc = EMPTY;
          this.accLen = 0;
          this.emit(acc, 0, r, onFrame);
          if (this.stopRequested) return this.stopAt(chunk.subarray(cpos));
          break;
        }
        if (r === FAILED) return this.error;
        if (r === LIMITED) {
          const rest = Buffer.concat([this.acc.subarray(0, this.accLen), chunk.subarray(cpos)]);
          this.acc = EMPTY;
          this.accLen = 0;
          return this.limited(rest);
        }
        if (this.state === ST_DEAD) {
          this.deadBytes = this.accLen + (clen - cpos);
          this.acc = EMPTY;
          this.accLen = 0;
          if (this.deadBytes - this.lineStart > this.maxInline) return this.fail(this.deadError!());
          return null;
        }
      }
      if (this.state !== ST_IDLE) return null;
    }

    // Frames inside the chunk are reported in place.
    while (cpos < clen) {
      if (chunk[cpos] === 42) {
        const end = this.wholeMultibulk(chunk, cpos, clen);
        if (end > 0) {
          this.emit(chunk, cpos, end, onFrame);
          cpos = end;
          if (this.stopRequested) return this.stopAt(chunk.subarray(cpos));
          continue;
        }
      }
      this.beginFrame(chunk[cpos]);
      const r = this.parse(chunk, cpos, clen);
      if (r >= 0) {
        this.emit(chunk, cpos, r, onFrame);
        cpos = r;
        if (this.stopRequested) return this.stopAt(chunk.subarray(cpos));
        continue;
      }
      if (r === FAILED) return this.error;
      if (r === LIMITED) return this.limited(chunk.subarray(cpos));
      if (this.state === ST_DEAD) {
        this.deadBytes = clen - cpos;
        if (this.deadBytes - this.lineStart > this.maxInline) return this.fail(this.deadError!());
        return null;
      }
      // Incomplete: keep its bytes (parse state stays valid: positions are frame-relative).
      if (!this.append(chunk, cpos, clen - cpos)) return this.error;
      return null;
    }
    return null;
  }

  /**
   * The usual request, in one pass: a multibulk frame wholly in b[base, lim) whose count and bulk
   * lengths are plain decimal numbers (no sign, no leading zero, at most 9 digits) within the limits
   * in force and the argument arrays. Returns its end offset, with the arguments recorded as
   * parse() records them; or 0 for anything else (incomplete, unusual, malformed), which parse()
   * then reads from the frame's first byte (nothing here changes the framer's state before success).
   */
  private wholeMultibulk(b: Buffer, base: number, lim: number): number {
    // Count line: '*', digits, '\r', and one more byte (Redis does not check that it is '\n').
    let p = base + 1;
    let c = p < lim ? b[p] : 0;
    if (c < 49 || c > 57) return 0;
    let count = c - 48;
    const countEnd = p + 10;
    for (p++; p < lim; p++) {
      c = b[p];
      if (c < 48 || c > 57) break;
      count = count * 10 + (c - 48);
    }
    if (c !== 13 || p >= countEnd || p + 2 > lim || count > this.mbulkLimit || count > this.off.length) return 0;
    p += 2;
    const off = this.off;
    const len = this.len;
    const hdr = this.hdr;
    const bulkLimit = this.bulkLimit;
    for (let k = 0; k < count; k++) {
      // Header line: '$', digits, '\r', one more byte; then the data and 2 unchecked bytes.
      const header = p;
      if (p + 1 >= lim || b[p] !== 36) return 0;
      p++;
      c = b[p];
      if (c < 48 || c > 57) return 0;
      let bulk = c - 48;
      const digitsEnd = p + 9;
      p++;
      if (bulk !== 0) {
        for (; p < lim; p++) {
          c = b[p];
          if (c < 48 || c > 57) break;
          bulk = bulk * 10 + (c - 48);
        }
        if (p > digitsEnd) return 0;
      }
      if (p >= lim || b[p] !== 13 || bulk > bulkLimit) return 0;
      const data = p + 2;
      p = data + bulk + 2;
      if (p > lim) return 0;
      off[k] = data - base;
      len[k] = bulk;
      hdr[k] = header - base;
    }
    this.argc = count;
    this.state = ST_MB_DATA; // (emit: not inline; back to ST_IDLE)
    return p;
  }

  private stopAt(rest: Buffer): null {
    this.stopRequested = false;
    this.remainder = rest;
    return null;
  }

  /** An unauthenticated limit: back to a frame boundary, `rest` from the frame's first byte on. */
  private limited(rest: Buffer): ProtocolError {
    this.state = ST_IDLE;
    this.remainder = rest;
    const hit = this.limitHit!;
    this.limitHit = null;
    return hit;
  }

  private fail(err: ProtocolError): ProtocolError {
    this.error = err;
    this.acc = EMPTY;
    this.accLen = 0;
    return err;
  }

  private beginFrame(first: number): void {
    this.argc = 0;
    this.lineStart = 0;
    this.crPos = -1;
    if (first === 42) {
      this.state = ST_MB_COUNT;
      this.scanPos = 1;
    } else {
      this.state = ST_INLINE;
      this.scanPos = 0;
    }
  }

  private emit(buf: Buffer, start: number, end: number, onFrame: (frame: RequestFrame) => void): void {
    const f = this.frame;
    f.buf = buf;
    f.start = start;
    f.end = end;
    f.argc = this.argc;
    f.inline = this.state === ST_INLINE;
    this.state = ST_IDLE;
    try {
      onFrame(f);
    } finally {
      f.buf = EMPTY;
      if (f.inline) f._inlineArgs.length = 0;
      if (this.off.length > SHRINK_ARGS_ABOVE) this.resizeArgs(INITIAL_ARGS);
    }
  }

  /** How many bytes of chunk[cpos..clen) belong to the spanning frame's next step. */
  private wanted(chunk: Buffer, cpos: number, clen: number): number {
    const avail = clen - cpos;
    // Inside a multibulk with more arguments after the current one, feed the rest of the chunk at
    // once (parse gives back what lies past the frame's end), not one piece per argument: a large
    // MSET spanning many chunks would otherwise cost a copy and a parse call per argument.
    if ((this.state === ST_MB_DATA || this.state === ST_MB_HEADER) && this.itemsLeft > 1) return avail;
    switch (this.state) {
      case ST_MB_DATA: {
        const need = this.dataStart + this.bulkLen + 2 - this.accLen;
        return need < avail ? need : avail;
      }
      case ST_MB_COUNT:
      case ST_MB_HEADER: {
        if (this.crPos >= 0) return 1;
        const i = findLineEnd(chunk, cpos, clen, 13);
        if (i === clen) return avail;
        if (chunk[i] === 0) return i + 1 - cpos;
        return i + 2 <= clen ? i + 2 - cpos : avail;
      }
      case ST_INLINE: {
        const i = findLineEnd(chunk, cpos, clen, 10);
        return i === clen ? avail : i + 1 - cpos;
      }
      default:
        return avail;
    }
  }

  /** Appends chunk[from, from+n) to the accumulator, growing it (never in place after a
   *  frame was reported from it: emit() drops the reference). */
  private append(chunk: Buffer, from: number, n: number): boolean {
    const need = this.accLen + n;
    if (need > this.acc.length) {
      if (need > bufferConstants.MAX_LENGTH) {
        // Not representable in one Buffer; Redis could take it, the proxy cannot.
        this.fail(invalidBulkError());
        return false;
      }
      let cap = Math.max(this.acc.length * 2, need, 1024);
      if (this.state === ST_MB_DATA) {
        // Do not over-allocate past the end of the bulk being read (it may be huge).
        const known = this.dataStart + this.bulkLen + 2;
        if (known >= need && cap > known) cap = known;
      }
      if (cap > bufferConstants.MAX_LENGTH) cap = bufferConstants.MAX_LENGTH;
      const next = Buffer.allocUnsafe(cap);
      if (this.accLen > 0) this.acc.copy(next, 0, 0, this.accLen);
      this.acc = next;
    }
    chunk.copy(this.acc, this.accLen, from, from + n);
    this.accLen = need;
    return true;
  }

  private resizeArgs(n: number): void {
    const off = new Uint32Array(n);
    const len = new Uint32Array(n);
    const hdr = new Uint32Array(n);
    if (n > this.off.length) {
      off.set(this.off);
      len.set(this.len);
      hdr.set(this.hdr);
    }
    this.off = off;
    this.len = len;
    this.hdr = hdr;
    this.frame._off = off;
    this.frame._len = len;
    this.frame._hdr = hdr;
  }

  /**
   * Continues parsing the frame that starts at b[base] with bytes up to lim.
   * Returns the absolute end offset of the completed frame, NEED_MORE, or FAILED.
   * (Also NEED_MORE when the state became ST_DEAD.)
   */
  private parse(b: Buffer, base: number, lim: number): number {
    for (;;) {
      switch (this.state) {
        case ST_MB_COUNT:
        case ST_MB_HEADER: {
          let cr = this.crPos;
          if (cr < 0) {
            const i = findLineEnd(b, base + this.scanPos, lim, 13);
            if (i >= lim) {
              this.scanPos = i - base;
              if (lim - (base + this.lineStart) > this.maxInline) {
                this.fail(this.state === ST_MB_COUNT ? tooBigMbulkError() : tooBigBulkError());
                return FAILED;
              }
              return NEED_MORE;
            }
            if (b[i] === 0) {
              this.deadError = this.state === ST_MB_COUNT ? tooBigMbulkError : tooBigBulkError;
              this.state = ST_DEAD;
              return NEED_MORE;
            }
            cr = i - base;
            this.crPos = cr;
          }
          // Redis needs the byte after '\r' (it does not check that it is '\n').
          if (base + cr + 2 > lim) return NEED_MORE;
          this.crPos = -1;
          const ls = base + this.lineStart;
          if (this.state === ST_MB_COUNT) {
            const ll = string2ll(b, ls + 1, base + cr);
            if (!(ll <= this.mbulkLimit)) {
              if (ll <= this.maxMbulk) {
                this.limitHit = unauthMbulkError();
                return LIMITED;
              }
              // NaN (not ok) or too large.
              this.fail(invalidMbulkError());
              return FAILED;
            }
            const next = cr + 2;
            if (ll <= 0) return base + next;
            this.itemsLeft = ll;
            this.state = ST_MB_HEADER;
            this.lineStart = next;
            this.scanPos = next;
          } else {
            const first = b[ls];
            if (first !== 36) {
              this.fail(expectedDollarError(first));
              return FAILED;
            }
            const ll = string2ll(b, ls + 1, base + cr);
            if (!(ll >= 0 && ll <= this.bulkLimit)) {
              if (ll >= 0 && ll <= this.maxBulk) {
                this.limitHit = unauthBulkError();
                return LIMITED;
              }
              this.fail(invalidBulkError());
              return FAILED;
            }
            this.bulkLen = ll;
            this.dataStart = cr + 2;
            this.state = ST_MB_DATA;
          }
          break;
        }
        case ST_MB_DATA: {
          const ds = this.dataStart;
          const bl = this.bulkLen;
          if (lim - (base + ds) < bl + 2) return NEED_MORE;
          const k = this.argc;
          if (k === this.off.length) this.resizeArgs(k * 2);
          this.off[k] = ds;
          this.len[k] = bl;
          this.hdr[k] = this.lineStart;
          this.argc = k + 1;
          const next = ds + bl + 2;
          if (--this.itemsLeft === 0) return base + next;
          this.state = ST_MB_HEADER;
          this.lineStart = next;
          this.scanPos = next;
          break;
        }
        case ST_INLINE: {
          const i = findLineEnd(b, base + this.scanPos, lim, 10);
          if (i >= lim) {
            this.scanPos = i - base;
            if (lim - base > this.maxInline) {
              this.fail(tooBigInlineError());
              return FAILED;
            }
            return NEED_MORE;
          }
          if (b[i] === 0) {
            this.deadError = tooBigInlineError;
            this.state = ST_DEAD;
            return NEED_MORE;
          }
          let lineEnd = i;
          if (i !== base && b[i - 1] === 13) lineEnd--;
          const args = this.frame._inlineArgs;
          args.length = 0;
          if (!splitArgs(b, base, lineEnd, args)) {
            args.length = 0;
            this.fail(unbalancedError());
            return FAILED;
          }
          this.argc = args.length;
          return i + 1;
        }
        default:
          throw new Error(`request framer: bad state ${this.state}`);
      }
    }
  }
}

let scratch = Buffer.allocUnsafe(256);

/**
 * Redis sdssplitargs() on b[s, e) (a line without NUL bytes; e acts as its terminator).
 * Pushes the arguments to out (views of b when a token has no quotes, decoded copies
 * otherwise). Returns false for "unbalanced quotes".
 */
export function splitArgs(b: Buffer, s: number, e: number, out: Buffer[]): boolean {
  let p = s;
  for (;;) {
    while (p < e && isSpace(b[p])) p++;
    if (p >= e) return true;
    const tokStart = p;
    let quoted = false;
    let inq = false;
    let insq = false;
    let n = 0; // decoded length in scratch
    if (scratch.length < e - p) scratch = Buffer.allocUnsafe(Math.max(scratch.length * 2, e - p));
    const out8 = scratch;
    for (;;) {
      // `c` is *p; p === e plays the NUL terminator.
      const c = p < e ? b[p] : 0;
      if (inq) {
        if (c === 92 && p + 3 < e && b[p + 1] === 120 && hexValue(b[p + 2]) >= 0 && hexValue(b[p + 3]) >= 0) {
          out8[n++] = hexValue(b[p + 2]) * 16 + hexValue(b[p + 3]);
          p += 3;
        } else if (c === 92 && p + 1 < e) {
          p++;
          const d = b[p];
          out8[n++] = d === 110 ? 10 : d === 114 ? 13 : d === 116 ? 9 : d === 98 ? 8 : d === 97 ? 7 : d;
        } else if (c === 34) {
          if (p + 1 < e && !isSpace(b[p + 1])) return false;
          p++;
          break;
        } else if (c === 0) {
          return false;
        } else {
          out8[n++] = c;
        }
      } else if (insq) {
        if (c === 92 && p + 1 < e && b[p + 1] === 39) {
          p++;
          out8[n++] = 39;
        } else if (c === 39) {
          if (p + 1 < e && !isSpace(b[p + 1])) return false;
          p++;
          break;
        } else if (c === 0) {
          return false;
        } else {
          out8[n++] = c;
        }
      } else if (c === 32 || c === 10 || c === 13 || c === 9 || c === 0) {
        if (p < e) p++;
        break;
      } else if (c === 34) {
        inq = true;
        quoted = true;
      } else if (c === 39) {
        insq = true;
        quoted = true;
      } else {
        out8[n++] = c;
      }
      p++;
    }
    if (quoted) out.push(Buffer.from(out8.subarray(0, n)));
    else out.push(b.subarray(tokStart, tokStart + n));
  }
}
