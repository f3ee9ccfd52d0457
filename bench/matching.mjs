// PatternIndex.hasAny cost per key, in ns, against the number of registered general patterns (not
// literal, not `P*`): for each pattern family, with 0, 1,000 and 100,000 patterns, a key that
// matches none of them and a key that matches one. Also 1,000 patterns with no literal run of 3
// bytes (checked one by one, so their cost grows with their number), and all families together.
// No Redis, no proxy: the in-process index only (one core).
// Run: npm run build && node bench/matching.mjs [path/to/pattern-index.js]   (~20 s; minutes with a build from before the anchors)
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const modulePath = process.argv[2] ? pathToFileURL(process.argv[2]).href : '../dist/notify/pattern-index.js';
const { PatternIndex } = await import(modulePath);

const COUNTS = [0, 1_000, 100_000];
const NON_MATCHING = 'key:000000012345';
/** A family: how to write its i-th pattern, and a key its pattern number 42 matches. */
const FAMILIES = [
  { name: '*:obj<i>:*', pattern: (i) => `*:obj${i}:*`, hit: 'x:obj42:y' },
  { name: 'user:*:session<i>', pattern: (i) => `user:*:session${i}`, hit: 'user:1:session42' },
  { name: '*suffix<i>', pattern: (i) => `*suffix${i}`, hit: 'my-suffix42' },
  // From 1000 on, so that every pattern has a run of its own besides the shared `:session:`.
  { name: 'a?c*:session:*:<1000+i>', pattern: (i) => `a?c*:session:*:${1000 + i}`, hit: 'abc:session:x:1042' },
];
// No literal run of 3 bytes: `*<a><b>?<c>*` (runs of 2 and 1 bytes) over 1,000 distinct (a, b, c).
const LETTERS = 'abcdefghij';
const noLiteral = (i) => `*${LETTERS[i % 10]}${LETTERS[Math.floor(i / 10) % 10]}?${LETTERS[Math.floor(i / 100) % 10]}*`;

let sink = 0;
/** Median ns per hasAny(key) over 5 batches of ~40 ms each, after ~40 ms of warm-up. */
function nsPerCall(index, key) {
  let calls = 0;
  const warmStart = performance.now();
  while (calls < 100 || performance.now() - warmStart < 40) {
    for (let i = 0; i < 100; i++) sink += index.hasAny(key) ? 1 : 0;
    calls += 100;
  }
  const iterations = Math.max(10, Math.round((calls * 40) / (performance.now() - warmStart)));
  const samples = [];
  for (let batch = 0; batch < 5; batch++) {
    const start = performance.now();
    for (let i = 0; i < iterations; i++) sink += index.hasAny(key) ? 1 : 0;
    samples.push(((performance.now() - start) * 1e6) / iterations);
  }
  samples.sort((a, b) => a - b);
  return samples[2];
}

function build(patternsOf, count) {
  const index = new PatternIndex();
  const start = performance.now();
  for (let i = 0; i < count; i++) index.add(patternsOf(i), 'list');
  return { index, addUs: count > 0 ? ((performance.now() - start) * 1000) / count : 0 };
}

const rows = [];
function measure(name, count, patternsOf, hitKey) {
  const { index, addUs } = build(patternsOf, count);
  const matched = index.hasAny(hitKey);
  rows.push({
    patterns: name,
    count,
    'miss ns': nsPerCall(index, NON_MATCHING).toFixed(0),
    'hit ns': nsPerCall(index, hitKey).toFixed(0),
    'hit matches': matched,
    'miss probes': (index.hasAny(NON_MATCHING), index.lastProbeCount),
    'add us': addUs.toFixed(2),
  });
}

const started = performance.now();
for (const family of FAMILIES) for (const count of COUNTS) measure(family.name, count, family.pattern, family.hit);
measure('no 3-byte literal', 1_000, noLiteral, 'x:ab:c:y'); // matches `*ab?c*` (i = 210)
const all = (i) => FAMILIES[i % FAMILIES.length].pattern(Math.floor(i / FAMILIES.length));
measure('all four families', 4 * 100_000, all, 'x:obj42:y');
console.log(`PatternIndex.hasAny, non-matching key ${JSON.stringify(NON_MATCHING)}; node ${process.version}; ${modulePath}`);
console.table(rows);
console.log(`(${((performance.now() - started) / 1000).toFixed(1)} s, sink ${sink})`);
