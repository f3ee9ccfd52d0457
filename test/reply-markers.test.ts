// Replies the library cannot give through Lua (a null array, an integer above 2^53) come marked and
// are put right on their way to the client, wherever the chunks of the reply stream split.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { replyMarker, ReplyMarkers } from '../src/proxy/reply-markers.js';

const marker = replyMarker('the deployment secret');
const resp2 = (payload: string): string => {
  const content = marker.toString('latin1') + payload;
  return `$${content.length}\r\n${content}\r\n`;
};
const resp3 = (payload: string): string => `(${marker.toString('latin1')}${payload}\r\n`;

/** Feeds the stream in the given pieces; what the client gets (held bytes released at the end). */
function through(pieces: string[]): string {
  let out = '';
  const markers = new ReplyMarkers(() => marker, (held) => (out += held.toString('latin1')));
  for (const piece of pieces) out += markers.filter(Buffer.from(piece, 'latin1')).toString('latin1');
  vi.advanceTimersByTime(150);
  return out;
}

beforeAll(() => {
  vi.useFakeTimers();
});

afterAll(() => {
  vi.useRealTimers();
});

const CASES: Array<[string, string, string]> = [
  ['a null array (RESP2)', `:1\r\n${resp2('n')}+OK\r\n`, ':1\r\n*-1\r\n+OK\r\n'],
  ['a null array (RESP3)', `${resp3('n')}_\r\n`, '_\r\n_\r\n'],
  ['an integer above 2^53 (RESP2)', `*2\r\n${resp2('i9223372036854775806')}$-1\r\n`, '*2\r\n:9223372036854775806\r\n$-1\r\n'],
  ['an integer below -2^53 (RESP3)', resp3('i-9223372036854775808'), ':-9223372036854775808\r\n'],
  ['values that look like bulk headers, no marker', '$5\r\nab$62\r\n$3\r\n$62\r\n$1\r\n(\r\n', '$5\r\nab$62\r\n$3\r\n$62\r\n$1\r\n(\r\n'],
];

describe('reply markers', () => {
  for (const [name, stream, expected] of CASES) {
    it(`${name}: replaced, split at every position`, () => {
      expect(through([stream])).toBe(expected);
      for (let cut = 1; cut < stream.length; cut++) expect(through([stream.slice(0, cut), stream.slice(cut)])).toBe(expected);
    });
  }

  it('any mix of replies in any chunking (fast-check)', () => {
    const reply = fc.oneof(
      fc.constantFrom(':1\r\n', '+OK\r\n', '$-1\r\n', '*-1\r\n', '$3\r\n$62\r\n', '$2\r\n(\r\n').map((r) => [r, r]),
      fc.constantFrom('n', 'i9007199254740993', 'i-9223372036854775808').chain((payload) =>
        fc.constantFrom(
          [resp2(payload), payload === 'n' ? '*-1\r\n' : `:${payload.slice(1)}\r\n`],
          [resp3(payload), payload === 'n' ? '_\r\n' : `:${payload.slice(1)}\r\n`],
        ),
      ),
    );
    fc.assert(
      fc.property(fc.array(reply, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 4 }), (replies, cuts) => {
        const stream = replies.map(([r]) => r).join('');
        const positions = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const pieces: string[] = [];
        let at = 0;
        for (const position of positions) {
          pieces.push(stream.slice(at, position));
          at = position;
        }
        pieces.push(stream.slice(at));
        expect(through(pieces)).toBe(replies.map(([, e]) => e).join(''));
      }),
      { numRuns: 300 },
    );
  }, 60_000);
});
