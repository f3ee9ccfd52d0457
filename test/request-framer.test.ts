// Request framer: must split a client's byte stream exactly where Redis 7.0 does.
import { connect } from 'node:net';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  DEFAULT_LIMITS,
  RequestFramer,
  type FramerLimits,
  type ProtocolError,
  type RequestFrame,
} from '../src/resp/request-framer.js';
import { arrayHeader, bulkHeader, bulkString, encodeBulk, encodeCommand, multibulkHeader } from '../src/resp/encode.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';

// ---------------------------------------------------------------------------------------------
// redis-parser (untyped CommonJS) as the reference RESP decoder.

interface RespParser {
  execute(data: Buffer): void;
}
type ParserCtor = new (options: {
  returnBuffers?: boolean;
  returnReply: (reply: unknown) => void;
  returnError: (err: Error) => void;
  returnFatalError?: (err: Error) => void;
}) => RespParser;
const Parser = createRequire(import.meta.url)('redis-parser') as ParserCtor;

function deepCopy(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return Buffer.from(v);
  if (Array.isArray(v)) return v.map(deepCopy);
  return v;
}

/** Decodes one multibulk request with redis-parser (as if it were an array reply). */
function decodeMultibulk(raw: Buffer): Buffer[] {
  const out: unknown[] = [];
  const p = new Parser({
    returnBuffers: true,
    returnReply: (r) => out.push(deepCopy(r)),
    returnError: (e) => {
      throw e;
    },
    returnFatalError: (e) => {
      throw e;
    },
  });
  p.execute(raw);
  expect(out.length).toBe(1);
  return out[0] as Buffer[];
}

// ---------------------------------------------------------------------------------------------
// Running the framer over a chunked input and recording what it reports.

const L = (s: string): Buffer => Buffer.from(s, 'latin1');
const S = (b: Buffer): string => b.toString('latin1');

interface Rec {
  raw: Buffer; // copy
  argv: Buffer[]; // copies
  inline: boolean;
  /** live view of the frame's bytes (to check later that it was not overwritten) */
  live: Buffer;
  hdr: number[]; // argHeaderStart(i) - start
}

interface RunResult {
  frames: Rec[];
  error: ProtocolError | null;
  buffered: number;
}

function chunksOf(input: Buffer, splits: number[]): Buffer[] {
  const points = [...new Set(splits.map((s) => Math.max(0, Math.min(input.length, s))))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    if (p > prev) chunks.push(Buffer.from(input.subarray(prev, p)));
    prev = p;
  }
  if (prev < input.length || chunks.length === 0) chunks.push(Buffer.from(input.subarray(prev)));
  return chunks;
}

function byteChunks(input: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < input.length; i++) chunks.push(Buffer.from(input.subarray(i, i + 1)));
  return chunks;
}

function checkFrameAccessors(f: RequestFrame): void {
  for (let i = 0; i < f.argc; i++) {
    const a = f.arg(i);
    expect(f.argLength(i)).toBe(a.length);
    expect(f.argLatin1(i)).toBe(S(a));
    const lower = S(a).toLowerCase();
    if (/^[\x00-\x7f]*$/.test(lower)) expect(f.argIs(i, lower)).toBe(true);
    expect(f.argIs(i, lower + 'x')).toBe(false);
  }
}

function run(
  chunks: Buffer[],
  limits?: Partial<FramerLimits>,
  framer = new RequestFramer(limits),
  /** global offset of the next frame's start relative to chunks[0] (negative: bytes buffered before) */
  firstOffset = 0,
): RunResult {
  const frames: Rec[] = [];
  let error: ProtocolError | null = null;
  let offset = firstOffset;
  const chunkStart: number[] = [];
  let total = 0;
  for (const c of chunks) {
    chunkStart.push(total);
    total += c.length;
  }
  for (let k = 0; k < chunks.length; k++) {
    const chunk = chunks[k];
    error = framer.push(chunk, (f) => {
      const raw = f.buf.subarray(f.start, f.end);
      const len = f.end - f.start;
      // Zero-copy: a frame that lies inside one chunk is reported in that chunk.
      const inside = chunks.findIndex((c, j) => chunkStart[j] <= offset && offset + len <= chunkStart[j] + c.length);
      if (inside >= 0) {
        expect(f.buf).toBe(chunks[inside]);
        expect(f.start).toBe(offset - chunkStart[inside]);
      } else {
        expect(chunks.includes(f.buf)).toBe(false);
      }
      offset += len;
      const argv: Buffer[] = [];
      for (let i = 0; i < f.argc; i++) argv.push(Buffer.from(f.arg(i)));
      checkFrameAccessors(f);
      const hdr: number[] = [];
      if (!f.inline) {
        for (let i = 0; i < f.argc; i++) {
          hdr.push(f.argHeaderStart(i) - f.start);
          expect(f.buf[f.argHeaderStart(i)]).toBe(0x24); // '$'
        }
      } else {
        expect(f.argHeaderStart(0)).toBe(-1);
      }
      frames.push({ raw: Buffer.from(raw), argv, inline: f.inline, live: raw, hdr });
    });
    if (error) {
      // Dead from now on: same error, nothing more reported.
      const again = framer.push(L('*1\r\n$4\r\nPING\r\n'), () => {
        throw new Error('frame after error');
      });
      expect(again).toBe(error);
      break;
    }
  }
  return { frames, error, buffered: framer.bufferedBytes };
}

type Simple = { frames: Array<[string, string[], boolean]>; error: string | null; buffered: number };
function simplify(r: RunResult): Simple {
  // Spanning frames must not have been overwritten by later parsing.
  for (const f of r.frames) expect(f.live.equals(f.raw)).toBe(true);
  return {
    frames: r.frames.map((f) => [S(f.raw), f.argv.map(S), f.inline]),
    error: r.error ? r.error.message : null,
    buffered: r.error ? -1 : r.buffered,
  };
}

