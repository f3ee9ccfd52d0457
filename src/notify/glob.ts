// Redis glob matching, ported byte for byte from Redis 7.0 src/util.c `stringmatchlen_impl`
// (nocase = 0), as used by KEYS, SCAN MATCH and PSUBSCRIBE.
//
// Patterns and keys are "binary strings": one char code per byte (0..255), i.e.
// `buffer.toString('latin1')`. Anything else is undefined behaviour, as in C.
//
// Details kept on purpose, because they decide what Redis matches:
// - The C code reads one byte past the end of the pattern in places (`pattern[1]`,
//   `while (*pattern == '*')`, the class loop). Redis strings are NUL-terminated there, so
//   `byteAt` returns 0 past the end.
// - Class range bounds compare as `char`, which is signed on x86: bytes >= 0x80 are negative.
// - The skipLongerMatches cut-off (CVE-2022-36021) keeps `a*a*a*...b` linear-ish instead of
//   exponential.
// - Recursion depth is bounded as in Redis's fix for CVE-2024-31228 (backported to Debian's
//   7.0.15): a `*` recursion deeper than MAX_STAR_NESTING fails that branch (returns false).
//   This only affects patterns with more than 1000 separate `*` runs; it also keeps the JS
//   stack safe.

/** Redis: `if (nesting > 1000) return 0;` where each `*` recursion adds one level. */
export const MAX_STAR_NESTING = 1000;

const STAR = 0x2a; // *
const QUESTION = 0x3f; // ?
const OPEN_BRACKET = 0x5b; // [
const CLOSE_BRACKET = 0x5d; // ]
const BACKSLASH = 0x5c; // \
const CARET = 0x5e; // ^
const DASH = 0x2d; // -

// Module state instead of an out-parameter object: matching is synchronous and never
// re-entered, and this avoids an allocation per call.
let skipLongerMatches = false;

/** The byte at `index`, or 0 past the end (the C string's NUL terminator). */
function byteAt(text: string, index: number): number {
  return index < text.length ? text.charCodeAt(index) : 0;
}

/** Reinterprets a byte as a signed C `char`. */
function signedChar(byte: number): number {
  return (byte << 24) >> 24;
}

/** True iff `key` matches the Redis glob `pattern` (both binary strings). */
export function globMatch(pattern: string, key: string): boolean {
  skipLongerMatches = false;
  return matchFrom(pattern, 0, key, 0, 0);
}

// `p`/`k` are the C `pattern`/`string` pointers as indices; patternLen = pattern.length - p and
// stringLen = key.length - k, because every recursive call keeps the same ends.
function matchFrom(pattern: string, p: number, key: string, k: number, nesting: number): boolean {
  if (nesting > MAX_STAR_NESTING) return false;
  const patternEnd = pattern.length;
  const keyEnd = key.length;

  while (p < patternEnd && k < keyEnd) {
    const patternByte = pattern.charCodeAt(p);
    if (patternByte === STAR) {
      while (p < patternEnd && byteAt(pattern, p + 1) === STAR) p++;
      if (patternEnd - p === 1) return true; // trailing `*` matches the (non-empty) rest
      while (k < keyEnd) {
        if (matchFrom(pattern, p + 1, key, k, nesting + 1)) return true;
        if (skipLongerMatches) return false;
        k++;
      }
      // The rest of the pattern matches at no position of the rest of the key, so no earlier
      // `*` can help by swallowing more: tell every caller to stop.
      skipLongerMatches = true;
      return false;
    } else if (patternByte === QUESTION) {
      k++;
    } else if (patternByte === OPEN_BRACKET) {
      p++;
      const negate = byteAt(pattern, p) === CARET;
      if (negate) p++;
      const keyByte = key.charCodeAt(k);
      let matched = false;
      for (;;) {
        const classByte = byteAt(pattern, p);
        if (classByte === BACKSLASH && patternEnd - p >= 2) {
          p++;
          if (pattern.charCodeAt(p) === keyByte) matched = true;
        } else if (classByte === CLOSE_BRACKET) {
          break;
        } else if (p === patternEnd) {
          // Unterminated class: step back so the shared `p++` below lands on the end.
          p--;
          break;
        } else if (patternEnd - p >= 3 && pattern.charCodeAt(p + 1) === DASH) {
          let start = signedChar(classByte);
          let end = signedChar(pattern.charCodeAt(p + 2));
          if (start > end) {
            const swap = start;
            start = end;
            end = swap;
          }
          const c = signedChar(keyByte);
          p += 2;
          if (c >= start && c <= end) matched = true;
        } else if (classByte === keyByte) {
          matched = true;
        }
        p++;
      }
      if (negate) matched = !matched;
      if (!matched) return false;
      k++;
    } else {
      // `\x` is a literal x; a trailing lone `\` stays and matches `\`.
      if (patternByte === BACKSLASH && patternEnd - p >= 2) p++;
      if (pattern.charCodeAt(p) !== key.charCodeAt(k)) return false;
      k++;
    }
    p++;
    if (k === keyEnd) {
      while (byteAt(pattern, p) === STAR) p++;
      break;
    }
  }
  return p === patternEnd && k === keyEnd;
}

