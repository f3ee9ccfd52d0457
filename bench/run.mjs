// Side-by-side throughput benchmark, in one run, with redis-benchmark:
//   direct Redis | the proxy (no registrations) | the proxy with a registration matching every key
//   (every SET emits an event) | twemproxy (nutcracker), when installed.
// Interleaved rounds (the target order rotates each round); median over rounds; ratios to direct.
//
// Environment:
//   BENCH_ROUNDS           rounds (default 3)
//   BENCH_REQUESTS_SCALE   multiplies the request counts (default 1: -n 200000 at -P 1,
//                          -n 1000000 at -P 16); e.g. 0.05 for a quick run
//
// Usage: npm run bench   (builds dist/ first), or `node bench/run.mjs` after `npm run build`.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULTS } from '../dist/config.js';
import { RELOAD_MESSAGE } from '../dist/notify/changes.js';
import { internalNames } from '../dist/notify/names.js';
import {
  BENCH_DIR, ROOT, cleanup, cli, machineInfo, makeTempDir, median, redisBenchmark, sleep,
  startProxy, startRedis, startTwemproxy,
} from './lib.mjs';

const NAMES = internalNames(DEFAULTS.prefix);
const ROUNDS = positiveInt(process.env.BENCH_ROUNDS ?? '3', 'BENCH_ROUNDS');
const SCALE = Number(process.env.BENCH_REQUESTS_SCALE ?? '1');
if (!(SCALE > 0)) throw new Error(`BENCH_REQUESTS_SCALE must be a positive number, got '${process.env.BENCH_REQUESTS_SCALE}'`);
const CLIENTS = 50;
const KEYSPACE = 100000;
const TESTS = ['SET', 'GET'];
const PIPELINES = [1, 16];
const BASE_REQUESTS = { 1: 200000, 16: 1000000 };
const requestsFor = (pipeline) => Math.max(1000, Math.round(BASE_REQUESTS[pipeline] * SCALE));
const PATTERN = 'key:*';
const EVENTS_LIST = 'bench_events';