// ---------------------------------------------------------------------------------------------
// Table cases

interface Case {
  name: string;
  input: string; // latin1
  /** [raw, argv] per frame; inline flag is derived from the raw's first byte */
  frames: Array<[string, string[]]>;
  error?: string;
  buffered?: number;
  limits?: Partial<FramerLimits>;
}

const E = {
  mbulk: 'Protocol error: invalid multibulk length',
  bulk: 'Protocol error: invalid bulk length',
  quotes: 'Protocol error: unbalanced quotes in request',
  bigInline: 'Protocol error: too big inline request',
  bigMbulk: 'Protocol error: too big mbulk count string',
  bigBulk: 'Protocol error: too big bulk count string',
  dollar: (c: string) => `Protocol error: expected '$', got '${c}'`,
};

const PING = '*1\r\n$4\r\nPING\r\n';

const cases: Case[] = [
  // valid multibulk
  { name: 'multibulk PING', input: PING, frames: [[PING, ['PING']]] },
  {
    name: 'binary value with CRLF and NUL',
    input: '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\na\r\nb\x00\xff\r\n',
    frames: [['*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\na\r\nb\x00\xff\r\n', ['SET', 'k', 'a\r\nb\x00\xff']]],
  },
  { name: 'pipeline', input: PING + PING, frames: [[PING, ['PING']], [PING, ['PING']]] },
  {
    name: 'zero-length argument',
    input: '*2\r\n$4\r\nECHO\r\n$0\r\n\r\n',
    frames: [['*2\r\n$4\r\nECHO\r\n$0\r\n\r\n', ['ECHO', '']]],
  },
  {
    name: 'values that look like protocol',
    input: '*2\r\n$4\r\nECHO\r\n$8\r\n*1\r\n$3\r\n\r\n',
    frames: [['*2\r\n$4\r\nECHO\r\n$8\r\n*1\r\n$3\r\n\r\n', ['ECHO', '*1\r\n$3\r\n']]],
  },
  // empty requests and counts
  { name: '*0', input: '*0\r\n' + PING, frames: [['*0\r\n', []], [PING, ['PING']]] },
  { name: '*-1', input: '*-1\r\n', frames: [['*-1\r\n', []]] },
  { name: '*-5', input: '*-5\r\n', frames: [['*-5\r\n', []]] },
  { name: 'LLONG_MIN count', input: '*-9223372036854775808\r\n', frames: [['*-9223372036854775808\r\n', []]] },
  { name: 'below LLONG_MIN', input: '*-9223372036854775809\r\n', frames: [], error: E.mbulk },
  { name: '*-0', input: '*-0\r\n', frames: [], error: E.mbulk },
  { name: '*00 (leading zero)', input: '*00\r\n', frames: [], error: E.mbulk },
  { name: '*01 (leading zero)', input: '*01\r\n', frames: [], error: E.mbulk },
  { name: '*+1 (plus sign)', input: '*+1\r\n', frames: [], error: E.mbulk },
  { name: '* 1 (space)', input: '* 1\r\n', frames: [], error: E.mbulk },
  { name: '*1 (trailing space)', input: '*1 \r\n', frames: [], error: E.mbulk },
  { name: '* (empty count)', input: '*\r\n', frames: [], error: E.mbulk },
  { name: '*- (sign only)', input: '*-\r\n', frames: [], error: E.mbulk },
  { name: '*1a', input: '*1a\r\n', frames: [], error: E.mbulk },
  { name: 'count above INT_MAX', input: '*2147483648\r\n', frames: [], error: E.mbulk },
  { name: 'count of 20 digits', input: '*99999999999999999999\r\n', frames: [], error: E.mbulk },
  { name: 'count of 21 chars', input: '*-000000000000000000001\r\n', frames: [], error: E.mbulk },
  { name: 'count INT_MAX waits for items', input: '*2147483647\r\n', frames: [], buffered: 13 },
  { name: 'count 2000000 (above the 6.2 limit) waits', input: '*2000000\r\n', frames: [], buffered: 10 },
  // bulk lengths
  { name: '$-1', input: '*1\r\n$-1\r\n', frames: [], error: E.bulk },
  { name: '$01', input: '*1\r\n$01\r\nx\r\n', frames: [], error: E.bulk },
  { name: '$+1', input: '*1\r\n$+1\r\nx\r\n', frames: [], error: E.bulk },
  { name: '$-0', input: '*1\r\n$-0\r\n', frames: [], error: E.bulk },
  { name: '$ (empty)', input: '*1\r\n$\r\n', frames: [], error: E.bulk },
  { name: '$ 1', input: '*1\r\n$ 1\r\nx\r\n', frames: [], error: E.bulk },
  { name: 'bulk above 512 MiB', input: '*1\r\n$536870913\r\n', frames: [], error: E.bulk },
  { name: 'bulk of LLONG_MAX', input: '*1\r\n$9223372036854775807\r\n', frames: [], error: E.bulk },
  { name: 'bulk above LLONG_MAX', input: '*1\r\n$9223372036854775808\r\n', frames: [], error: E.bulk },
  { name: 'bulk of 512 MiB waits', input: '*1\r\n$536870912\r\n', frames: [], buffered: 16 },
  // expected '$'
  { name: "expected '$', got 'f'", input: '*1\r\nfoo\r\n', frames: [], error: E.dollar('f') },
  { name: "expected '$', got CR", input: '*1\r\n\r\n', frames: [], error: E.dollar(' ') },
  { name: "expected '$', got LF", input: '*1\r\n\n\r\n', frames: [], error: E.dollar(' ') },
  { name: "expected '$', got 0xff", input: '*1\r\n\xff\r\n', frames: [], error: E.dollar('\xff') },
  {
    name: "expected '$' after a frame",
    input: '*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n*2\r\n$4\r\nECHO\r\n*1\r\n',
    frames: [['*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n', ['ECHO', 'x']]],
    error: E.dollar('*'),
  },
  { name: 'header line waits for its CR', input: '*1\r\nfoo', frames: [], buffered: 7 },
  // CR without LF: Redis skips the byte after '\r' and the 2 bytes after data unchecked
  { name: 'CR without LF after count', input: '*1\rX$4\r\nPING\r\n', frames: [['*1\rX$4\r\nPING\r\n', ['PING']]] },
  { name: 'CR CR after count', input: '*1\r\r$4\r\nPING\r\n', frames: [['*1\r\r$4\r\nPING\r\n', ['PING']]] },
  {
    name: 'CR without LF after header, junk after data',
    input: '*2\r\n$4\rYECHO\r\n$2\r\nhiZZ' + PING,
    frames: [
      ['*2\r\n$4\rYECHO\r\n$2\r\nhiZZ', ['ECHO', 'hi']],
      [PING, ['PING']],
    ],
  },
  {
    name: 'LF without CR in count line is part of the number',
    input: '*1\n$4\r\nPING\r\n',
    frames: [],
    error: E.mbulk,
  },
  { name: 'count line waits for the byte after CR', input: '*1\r', frames: [], buffered: 3 },
  { name: 'header line waits for the byte after CR', input: '*1\r\n$4\r', frames: [], buffered: 7 },
  { name: 'data waits for its 2 trailing bytes', input: '*1\r\n$4\r\nPING\r', frames: [], buffered: 13 },
  // NUL before the line end: strchr() does not find it, Redis waits (until "too big")
  { name: 'NUL in count line', input: '*1\x00\r\n$4\r\nPING\r\n', frames: [], buffered: 15 },
  { name: 'NUL in bulk header', input: '*1\r\n$4\x00\r\nPING\r\n', frames: [], buffered: 15 },
  { name: 'NUL in inline line', input: 'PI\x00NG\r\n' + PING, frames: [], buffered: 21 },
  { name: 'NUL at a request boundary', input: PING + '\x00' + PING, frames: [[PING, ['PING']]], buffered: 15 },
  { name: 'NUL in data is fine', input: '*1\r\n$1\r\n\x00\r\n', frames: [['*1\r\n$1\r\n\x00\r\n', ['\x00']]] },
  // inline
  { name: 'inline CRLF', input: 'PING\r\n', frames: [['PING\r\n', ['PING']]] },
  { name: 'inline LF', input: 'PING\n', frames: [['PING\n', ['PING']]] },
  { name: 'inline waits for LF', input: 'PING\r', frames: [], buffered: 5 },
  {
    name: 'inline double quotes and blanks',
    input: '  ECHO  "a b"\t \r\n',
    frames: [['  ECHO  "a b"\t \r\n', ['ECHO', 'a b']]],
  },
  {
    name: 'inline escapes',
    input: 'ECHO "\\x41\\x4g\\n\\r\\t\\b\\a\\"\\\\q\\z\\xfF"\n',
    frames: [['ECHO "\\x41\\x4g\\n\\r\\t\\b\\a\\"\\\\q\\z\\xfF"\n', ['ECHO', 'Ax4g\n\r\t\b\x07"\\qz\xff']]],
  },
  { name: 'inline single quotes', input: "ECHO 'it\\'s' 'a\\b'\n", frames: [["ECHO 'it\\'s' 'a\\b'\n", ['ECHO', "it's", 'a\\b']]] },
  { name: 'inline empty quotes', input: 'ECHO "" \'\'\n', frames: [['ECHO "" \'\'\n', ['ECHO', '', '']]] },
  { name: 'quote inside a token', input: 'ECHO a"b c" d\n', frames: [['ECHO a"b c" d\n', ['ECHO', 'ab c', 'd']]] },
  { name: 'closing quote then tab', input: 'ECHO "a"\tb\n', frames: [['ECHO "a"\tb\n', ['ECHO', 'a', 'b']]] },
  { name: 'closing quote then VT', input: 'ECHO "a"\x0bb\n', frames: [['ECHO "a"\x0bb\n', ['ECHO', 'a', 'b']]] },
  { name: 'VT inside a token', input: 'ECHO a\x0bb\n', frames: [['ECHO a\x0bb\n', ['ECHO', 'a\x0bb']]] },
  { name: 'leading VT and FF are blanks', input: '\x0b\x0cPING\n', frames: [['\x0b\x0cPING\n', ['PING']]] },
  { name: 'CR inside quotes', input: 'ECHO "a\r"\r\n', frames: [['ECHO "a\r"\r\n', ['ECHO', 'a\r']]] },
  { name: 'CR separates tokens', input: 'ECHO a\rb\r\n', frames: [['ECHO a\rb\r\n', ['ECHO', 'a', 'b']]] },
  { name: 'CR CR LF', input: 'PING\r\r\n', frames: [['PING\r\r\n', ['PING']]] },
  { name: 'high bytes', input: 'ECHO \xff\xfe\n', frames: [['ECHO \xff\xfe\n', ['ECHO', '\xff\xfe']]] },
  { name: 'inline starting with $', input: '$4\r\n', frames: [['$4\r\n', ['$4']]] },
  { name: 'blank CRLF', input: '\r\n', frames: [['\r\n', []]] },
  { name: 'blank LF', input: '\n', frames: [['\n', []]] },
  { name: 'blanks only', input: ' \t \r\n', frames: [[' \t \r\n', []]] },
  { name: 'CR CR LF only', input: '\r\r\n', frames: [['\r\r\n', []]] },
  { name: 'closing quote followed by a letter', input: 'ECHO "a"b\n', frames: [], error: E.quotes },
  { name: 'closing single quote followed by a letter', input: "ECHO 'a'b\n", frames: [], error: E.quotes },
  { name: 'unterminated double quote', input: 'ECHO "abc\n', frames: [], error: E.quotes },
  { name: 'unterminated single quote', input: "ECHO 'abc\r\n", frames: [], error: E.quotes },
  { name: 'escaped closing quote', input: 'ECHO "abc\\"\n', frames: [], error: E.quotes },
  { name: 'backslash at the end', input: 'ECHO "a\\\n', frames: [], error: E.quotes },
  { name: 'escaped single quote at the end', input: "ECHO 'a\\'\n", frames: [], error: E.quotes },
  { name: 'lone quote', input: '"\n', frames: [], error: E.quotes },
  {
    name: 'unbalanced after a frame',
    input: 'PING\r\nECHO "\r\nPING\r\n',
    frames: [['PING\r\n', ['PING']]],
    error: E.quotes,
  },
  // mixed
  {
    name: 'mixed pipeline',
    input: 'PING\r\n' + PING + '\nECHO x\n*0\r\n',
    frames: [
      ['PING\r\n', ['PING']],
      [PING, ['PING']],
      ['\n', []],
      ['ECHO x\n', ['ECHO', 'x']],
      ['*0\r\n', []],
    ],
  },
  {
    name: 'incomplete tail',
    input: '*2\r\n$4\r\nECHO\r\n$3\r\nfoo\r\n*1\r\n$4\r\nPI',
    frames: [['*2\r\n$4\r\nECHO\r\n$3\r\nfoo\r\n', ['ECHO', 'foo']]],
    buffered: 10,
  },
  // limits
  {
    name: 'maxBulkLength',
    limits: { maxBulkLength: 3 },
    input: '*1\r\n$3\r\nfoo\r\n*1\r\n$4\r\nfooo\r\n',
    frames: [['*1\r\n$3\r\nfoo\r\n', ['foo']]],
    error: E.bulk,
  },
  {
    name: 'maxMultibulkLength',
    limits: { maxMultibulkLength: 2 },
    input: '*2\r\n$1\r\na\r\n$1\r\nb\r\n*3\r\n',
    frames: [['*2\r\n$1\r\na\r\n$1\r\nb\r\n', ['a', 'b']]],
    error: E.mbulk,
  },
  { name: 'maxInlineLength: at the limit', limits: { maxInlineLength: 8 }, input: 'PINGPING', frames: [], buffered: 8 },
  { name: 'maxInlineLength: inline', limits: { maxInlineLength: 8 }, input: 'PINGPINGP', frames: [], error: E.bigInline },
  {
    name: 'maxInlineLength: after a frame',
    limits: { maxInlineLength: 8 },
    input: 'PING\r\nPINGPINGPING',
    frames: [['PING\r\n', ['PING']]],
    error: E.bigInline,
  },
  { name: 'maxInlineLength: mbulk count', limits: { maxInlineLength: 8 }, input: '*12345678', frames: [], error: E.bigMbulk },
  { name: 'maxInlineLength: mbulk count at limit', limits: { maxInlineLength: 8 }, input: '*1234567', frames: [], buffered: 8 },
  {
    name: 'maxInlineLength: CR found as last byte is not too big',
    limits: { maxInlineLength: 8 },
    input: '*1234567\r',
    frames: [],
    buffered: 9,
  },
  { name: 'maxInlineLength: bulk count', limits: { maxInlineLength: 8 }, input: '*1\r\n$12345678', frames: [], error: E.bigBulk },
  { name: 'maxInlineLength: bulk count at limit', limits: { maxInlineLength: 8 }, input: '*1\r\n$1234567', frames: [], buffered: 12 },
  { name: 'maxInlineLength: NUL in count', limits: { maxInlineLength: 8 }, input: '*1\x00\r\n$4\r\nPING', frames: [], error: E.bigMbulk },
  { name: 'maxInlineLength: NUL in bulk header, at limit', limits: { maxInlineLength: 8 }, input: '*1\r\n$4\x00abcde', frames: [], buffered: 12 },
  { name: 'maxInlineLength: NUL in bulk header', limits: { maxInlineLength: 8 }, input: '*1\r\n$4\x00abcdefg', frames: [], error: E.bigBulk },
  { name: 'maxInlineLength: NUL in inline', limits: { maxInlineLength: 8 }, input: 'PI\x00NG\r\nPING', frames: [], error: E.bigInline },
];

