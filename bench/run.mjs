// Side-by-side throughput benchmark, in one run, with redis-benchmark:
//   direct Redis | the proxy (no registrations) | the proxy with 100,000 general patterns no key
//   matches | the proxy with a registration matching every key (every SET emits an event), with the
//   default events and WITH value ts | the proxy with --workers 2 | a bare Node socket pipe
//   (scripts/socket-pipe.mjs) | twemproxy (nutcracker), when installed; with 50 and 1,000 clients.
// Interleaved rounds (the target order rotates each round); median over rounds; ratios to direct.
// Also the CPU time per request of the process in the middle (the proxy, the pipe, twemproxy;
// direct: redis-server itself), from /proc/<pid>/stat utime+stime around each run, divided by
// the requests of the run: a measure of efficiency however the cores are shared.
//
// Environment:
//   BENCH_ROUNDS           rounds (default 3)
//   BENCH_REQUESTS_SCALE   multiplies the request counts (default 1: -n 200000 at -P 1,
//                          -n 1000000 at -P 16); e.g. 0.05 for a quick run
//
// Usage: npm run bench   (builds dist/ first), or `node bench/run.mjs` after `npm run build`.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tag } from '../dist/security/secret.js';
import { encodeCommand } from '../dist/resp/encode.js';
import path from 'node:path';
import { DEFAULTS } from '../dist/config.js';
import { RELOAD_MESSAGE } from '../dist/notify/changes.js';
import { internalNames } from '../dist/notify/names.js';
import { spawnSync } from 'node:child_process';
import {
  BENCH_DIR, ROOT, cleanup, cli, cpuSeconds, machineInfo, makeTempDir, median, redisBenchmark, sleep,
  startPipe, startProxy, startRedis, startTwemproxy,
} from './lib.mjs';

const NAMES = internalNames(DEFAULTS.prefix);
const ROUNDS = positiveInt(process.env.BENCH_ROUNDS ?? '3', 'BENCH_ROUNDS');
const SCALE = Number(process.env.BENCH_REQUESTS_SCALE ?? '1');
if (!(SCALE > 0)) throw new Error(`BENCH_REQUESTS_SCALE must be a positive number, got '${process.env.BENCH_REQUESTS_SCALE}'`);
const CLIENT_COUNTS = [50, 1000];
const KEYSPACE = 100000;
const TESTS = ['SET', 'GET'];
const PIPELINES = [1, 16];
/** Each measured combination: clients x pipeline. */
const RUNS = CLIENT_COUNTS.flatMap((clients) => PIPELINES.map((pipeline) => ({ clients, pipeline, key: `${clients}/${pipeline}` })));
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


/** --workers arrives with another part of issue 9: its row is run only once the CLI has it. */
function cliHasWorkers() {
  const help = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), '--help'], { encoding: 'utf8' });
  return /--workers\b/.test(help.stdout ?? '');
}