function positiveInt(text, name) {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got '${text}'`);
  return value;
}

const log = (line) => process.stdout.write(`${line}\n`);

async function main() {
  const startedAt = Date.now();
  if (!existsSync(path.join(ROOT, 'dist', 'cli.js'))) throw new Error('dist/cli.js is missing: run `npm run build` (or `npm run bench`)');
  const info = machineInfo();
  log('notifylist-proxy benchmark');
  log(`machine: nproc ${info.nproc}, ${info.cpuModel}, ${info.memory}, ${info.kernel}`);
  log(`node ${info.node}; redis ${info.redis}; ${info.redisBenchmark}; twemproxy: ${info.nutcracker}`);
  log(`no CPU pinning: redis-server, the proxy (node), nutcracker and redis-benchmark all share the ${info.nproc} cores`);
  log(`redis-benchmark -c ${CLIENTS} -r ${KEYSPACE} -t set,get; -P 1 -n ${requestsFor(1)}, -P 16 -n ${requestsFor(16)}; ${ROUNDS} round(s)`);

  const dir = makeTempDir();
  const redis = await startRedis(dir);
  log(`redis-server on 127.0.0.1:${redis.port}`);
  const proxy = await startProxy(redis.port);
  log(`proxy on 127.0.0.1:${proxy.port}`);
  const twem = await startTwemproxy(redis.port, dir);
  log(twem ? `twemproxy on 127.0.0.1:${twem.port}` : 'twemproxy: nutcracker not installed, column skipped');

  // Registrations are stored in Redis and shared by every proxy in front of it, so the
  // 'proxy + events' target registers before its runs and unregisters after them; every run of
  // every target checks the event list (expected: one event per SET for 'proxy + events', else 0).
  const registerEvents = async () => {
    const reply = await cli(proxy.port, 'NOTIFYLIST.SET', PATTERN, EVENTS_LIST);
    if (reply !== 'OK') throw new Error(`NOTIFYLIST.SET ${PATTERN} ${EVENTS_LIST} through the proxy replied: ${reply}`);
    await waitForRegistration(true);
  };
  const unregisterEvents = async () => {
    await cli(proxy.port, 'NOTIFYLIST.DEL', PATTERN);
    await waitForRegistration(false);
  };
  // A probe SET on a fresh proxy connection (as redis-benchmark's are) shows whether it emits.
  const waitForRegistration = async (active) => {
    const deadline = Date.now() + 5000;
    for (;;) {
      await cli(redis.port, 'DEL', EVENTS_LIST);
      await cli(proxy.port, 'SET', 'key:bench-probe', '1');
      const events = Number(await cli(redis.port, 'LLEN', EVENTS_LIST));
      await cli(redis.port, 'DEL', EVENTS_LIST, 'key:bench-probe');
      if ((events > 0) === active) return;
      if (Date.now() > deadline) throw new Error(`registration ${PATTERN} did not become ${active ? 'active' : 'inactive'} within 5 s`);
      await sleep(50);
    }
  };

  // 'proxy + 10k registrations': registrations present that the benchmark keys do not match:
  // 5,000 literal, 4,990 prefix and 10 general patterns (the general ones, with no literal prefix,
  // are tested against every key). Written straight into the registry hash, then announced.
  const registryArgs = [];
  for (let i = 0; i < 5000; i++) registryArgs.push(`other:${i}`, 'other_events');
  for (let i = 0; i < 4990; i++) registryArgs.push(`other:${i}:*`, 'other_events');
  for (let i = 0; i < 10; i++) registryArgs.push(`*:never${i}:[ab]?`, 'other_events');
  const registerMany = async () => {
    await cli(redis.port, 'HSET', NAMES.registry, ...registryArgs);
    await cli(redis.port, 'PUBLISH', NAMES.changes, RELOAD_MESSAGE);
    await sleep(500);
  };
  const unregisterMany = async () => {
    await cli(redis.port, 'DEL', NAMES.registry);
    await cli(redis.port, 'PUBLISH', NAMES.changes, RELOAD_MESSAGE);
    await sleep(500);
  };

  const targets = [
    { name: 'direct', port: redis.port },
    { name: 'proxy', port: proxy.port },
    { name: 'proxy + 10k registrations', port: proxy.port, before: registerMany, after: unregisterMany },
    { name: 'proxy + events', port: proxy.port, events: true, before: registerEvents, after: unregisterEvents },
  ];
  if (twem) targets.push({ name: 'twemproxy', port: twem.port });

  // results[target][test][pipeline] = [rps per round]
  const results = Object.fromEntries(targets.map((t) => [t.name, Object.fromEntries(TESTS.map((x) => [x, { 1: [], 16: [] }]))]));
  const eventChecks = []; // { round, target, pipeline, expected, events }

  const runTarget = async (target, { requestsOf, record, round }) => {
    await target.before?.();
    try {
      for (const pipeline of PIPELINES) {
        const requests = requestsOf(pipeline);
        await cli(redis.port, 'DEL', EVENTS_LIST);
        const { rps, seconds } = await redisBenchmark(target.port, { clients: CLIENTS, requests, pipeline, keyspace: KEYSPACE });
        const events = Number(await cli(redis.port, 'LLEN', EVENTS_LIST));
        await cli(redis.port, 'DEL', EVENTS_LIST);
        const expected = target.events ? requests : 0; // one SET per request of the SET test
        const ok = events === expected;
        if (record) {
          for (const test of TESTS) results[target.name][test][pipeline].push(rps[test]);
          eventChecks.push({ round, target: target.name, pipeline, expected, events });
        }
        log(`  ${record ? `round ${round}` : 'warm-up'} ${target.name.padEnd(26)} -P ${String(pipeline).padEnd(2)} `
          + TESTS.map((t) => `${t} ${Math.round(rps[t]).toString().padStart(7)} rps`).join(', ')
          + `  (${seconds.toFixed(1)} s; events ${events}/${expected}${ok ? '' : ' MISMATCH'})`);
      }
    } finally {
      await target.after?.();
    }
  };

  // Fill the key space so GETs hit existing keys from the first measured run on.
  log('prefill: SET over the key space, direct');
  await redisBenchmark(redis.port, { clients: CLIENTS, requests: Math.max(10000, 5 * KEYSPACE), pipeline: 16, tests: 'set', keyspace: KEYSPACE });
  log('warm-up (not recorded)');
  for (const target of targets) {
    await runTarget(target, { requestsOf: (p) => Math.max(1000, Math.round(requestsFor(p) / 10)), record: false });
  }

  for (let round = 1; round <= ROUNDS; round++) {
    const offset = (round - 1) % targets.length;
    const order = [...targets.slice(offset), ...targets.slice(0, offset)];
    log(`round ${round}/${ROUNDS}: ${order.map((t) => t.name).join(', ')}`);
    for (const target of order) await runTarget(target, { requestsOf: requestsFor, record: true, round });
  }

  // Table of medians.
  const columns = ['direct', 'proxy', 'proxy + 10k registrations', 'proxy + events', 'twemproxy'];
  const header = `| test | -P | direct rps | proxy | proxy + 10k registrations | proxy + events | twemproxy |`;
  const rows = [header, '|---|---|---:|---:|---:|---:|---:|'];
  for (const pipeline of PIPELINES) {
    for (const test of TESTS) {
      const direct = median(results.direct[test][pipeline]);
      const cells = columns.map((name) => {
        if (!results[name]) return 'n/a';
        const value = median(results[name][test][pipeline]);
        return name === 'direct' ? `${Math.round(value)}` : `${Math.round(value)} (${(value / direct).toFixed(2)}x)`;
      });
      rows.push(`| ${test} | ${pipeline} | ${cells.join(' | ')} |`);
    }
  }
  const table = rows.join('\n');

  const rawRows = ['| target | test | -P | rps per round |', '|---|---|---|---|'];
  for (const target of targets) {
    for (const pipeline of PIPELINES) {
      for (const test of TESTS) {
        rawRows.push(`| ${target.name} | ${test} | ${pipeline} | ${results[target.name][test][pipeline].map((v) => Math.round(v)).join(', ')} |`);
      }
    }
  }

  const mismatches = eventChecks.filter((c) => c.events !== c.expected);
  const withEvents = eventChecks.filter((c) => c.target === 'proxy + events');
  const eventsSummary = mismatches.length === 0
    ? `events sanity check: OK. 'proxy + events' produced exactly one event per SET in each of its ${withEvents.length} runs `
      + `(${[...new Set(withEvents.map((c) => c.expected))].join(' / ')} events); other targets produced none.`
    : `events sanity check: ${mismatches.length} MISMATCH(ES): `
      + mismatches.map((c) => `round ${c.round} ${c.target} -P ${c.pipeline}: ${c.events} events, expected ${c.expected}`).join('; ');
  const elapsed = (Date.now() - startedAt) / 1000;
  const notes = [
    `- Median requests/s over ${ROUNDS} interleaved round(s) (target order rotated each round), ratio to direct Redis in parentheses.`,
    `- redis-benchmark -c ${CLIENTS} -r ${KEYSPACE} -t set,get -q --csv; -P 1 with -n ${requestsFor(1)}, -P 16 with -n ${requestsFor(16)}.`,
    `- 'proxy + 10k registrations': 5,000 literal, 4,990 prefix and 10 general patterns that no benchmark key matches (matching runs on every SET, nothing is rewritten).`,
    `- 'proxy + events': registration \`NOTIFYLIST.SET ${PATTERN} ${EVENTS_LIST}\` (every SET is rewritten to FCALL and appends an event); the list is deleted between runs.`,
    `- ${eventsSummary}`,
    twem ? '- twemproxy: one pool, one server connection (`servers: - 127.0.0.1:<redis>:1`), preconnect, no auto eject; it multiplexes all clients onto that connection.'
      : '- twemproxy: skipped (nutcracker not installed: `apt-get install nutcracker`).',
    `- No CPU pinning: redis-server, the proxy (one node process), nutcracker and redis-benchmark all share the ${info.nproc} cores, so absolute numbers are low and noisy; compare ratios.`,
    `- Machine: nproc ${info.nproc}, ${info.cpuModel}, ${info.memory}, ${info.kernel}; node ${info.node}; redis ${info.redis}; twemproxy ${info.nutcracker}.`,
    `- Full run took ${elapsed.toFixed(0)} s (${new Date(startedAt).toISOString()}).`,
  ];

  log('');
  log(table);
  log('');
  for (const note of notes) log(note);

  const resultsDir = path.join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const markdown = `# notifylist-proxy benchmark\n\n${table}\n\n${notes.join('\n')}\n\n## Per round\n\n${rawRows.join('\n')}\n`;
  writeFileSync(path.join(resultsDir, 'latest.md'), markdown);
  log(`\nwritten: ${path.relative(ROOT, path.join(resultsDir, 'latest.md'))}`);
  if (mismatches.length > 0) process.exitCode = 1;
}

try {
  await main();
} catch (error) {
  process.stderr.write(`bench: ${error.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