describe('table cases, fed whole, byte by byte and split at every point', () => {
  for (const c of cases) {
    it(c.name, () => {
      const input = L(c.input);
      const whole = simplify(run([input], c.limits));
      const expected: Simple = {
        frames: c.frames.map(([raw, argv]) => [raw, argv, raw[0] !== '*']),
        error: c.error ?? null,
        buffered: c.error ? -1 : (c.buffered ?? 0),
      };
      expect(whole).toEqual(expected);
      expect(simplify(run(byteChunks(input), c.limits))).toEqual(expected);
      for (let i = 0; i <= input.length; i++) {
        expect(simplify(run(chunksOf(input, [i]), c.limits))).toEqual(expected);
      }
      for (let i = 1; i < input.length; i++) {
        const j = (i * 7919) % input.length;
        expect(simplify(run(chunksOf(input, [i, j]), c.limits))).toEqual(expected);
      }
      // Canonical multibulk frames decode as redis-parser decodes them.
      for (const [raw, argv, inline] of whole.frames) {
        if (!inline && argv.length > 0 && S(encodeCommand(argv.map(L))) === raw) {
          expect(decodeMultibulk(L(raw)).map(S)).toEqual(argv);
        }
      }
    });
  }
});

describe('default limits and big inputs', () => {
  it('has the Redis 7.0 defaults', () => {
    expect(DEFAULT_LIMITS).toEqual({ maxBulkLength: 536870912, maxMultibulkLength: 2147483647, maxInlineLength: 65536 });
  });

  const tooBig: Array<[string, Buffer, string]> = [
    ['inline', Buffer.alloc(65537, 'a'), E.bigInline],
    ['mbulk count', Buffer.concat([L('*'), Buffer.alloc(65536, '1')]), E.bigMbulk],
    ['bulk count', Buffer.concat([L('*1\r\n$'), Buffer.alloc(65536, '1')]), E.bigBulk],
    ['NUL in count', Buffer.concat([L('*1\x00'), Buffer.alloc(65534, '\r')]), E.bigMbulk],
    ['NUL in header', Buffer.concat([L('*1\r\n$1\x00'), Buffer.alloc(65534, '\n')]), E.bigBulk],
    ['NUL in inline', Buffer.concat([L('\x00'), Buffer.alloc(65536, '\n')]), E.bigInline],
  ];
  for (const [name, input, message] of tooBig) {
    it(`too big ${name}: errors only past 64 KiB, in any chunking`, () => {
      const short = input.subarray(0, input.length - 1);
      for (const chunks of [[short], byteChunks(short), chunksOf(short, [1, 3, 5, 4000, 65000])]) {
        const r = run(chunks);
        expect(r.error).toBeNull();
        expect(r.buffered).toBe(short.length);
      }
      for (const chunks of [[input], byteChunks(input), chunksOf(input, [1, 3, 5, 4000, 65000])]) {
        expect(run(chunks).error?.message).toBe(message);
      }
    });
  }

  it('a line end arriving after 64 KiB in the same read is accepted (as Redis does)', () => {
    const line = Buffer.concat([L('ECHO '), Buffer.alloc(70000, 'x'), L('\r\n')]);
    const whole = run([line]);
    expect(whole.error).toBeNull();
    expect(whole.frames[0].argv[1].length).toBe(70000);
    expect(run(chunksOf(line, [40000])).error).toBeNull();
    expect(run(chunksOf(line, [66000])).error?.message).toBe(E.bigInline);
  });

  it('frames a 20 MB value in 64 KiB chunks in linear time without over-allocating', () => {
    const value = Buffer.alloc(20 * 1024 * 1024, 'v');
    const input = Buffer.concat([encodeCommand(['SET', 'k', value]), L(PING)]);
    const framer = new RequestFramer();
    const seen: Array<{ argc: number; len: number; bufLen: number; frameLen: number }> = [];
    const t0 = performance.now();
    for (let p = 0; p < input.length; p += 65536) {
      const err = framer.push(input.subarray(p, p + 65536), (f) => {
        seen.push({ argc: f.argc, len: f.argLength(f.argc - 1), bufLen: f.buf.length, frameLen: f.end - f.start });
        if (f.argc === 3) expect(f.arg(2).equals(value)).toBe(true);
      });
      expect(err).toBeNull();
    }
    const ms = performance.now() - t0;
    expect(seen.length).toBe(2);
    expect(seen[0].argc).toBe(3);
    expect(seen[0].len).toBe(value.length);
    expect(seen[0].bufLen).toBeLessThanOrEqual(seen[0].frameLen * 2);
    expect(framer.bufferedBytes).toBe(0);
    expect(ms).toBeLessThan(2000);
  });

  it('handles a request with many arguments', () => {
    const args = Array.from({ length: 10000 }, (_, i) => `a${i}`);
    const input = encodeCommand(['DEL', ...args]);
    for (const chunks of [[input], chunksOf(input, [7, 33333, 50000])]) {
      const r = run(chunks);
      expect(r.frames.length).toBe(1);
      expect(r.frames[0].argv.length).toBe(10001);
      expect(S(r.frames[0].argv[10000])).toBe('a9999');
      // The raw bytes of arguments i.. are reusable as they are.
      const raw = r.frames[0].raw;
      const tail = encodeCommand(args.slice(9000));
      expect(S(raw.subarray(r.frames[0].hdr[9001]))).toBe(S(tail.subarray(tail.indexOf('\r\n') + 2)));
    }
    // The framer is still fine afterwards (argument arrays shrink back).
    const framer = new RequestFramer();
    framer.push(input, () => undefined);
    expect(simplify(run([L(PING)], undefined, framer)).frames).toEqual([[PING, ['PING'], false]]);
  });
});

