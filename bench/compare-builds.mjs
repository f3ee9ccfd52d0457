// The evented write of two builds side by side, in one run: this checkout's dist/ and another
// checkout's (e.g. main before a change: `git worktree add /tmp/before <commit> && (cd /tmp/before
// && npm ci && npm run build)`). Each build gets its own redis-server (one function library per
// Redis), a registration matching every benchmark key with the default events (`set expired`),
// and redis-benchmark SET at -P 1 and -P 16, 50 clients; interleaved rounds, medians. Also
// Redis's CPU time per evented SET (redis-server's utime+stime over the run) and INFO commandstats'
// usec_per_call of FCALL (the time inside the function call).
//
// Usage: node bench/compare-builds.mjs <other checkout> [label of the other build]
//   BENCH_ROUNDS (default 5), BENCH_REQUESTS_SCALE (default 1: -n 100000 at -P 1, 400000 at -P 16),
//   BENCH_OPTIONS: registration options for this checkout's build only (e.g. 'TARGET stream' or
//   'WITH value ts', against the same checkout given as the other: the cost of those options)
import path from 'node:path';
import { existsSync } from 'node:fs';
import { ROOT, cleanup, cli, cpuSeconds, machineInfo, makeTempDir, median, redisBenchmark, startProxy, startRedis } from './lib.mjs';

const other = process.argv[2];
const otherLabel = process.argv[3] ?? path.basename(path.resolve(other ?? ''));
if (!other || !existsSync(path.join(other, 'dist', 'cli.js'))) {
  console.error('usage: node bench/compare-builds.mjs <other checkout with dist/ built> [label]');
  process.exit(2);
}
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? '5');
const SCALE = Number(process.env.BENCH_REQUESTS_SCALE ?? '1');
const REQUESTS = { 1: Math.round(100000 * SCALE), 16: Math.round(400000 * SCALE) };
const LIST = 'bench_events';
const OPTIONS = (process.env.BENCH_OPTIONS ?? '').split(' ').filter(Boolean);

async function build(label, checkout, options = []) {
  const redis = await startRedis(makeTempDir());
  const proxy = await startProxy(redis.port, { cwd: checkout, cliPath: path.join(checkout, 'dist', 'cli.js') });
  await cli(proxy.port, 'NOTIFYLIST.SET', 'key:*', LIST, ...options);
  return { label, redis, proxy, stream: options.some((word) => word.toLowerCase() === 'stream'), results: { 1: [], 16: [] }, cpu: { 1: [], 16: [] }, fcall: { 1: [], 16: [] } };
}

try {
  console.log(`evented SET, two builds; ${machineInfo()}`);
  const thisLabel = OPTIONS.length > 0 ? `this checkout, ${OPTIONS.join(' ')}` : 'this checkout';
  const builds = [await build(thisLabel, ROOT, OPTIONS), await build(otherLabel, path.resolve(other))];
  for (const b of builds) await redisBenchmark(b.proxy.port, { requests: 20000, pipeline: 16, tests: 'set' }); // warm-up
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? builds : [...builds].reverse();
    for (const b of order) {
      for (const pipeline of [1, 16]) {
        await cli(b.redis.port, 'DEL', LIST);
        await cli(b.redis.port, 'CONFIG', 'RESETSTAT');
        const before = cpuSeconds(b.redis.child.process.pid);
        const { rps: { SET: rps } } = await redisBenchmark(b.proxy.port, { requests: REQUESTS[pipeline], pipeline, tests: 'set' });
        const after = cpuSeconds(b.redis.child.process.pid);
        const events = Number(await cli(b.redis.port, b.stream ? 'XLEN' : 'LLEN', LIST));
        if (events !== REQUESTS[pipeline]) throw new Error(`${b.label}: ${events} events for ${REQUESTS[pipeline]} SETs`);
        b.results[pipeline].push(rps);
        b.cpu[pipeline].push(((after - before) * 1e6) / REQUESTS[pipeline]);
        const stats = await cli(b.redis.port, 'INFO', 'commandstats');
        b.fcall[pipeline].push(Number(/cmdstat_fcall:calls=\d+,usec=\d+,usec_per_call=([0-9.]+)/.exec(stats)?.[1] ?? NaN));
        console.log(`  round ${round + 1} ${b.label.padEnd(20)} -P ${String(pipeline).padEnd(2)} SET ${Math.round(rps)} rps, Redis ${(((after - before) * 1e6) / REQUESTS[pipeline]).toFixed(1)} µs/SET`);
      }
    }
  }
  console.log('\n| build | evented SET -P 1 (rps) | evented SET -P 16 (rps) | Redis CPU per evented SET (-P 16) | FCALL usec_per_call (-P 16) |');
  console.log('|---|---:|---:|---:|---:|');
  for (const b of builds) {
    console.log(`| ${b.label} | ${Math.round(median(b.results[1]))} | ${Math.round(median(b.results[16]))} | ${median(b.cpu[16]).toFixed(1)} µs | ${median(b.fcall[16]).toFixed(2)} µs |`);
  }
  console.log(`\nmedians over ${ROUNDS} interleaved rounds; redis-benchmark -c 50 -t set -r 100000, -n ${REQUESTS[1]} at -P 1, ${REQUESTS[16]} at -P 16; every SET emits one event (checked).`);
} finally {
  await cleanup();
}