async function main() {
  const startedAt = Date.now();
  if (!existsSync(path.join(ROOT, 'dist', 'cli.js'))) throw new Error('dist/cli.js is missing: run `npm run build` (or `npm run bench`)');
  const info = machineInfo();
  log('notifylist-proxy benchmark');
  log(`machine: nproc ${info.nproc}, ${info.cpuModel}, ${info.memory}, ${info.kernel}`);
  log(`node ${info.node}; redis ${info.redis}; ${info.redisBenchmark}; twemproxy: ${info.nutcracker}`);
  log(`no CPU pinning: redis-server, the proxy (node), nutcracker and redis-benchmark all share the ${info.nproc} cores`);
  log(`redis-benchmark -c ${CLIENT_COUNTS.join(' and -c ')} -r ${KEYSPACE} -t set,get; -P 1 -n ${requestsFor(1)}, -P 16 -n ${requestsFor(16)}; ${ROUNDS} round(s)`);

  const dir = makeTempDir();
  const redis = await startRedis(dir);
  log(`redis-server on 127.0.0.1:${redis.port}`);
  const proxy = await startProxy(redis.port);
  log(`proxy on 127.0.0.1:${proxy.port}`);
  const twem = await startTwemproxy(redis.port, dir);
  log(twem ? `twemproxy on 127.0.0.1:${twem.port}` : 'twemproxy: nutcracker not installed, column skipped');
  const pipe = await startPipe(redis.port);
  log(`bare Node pipe on 127.0.0.1:${pipe.port}`);
  // The --workers 2 row: a second proxy process with the flag (the workers share its port).
  const workers = cliHasWorkers() ? await startProxy(redis.port, { extraArgs: ['--workers', '2'] }) : null;
  log(workers ? `proxy --workers 2 on 127.0.0.1:${workers.port}` : 'proxy --workers 2: the CLI has no --workers flag yet, row skipped');

  // Registrations are stored in Redis and shared by every proxy in front of it, so the
  // 'proxy + events' target registers before its runs and unregisters after them; every run of
  // every target checks the event list (expected: one event per SET for 'proxy + events', else 0).
  const registerEvents = (options = []) => async () => {
    const reply = await cli(proxy.port, 'NOTIFYLIST.SET', PATTERN, EVENTS_LIST, ...options);
    if (reply !== 'OK') throw new Error(`NOTIFYLIST.SET ${PATTERN} ${EVENTS_LIST} ${options.join(' ')} through the proxy replied: ${reply}`);
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

  // 'proxy + 100k general patterns': registrations no benchmark key matches, each with a literal
  // run of 3 or more bytes but no literal prefix the keys share (40,000 `*:obj<i>:*`, 30,000
  // `user:*:session<i>`, 30,000 `*suffix<i>`): matching runs on every SET, nothing is rewritten.
  // Written straight into the registry hash as the library writes them (tagged: the proxy ignores
  // anything else), through redis-cli --pipe, then announced.
  const generalPatterns = [
    ...Array.from({ length: 40000 }, (_, i) => `*:obj${i}:*`),
    ...Array.from({ length: 30000 }, (_, i) => `user:*:session${i}`),
    ...Array.from({ length: 30000 }, (_, i) => `*suffix${i}`),
  ];
  const registerMany = async () => {
    const secret = await cli(redis.port, 'GET', NAMES.secret);
    const owner = 'default';
    const value = (pattern) => `${tag(secret, 'registration', pattern, 'other_events', owner)}${owner.length}:${owner}other_events`;
    const commands = [];
    for (let i = 0; i < generalPatterns.length; i += 1000) {
      commands.push(encodeCommand(['HSET', NAMES.registry, ...generalPatterns.slice(i, i + 1000).flatMap((p) => [p, value(p)])]));
    }
    const piped = spawnSync('redis-cli', ['-p', String(redis.port), '--pipe'], { input: Buffer.concat(commands), encoding: 'utf8' });
    if (piped.status !== 0) throw new Error(`redis-cli --pipe: ${piped.stderr}`);
    await cli(redis.port, 'PUBLISH', NAMES.changes, RELOAD_MESSAGE);
    await sleep(2000);
  };
  const unregisterMany = async () => {
    await cli(redis.port, 'DEL', NAMES.registry);
    await cli(redis.port, 'PUBLISH', NAMES.changes, RELOAD_MESSAGE);
    await sleep(1000);
  };

  // cpuPid: whose CPU time per request is reported (with --workers, the primary only: see the notes).
  const targets = [
    { name: 'direct', port: redis.port, cpuPid: redis.child.process.pid },
    { name: 'proxy', port: proxy.port, cpuPid: proxy.child.process.pid },
    { name: 'proxy + 100k general patterns', port: proxy.port, before: registerMany, after: unregisterMany },
    // (Evented: SET only, and the CPU time is redis-server's: Redis's time per evented write.)
    { name: 'proxy + events', port: proxy.port, cpuPid: redis.child.process.pid, tests: ['SET'], events: true, before: registerEvents(), after: unregisterEvents },
    { name: 'proxy + events WITH value ts', port: proxy.port, cpuPid: redis.child.process.pid, tests: ['SET'], events: true, before: registerEvents(['WITH', 'value', 'ts']), after: unregisterEvents },
  ];
  if (workers) targets.push({ name: 'proxy --workers 2', port: workers.port });
  targets.push({ name: 'bare Node pipe', port: pipe.port, cpuPid: pipe.child.process.pid });
  if (twem) targets.push({ name: 'twemproxy', port: twem.port, cpuPid: twem.child.process.pid });

  // results[target][test][clients/pipeline] = [rps per round]; cpu[target][clients/pipeline] = [µs per request per round]
  const results = Object.fromEntries(targets.map((t) => [t.name, Object.fromEntries(TESTS.map((x) => [x, Object.fromEntries(RUNS.map((r) => [r.key, []]))]))]));
  const cpu = Object.fromEntries(targets.map((t) => [t.name, Object.fromEntries(RUNS.map((r) => [r.key, []]))]));
  const eventChecks = []; // { round, target, pipeline, expected, events }

  const runTarget = async (target, { requestsOf, record, round }) => {
    await target.before?.();
    try {
      for (const { clients, pipeline, key } of RUNS) {
        const requests = requestsOf(pipeline);
        await cli(redis.port, 'DEL', EVENTS_LIST);
        const cpuBefore = target.cpuPid ? cpuSeconds(target.cpuPid) : null;
        const tests = target.tests ?? TESTS;
        const { rps, seconds } = await redisBenchmark(target.port, { clients, requests, pipeline, keyspace: KEYSPACE, tests: tests.join(',').toLowerCase() });
        const cpuAfter = target.cpuPid ? cpuSeconds(target.cpuPid) : null;
        // SET and GET: requests each.
        const cpuUs = cpuBefore === null || cpuAfter === null ? null : ((cpuAfter - cpuBefore) * 1e6) / (requests * tests.length);
        const events = Number(await cli(redis.port, 'LLEN', EVENTS_LIST));
        await cli(redis.port, 'DEL', EVENTS_LIST);
        const expected = target.events ? requests : 0; // one SET per request of the SET test
        const ok = events === expected;
        if (record) {
          for (const test of tests) results[target.name][test][key].push(rps[test]);
          if (cpuUs !== null) cpu[target.name][key].push(cpuUs);
          eventChecks.push({ round, target: target.name, pipeline: `${pipeline} -c ${clients}`, expected, events });
        }
        log(`  ${record ? `round ${round}` : 'warm-up'} ${target.name.padEnd(26)} -c ${String(clients).padEnd(4)} -P ${String(pipeline).padEnd(2)} `
          + tests.map((t) => `${t} ${Math.round(rps[t]).toString().padStart(7)} rps`).join(', ')
          + `${cpuUs === null ? '' : `, ${cpuUs.toFixed(1)} µs CPU/request`}  (${seconds.toFixed(1)} s; events ${events}/${expected}${ok ? '' : ' MISMATCH'})`);
      }
    } finally {
      await target.after?.();
    }
  };

  // Fill the key space so GETs hit existing keys from the first measured run on.
  log('prefill: SET over the key space, direct');
  await redisBenchmark(redis.port, { clients: 50, requests: Math.max(10000, 5 * KEYSPACE), pipeline: 16, tests: 'set', keyspace: KEYSPACE });
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
  const columns = ['direct', 'proxy', 'proxy + 100k general patterns', 'proxy + events', 'proxy + events WITH value ts', 'proxy --workers 2', 'bare Node pipe', 'twemproxy'];
  const header = `| test | -c | -P | ${columns.map((c) => (c === 'direct' ? 'direct rps' : c)).join(' | ')} |`;
  const rows = [header, `|---|---|---|${columns.map(() => '---:').join('|')}|`];
  for (const { clients, pipeline, key } of RUNS) {
    for (const test of TESTS) {
      const direct = median(results.direct[test][key]);
      const cells = columns.map((name) => {
        if (!results[name]) return 'n/a';
        if (results[name][test][key].length === 0) return '-';
        const value = median(results[name][test][key]);
        return name === 'direct' ? `${Math.round(value)}` : `${Math.round(value)} (${(value / direct).toFixed(2)}x)`;
      });
      rows.push(`| ${test} | ${clients} | ${pipeline} | ${cells.join(' | ')} |`);
    }
  }
  const table = rows.join('\n');
  // CPU time per request (SET and GET together) of the process in the middle.
  const cpuColumns = targets.filter((t) => t.cpuPid).map((t) => t.name);
  const cpuRows = [`| -c | -P | ${cpuColumns.map((c) => (c === 'direct' ? 'redis-server (direct)' : c)).join(' | ')} |`, `|---|---|${cpuColumns.map(() => '---:').join('|')}|`];
  for (const { clients, pipeline, key } of RUNS) {
    cpuRows.push(`| ${clients} | ${pipeline} | ${cpuColumns.map((name) => (cpu[name][key].length ? `${median(cpu[name][key]).toFixed(1)} µs` : 'n/a')).join(' | ')} |`);
  }
  const cpuTable = cpuRows.join('\n');

  const rawRows = ['| target | test | -P | rps per round |', '|---|---|---|---|'];
  for (const target of targets) {
    for (const { clients, pipeline, key } of RUNS) {
      for (const test of TESTS) {
        rawRows.push(`| ${target.name} | ${test} | ${pipeline} -c ${clients} | ${results[target.name][test][key].map((v) => Math.round(v)).join(', ')} |`);
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
    `- redis-benchmark -c ${CLIENT_COUNTS.join(' and -c ')} -r ${KEYSPACE} -t set,get -q --csv; -P 1 with -n ${requestsFor(1)}, -P 16 with -n ${requestsFor(16)}.`,
    `- CPU time per request: utime+stime (/proc/<pid>/stat) of the process in the middle around each run, over the run's SET and GET requests (connection set-up included); direct: redis-server's own.`,
    workers ? '- proxy --workers 2: its CPU time is not in the second table (the workers are other processes).' : '- proxy --workers 2: skipped, the CLI has no --workers flag yet.',
    `- 'proxy + 100k general patterns': 40,000 \`*:obj<i>:*\`, 30,000 \`user:*:session<i>\` and 30,000 \`*suffix<i>\` registered, none matching a benchmark key (matching runs on every SET, nothing is rewritten).`,
    `- 'proxy + events' and 'proxy + events WITH value ts': SET only; their CPU time per request is redis-server's (Redis's time per evented write), the others' that of the process in the middle.`,
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
  log('CPU time per request (median over rounds)');
  log(cpuTable);
  log('');
  for (const note of notes) log(note);

  const resultsDir = path.join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const markdown = `# notifylist-proxy benchmark\n\n${table}\n\n## CPU time per request\n\n${cpuTable}\n\n${notes.join('\n')}\n\n## Per round\n\n${rawRows.join('\n')}\n`;
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