describe('accumulator memory', () => {
  it('never overwrites the bytes of a frame reported from the accumulator', () => {
    const framer = new RequestFramer();
    const kept: Array<{ live: Buffer; copy: Buffer; args: Array<{ live: Buffer; copy: Buffer }> }> = [];
    const onFrame = (f: RequestFrame): void => {
      const live = f.buf.subarray(f.start, f.end);
      const args = [];
      for (let i = 0; i < f.argc; i++) args.push({ live: f.arg(i), copy: Buffer.from(f.arg(i)) });
      kept.push({ live, copy: Buffer.from(live), args });
    };
    const stream = L(
      '*2\r\n$4\r\nECHO\r\n$10\r\n0123456789\r\n' +
        'PING\r\n' +
        '*2\r\n$4\r\nECHO\r\n$5\r\nabcde\r\n' +
        'ECHO "x y"\r\n' +
        '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nval\r\n'.repeat(20),
    );
    // Chunks that cut every frame in the middle.
    for (let p = 0; p < stream.length; p += 7) expect(framer.push(Buffer.from(stream.subarray(p, p + 7)), onFrame)).toBeNull();
    expect(kept.length).toBe(24);
    for (const k of kept) {
      expect(k.live.equals(k.copy)).toBe(true);
      for (const a of k.args) expect(a.live.equals(a.copy)).toBe(true);
    }
    expect(Buffer.concat(kept.map((k) => k.copy)).equals(stream)).toBe(true);
  });

  it('copies only the spanning frame into the accumulator, not the rest of the chunk', () => {
    const many = L(PING.repeat(50000)); // 700 kB of in-place frames after the spanning one
    for (const [head, tail] of [
      ['*1\r\n$4\r\nPI', 'NG\r\n'], // data
      ['*1\r\n$4', '\r\nPING\r\n'], // header line
      ['*', '1\r\n$4\r\nPING\r\n'], // count line
      ['*1\r', '\n$4\r\nPING\r\n'], // the byte after CR
      ['PI', 'NG\r\n'], // inline
    ]) {
      const framer = new RequestFramer();
      framer.push(L(head), () => undefined);
      const second = Buffer.concat([L(tail), many]);
      const bufs: Buffer[] = [];
      expect(framer.push(second, (f) => void bufs.push(f.buf))).toBeNull();
      expect(bufs.length).toBe(50001);
      expect(bufs[0]).not.toBe(second);
      expect(bufs[0].length).toBeLessThanOrEqual(1024);
      expect(bufs.slice(1).every((b) => b === second)).toBe(true);
    }
  });

  it('bufferedBytes reports the incomplete frame', () => {
    const framer = new RequestFramer();
    expect(framer.bufferedBytes).toBe(0);
    framer.push(L('*1\r\n$4\r\nPI'), () => undefined);
    expect(framer.bufferedBytes).toBe(10);
    framer.push(L('NG\r\nPIN'), () => undefined);
    expect(framer.bufferedBytes).toBe(3);
    framer.push(L('G\r\n'), () => undefined);
    expect(framer.bufferedBytes).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests: random valid streams, random chunking.

interface GenRequest {
  raw: Buffer;
  argv: Buffer[];
  inline: boolean;
  /** well-formed multibulk (real CRLFs): redis-parser can decode it */
  strict: boolean;
}

function hex2(b: number, upper: boolean): string {
  const h = b.toString(16).padStart(2, '0');
  return upper ? h.toUpperCase() : h;
}

const arbBinary = fc.oneof(
  { weight: 5, arbitrary: fc.uint8Array({ maxLength: 24 }) },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.constantFrom('\r\n', '\r', '\n', '*1\r\n', '$3\r\n', '\x00', 'x', '"', ' '), { maxLength: 6 })
      .map((p) => new Uint8Array(L(p.join('')))),
  },
).map((u) => Buffer.from(u));

const arbMultibulk: fc.Arbitrary<GenRequest> = fc
  .array(arbBinary, { minLength: 1, maxLength: 6 })
  .map((args) => ({ raw: encodeCommand(args), argv: args, inline: false, strict: true }));

/** Same, with the bytes Redis skips unchecked (after each '\r', after data) randomized. */
const arbSloppyMultibulk: fc.Arbitrary<GenRequest> = fc
  .record({
    args: fc.array(arbBinary, { minLength: 1, maxLength: 4 }),
    junk: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 16, maxLength: 16 }),
  })
  .map(({ args, junk }) => {
    let j = 0;
    const parts: Buffer[] = [L(`*${args.length}\r`), Buffer.from([junk[j++]])];
    for (const a of args) {
      parts.push(L(`$${a.length}\r`), Buffer.from([junk[j++ % 16]]), a, Buffer.from([junk[j++ % 16], junk[j++ % 16]]));
    }
    return { raw: Buffer.concat(parts), argv: args, inline: false, strict: false };
  });