/** True for the bytes that make a pattern byte non-literal outside a class. */
function isSpecialByte(byte: number): boolean {
  return byte === STAR || byte === QUESTION || byte === OPEN_BRACKET || byte === BACKSLASH;
}

/**
 * The leading bytes before the first `*`, `?`, `[` or `\`. Every key the pattern matches starts
 * with them. (An escape such as `\x` ends the prefix early: simpler, still correct.)
 */
export function literalPrefix(pattern: string): string {
  for (let i = 0; i < pattern.length; i++) {
    if (isSpecialByte(pattern.charCodeAt(i))) return pattern.slice(0, i);
  }
  return pattern;
}

export type PatternClass =
  /** Matches exactly the key `text` (which may be ""). */
  | { kind: 'literal'; text: string }
  /** Matches every key that starts with `prefix` and is not empty (`*` does not match ""). */
  | { kind: 'prefix'; prefix: string }
  /** Matches only keys starting with `prefix`; the rest needs globMatch. */
  | { kind: 'general'; prefix: string };

/** Sorts a pattern into the cheapest exact way to match it. */
export function classifyPattern(pattern: string): PatternClass {
  const prefix = literalPrefix(pattern);
  if (prefix.length === pattern.length) return { kind: 'literal', text: pattern };
  for (let i = prefix.length; i < pattern.length; i++) {
    if (pattern.charCodeAt(i) !== STAR) return { kind: 'general', prefix };
  }
  return { kind: 'prefix', prefix };
}

/**
 * The runs of literal bytes of a pattern, in order, read as matchFrom reads them: `*`, `?` and
 * `[...]` classes (as far as matchFrom takes them, an unclosed `[` to the end) end a run; `\x` is
 * the byte x and a trailing lone `\` the byte `\`, both inside a run. A match consumes every
 * pattern byte, so every key the pattern matches contains each run (in this order, apart).
 */
export function literalRuns(pattern: string): string[] {
  const runs: string[] = [];
  let run = ''; // the run before `from`, escapes decoded
  let from = 0; // start of the escape-free rest of the current run
  let p = 0;
  while (p < pattern.length) {
    const byte = pattern.charCodeAt(p);
    if (byte === STAR || byte === QUESTION || byte === OPEN_BRACKET) {
      run += pattern.slice(from, p);
      if (run.length > 0) runs.push(run);
      run = '';
      p = byte === OPEN_BRACKET ? classEnd(pattern, p) : p + 1;
      from = p;
    } else if (byte === BACKSLASH && pattern.length - p >= 2) {
      run += pattern.slice(from, p); // drop the `\`, keep the byte after it
      from = p + 1;
      p += 2;
    } else {
      p++;
    }
  }
  run += pattern.slice(from);
  if (run.length > 0) runs.push(run);
  return runs;
}

/**
 * The longest of literalRuns(pattern) (the first of equals), "" when there is none. Every key the
 * pattern matches contains it, so `key.includes(run)` is a sound, cheap pre-filter before
 * globMatch.
 */
export function requiredSubstring(pattern: string): string {
  let longest = '';
  for (const run of literalRuns(pattern)) if (run.length > longest.length) longest = run;
  return longest;
}

/** Index just past the `[...]` class starting at `open`, walking it as matchFrom does. */
function classEnd(pattern: string, open: number): number {
  const end = pattern.length;
  let p = open + 1;
  if (byteAt(pattern, p) === CARET) p++;
  for (;;) {
    const classByte = byteAt(pattern, p);
    if (classByte === BACKSLASH && end - p >= 2) p += 2;
    else if (classByte === CLOSE_BRACKET) return p + 1;
    else if (p >= end) return end;
    else if (end - p >= 3 && pattern.charCodeAt(p + 1) === DASH) p += 3;
    else p++;
  }
}

/**
 * The index semantics of a `prefix` class, exactly: `P*` (P non-empty) matches iff the key starts
 * with P; `*` alone matches every key except "".
 */
export function prefixClassMatches(prefix: string, key: string): boolean {
  return key.length > 0 && key.startsWith(prefix);
}