const arbBig: fc.Arbitrary<GenRequest> = fc
  .record({ size: fc.integer({ min: 1000, max: 150000 }), byte: fc.integer({ min: 0, max: 255 }) })
  .map(({ size, byte }) => {
    const args = [L('SET'), L('big'), Buffer.alloc(size, byte)];
    return { raw: encodeCommand(args), argv: args, inline: false, strict: true };
  });

/** An inline token: [encoded, decoded]. */
const BAD_RAW = new Set([0, 9, 10, 11, 12, 13, 32, 34, 39]);
const arbToken: fc.Arbitrary<[string, Buffer]> = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 10 }).map((u): [string, Buffer] => {
    const b = Buffer.from(u.map((c) => (BAD_RAW.has(c) ? 97 : c)));
    return [S(b), b];
  }),
  fc
    .record({ bytes: fc.uint8Array({ maxLength: 10 }), style: fc.array(fc.nat(3), { minLength: 10, maxLength: 10 }) })
    .map(({ bytes, style }): [string, Buffer] => {
      const named: Record<number, string> = { 10: '\\n', 13: '\\r', 9: '\\t', 8: '\\b', 7: '\\a' };
      let enc = '"';
      bytes.forEach((c, i) => {
        const st = style[i];
        const ch = String.fromCharCode(c);
        if (c === 34) enc += '\\"';
        else if (c === 92) enc += '\\\\';
        else if (c === 0 || st === 1) enc += `\\x${hex2(c, c % 2 === 1)}`;
        else if (named[c] !== undefined) enc += named[c];
        else if (st === 2 && /[a-zA-Z]/.test(ch) && !'nrtbax'.includes(ch)) enc += '\\' + ch;
        else enc += ch;
      });
      return [enc + '"', Buffer.from(bytes)];
    }),
  fc.uint8Array({ maxLength: 10 }).map((u): [string, Buffer] => {
    const b = Buffer.from(u.map((c) => (c === 0 || c === 10 || c === 92 ? 98 : c)));
    return [`'${S(b).replace(/'/g, "\\'")}'`, b];
  }),
);

const arbInline: fc.Arbitrary<GenRequest> = fc
  .record({
    tokens: fc.array(arbToken, { minLength: 1, maxLength: 5 }),
    seps: fc.array(fc.constantFrom(' ', '  ', '\t', ' \t', '\r '), { minLength: 6, maxLength: 6 }),
    lead: fc.constantFrom('', ' ', '\t'),
    eol: fc.constantFrom('\r\n', '\n'),
  })
  .map(({ tokens, seps, lead, eol }) => {
    tokens = [...tokens];
    if (lead === '' && tokens[0][0].startsWith('*')) tokens[0] = ['a' + tokens[0][0], Buffer.concat([L('a'), tokens[0][1]])];
    const line = lead + tokens.map((t, i) => (i ? seps[i] : '') + t[0]).join('') + (seps[5] === '\r ' ? '' : seps[5]) + eol;
    return { raw: L(line), argv: tokens.map((t) => t[1]), inline: true, strict: false };
  });

const arbEmpty: fc.Arbitrary<GenRequest> = fc
  .constantFrom('*0\r\n', '*-1\r\n', '\r\n', '\n', ' \t\r\n', '*-9223372036854775808\r\n')
  .map((s) => ({ raw: L(s), argv: [], inline: !s.startsWith('*'), strict: s.startsWith('*') }));

const arbRequest = fc.oneof(
  { weight: 6, arbitrary: arbMultibulk },
  { weight: 2, arbitrary: arbSloppyMultibulk },
  { weight: 4, arbitrary: arbInline },
  { weight: 1, arbitrary: arbEmpty },
  { weight: 1, arbitrary: arbBig },
);

describe('property: random valid streams in random chunks', () => {
  it('frames every request exactly, whatever the chunking', () => {
    fc.assert(
      fc.property(
        fc.array(arbRequest, { minLength: 1, maxLength: 25 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        fc.boolean(),
        (reqs, splits, bytewise) => {
          const input = Buffer.concat(reqs.map((r) => r.raw));
          const chunks = bytewise && input.length < 5000 ? byteChunks(input) : chunksOf(input, splits.map((s) => s % (input.length + 1)));
          const r = run(chunks);
          expect(r.error).toBeNull();
          expect(r.buffered).toBe(0);
          expect(r.frames.length).toBe(reqs.length);
          expect(Buffer.concat(r.frames.map((f) => f.raw)).equals(input)).toBe(true);
          r.frames.forEach((f, i) => {
            expect(f.live.equals(f.raw)).toBe(true);
            expect(f.inline).toBe(reqs[i].inline);
            expect(f.raw.equals(reqs[i].raw)).toBe(true);
            expect(f.argv.map(S)).toEqual(reqs[i].argv.map(S));
            if (reqs[i].strict && f.argv.length > 0) expect(decodeMultibulk(f.raw).map(S)).toEqual(f.argv.map(S));
          });
        },
      ),
      { numRuns: 300, seed: 20240607 },
    );
  });

  it('reports a truncated stream as incomplete, and completes it later', () => {
    fc.assert(
      fc.property(fc.array(arbRequest, { minLength: 1, maxLength: 6 }), fc.nat(), (reqs, cut) => {
        const input = Buffer.concat(reqs.map((r) => r.raw));
        const at = cut % input.length;
        const framer = new RequestFramer();
        const first = run([Buffer.from(input.subarray(0, at))], undefined, framer);
        const doneBytes = first.frames.reduce((n, f) => n + f.raw.length, 0);
        expect(first.buffered).toBe(at - doneBytes);
        const rest = run([Buffer.from(input.subarray(at))], undefined, framer, 0 - first.buffered); // (not -x: -0 !== 0)
        expect(first.frames.length + rest.frames.length).toBe(reqs.length);
        expect(rest.buffered).toBe(0);
      }),
      { numRuns: 200, seed: 42 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Against a real Redis 7.0

function exchange(port: number, data: Buffer, until: (received: Buffer) => boolean): Promise<{ data: Buffer; closed: boolean; error?: string }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    let error: string | undefined;
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ data: Buffer.concat(parts), closed, error });
    };
    const timer = setTimeout(() => finish(false), 5000);
    socket.on('connect', () => socket.write(data));
    socket.on('data', (d) => {
      parts.push(d);
      if (until(Buffer.concat(parts))) finish(false);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code;
    });
    socket.on('close', () => finish(true));
  });
}

describe('against a real Redis 7.0', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.destroy();
  });

  const badInputs: Array<[string, string | Buffer]> = [
    ['invalid multibulk length', '*x\r\n'],
    ['invalid bulk length', '*1\r\n$-2\r\n'],
    ["expected '$' (letter)", '*1\r\nfoo\r\n'],
    ["expected '$' (CR)", '*1\r\n\r\n'],
    ["expected '$' (LF)", '*1\r\n\n\r\n'],
    ["expected '$' (0xff)", '*1\r\n\xff\r\n'],
    ['unbalanced quotes', 'ECHO "a\r\n'],
    ['too big inline request', Buffer.alloc(70000, 'b')],
    ['too big mbulk count string', Buffer.concat([L('*'), Buffer.alloc(70000, '2')])],
    ['too big bulk count string', Buffer.concat([L('*1\r\n$'), Buffer.alloc(70000, '3')])],
  ];

  for (const [name, bad] of badInputs) {
    it(`upstream trigger makes Redis send the same error: ${name}`, async () => {
      const input = typeof bad === 'string' ? L(bad) : bad;
      const r = run([L('PING\r\n'), input]);
      expect(r.frames.length).toBe(1);
      const err = r.error!;
      expect(err).not.toBeNull();
      // The trigger also means the same thing to the framer itself.
      expect(run([err.upstreamTrigger]).error?.message).toBe(err.message);
      const expected = `+PONG\r\n-ERR ${err.message}\r\n`;
      const got = await exchange(redis.port, Buffer.concat([L('PING\r\n'), err.upstreamTrigger]), () => false);
      expect(S(got.data)).toBe(expected);
      expect(got.closed).toBe(true);
      expect(got.error).toBeUndefined();
      // And the original bad input gets the same reply from Redis.
      if (input.length > 1000) return;
      const direct = await exchange(redis.port, Buffer.concat([L('PING\r\n'), input]), () => false);
      expect(S(direct.data)).toBe(expected);
    });
  }

  it('Redis frames random streams (valid and odd) exactly as the framer does', async () => {
    const cmd = fc.constantFrom('ECHO', 'echo', 'Ping', 'PING', 'ECHO');
    const arbEchoMb: fc.Arbitrary<GenRequest> = fc
      .record({ c: cmd, args: fc.array(arbBinary, { maxLength: 2 }), sloppy: fc.boolean(), junk: fc.uint8Array({ minLength: 8, maxLength: 8 }) })
      .map(({ c, args, sloppy, junk }) => {
        const all = [L(c), ...args];
        if (!sloppy) return { raw: encodeCommand(all), argv: all, inline: false, strict: true };
        let j = 0;
        const parts: Buffer[] = [L(`*${all.length}\r`), Buffer.from([junk[j++]])];
        for (const a of all) parts.push(L(`$${a.length}\r`), Buffer.from([junk[j++ % 8]]), a, Buffer.from([junk[j++ % 8], junk[j++ % 8]]));
        return { raw: Buffer.concat(parts), argv: all, inline: false, strict: false };
      });
    const arbEchoInline: fc.Arbitrary<GenRequest> = fc
      .record({ c: cmd, quoteCmd: fc.boolean(), rest: fc.array(arbToken, { maxLength: 2 }), sep: fc.constantFrom(' ', '\t', '  '), eol: fc.constantFrom('\r\n', '\n') })
      .map(({ c, quoteCmd, rest, sep, eol }) => {
        const line = (quoteCmd ? `"${c}"` : c) + rest.map((t) => sep + t[0]).join('') + eol;
        return { raw: L(line), argv: [L(c), ...rest.map((t) => t[1])], inline: true, strict: false };
      });
    const arbStreamReq = fc.oneof(
      { weight: 4, arbitrary: arbEchoMb },
      { weight: 4, arbitrary: arbEchoInline },
      { weight: 1, arbitrary: arbEmpty },
    );
    const streams = fc.sample(fc.array(arbStreamReq, { minLength: 50, maxLength: 150 }), { numRuns: 6, seed: 7 });
    for (const reqs of streams) {
      const END = encodeCommand(['ECHO', '__end-of-stream__']);
      const input = Buffer.concat([...reqs.map((r) => r.raw), END]);
      // Our framing, in odd chunks.
      const r = run(chunksOf(input, [3, 100, 101, 777, 2000]));
      expect(r.error).toBeNull();
      const expected: Array<{ err: true } | { value: string }> = [];
      expect(S(r.frames[r.frames.length - 1].raw)).toBe(S(END));
      for (const f of r.frames.slice(0, -1)) {
        const a = f.argv.map(S);
        if (a.length === 0) continue;
        const c = a[0].toLowerCase();
        if (c === 'echo' && a.length === 2) expected.push({ value: a[1] });
        else if (c === 'ping' && a.length === 1) expected.push({ value: 'PONG' });
        else if (c === 'ping' && a.length === 2) expected.push({ value: a[1] });
        else expected.push({ err: true });
      }
      // Redis's framing: one reply per non-empty request, in order.
      const replies: Array<{ err: true } | { value: string }> = [];
      let sawEnd = false;
      const parser = new Parser({
        returnBuffers: true,
        returnReply: (v) => {
          const s = S(v as Buffer);
          if (s === '__end-of-stream__') sawEnd = true;
          else replies.push({ value: s });
        },
        returnError: () => replies.push({ err: true }),
      });
      let fed = 0;
      const got = await exchange(redis.port, input, (d) => {
        parser.execute(d.subarray(fed));
        fed = d.length;
        return sawEnd;
      });
      expect(got.closed).toBe(false);
      expect(sawEnd).toBe(true);
      expect(replies.length).toBe(expected.length);
      expect(replies).toEqual(expected);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('encode helpers', () => {
  it('encodes commands with binary (latin1) strings and Buffers', () => {
    const b = encodeCommand(['SET', Buffer.from([0, 255, 13, 10]), '\xe9']);
    expect(S(b)).toBe('*3\r\n$3\r\nSET\r\n$4\r\n\x00\xff\r\n\r\n$1\r\n\xe9\r\n');
    expect(S(encodeCommand([]))).toBe('*0\r\n');
    expect(S(bulkHeader(5))).toBe('$5\r\n');
    expect(S(arrayHeader(2))).toBe('*2\r\n');
    expect(S(encodeBulk('ab'))).toBe('$2\r\nab\r\n');
    expect(multibulkHeader(3)).toBe('*3\r\n');
    expect(bulkString('\xff\x00')).toBe('$2\r\n\xff\x00\r\n');
    const r = run([b]);
    expect(r.frames[0].argv.map(S)).toEqual(['SET', '\x00\xff\r\n', '\xe9']);
  });
});
