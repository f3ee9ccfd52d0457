// Pass-through cost of the proxy with nothing registered, against a bare Node socket pipe
// (scripts/socket-pipe.mjs: one upstream connection per client, bytes copied both ways).
// Starts its own redis-server, the proxy (dist/cli.js) and the pipe, then runs redis-benchmark
// against each in interleaved A/B rounds (proxy, pipe, pipe, proxy, ...: the order flips every
// round), for SET and GET at -c 50 / -c 1000 and -P 1 / -P 16. The machine is shared, so
// throughput is noisy: the figure that matters is the CPU time of the middle process per request
// (utime + stime from /proc/<pid>/stat around each run), medians over the rounds.
//
// Environment:
//   BENCH_ROUNDS     rounds (default 3)
//   BENCH_SCALE      multiplies the request counts (default 1; ~2.5 minutes in all at 1)
//   BENCH_CASES      which cases, e.g. "50x1,1000x16" (clients x pipeline; default all four)
//   BENCH_TESTS      redis-benchmark tests (default set,get)
//   BENCH_BASE       another checkout with dist/ built (e.g. before a change): its proxy runs as a
//                    third middle process, "base", in the same rounds
//
// Usage: npm run build && node bench/passthrough.mjs
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  cleanup, cpuSeconds, machineInfo, makeTempDir, median, redisBenchmark, startPipe, startProxy, startRedis,
} from './lib.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? '3');
const SCALE = Number(process.env.BENCH_SCALE ?? '1');
const TESTS = (process.env.BENCH_TESTS ?? 'set,get').split(',');
const ALL_CASES = [
  { clients: 50, pipeline: 1, requests: 80_000 },
  { clients: 50, pipeline: 16, requests: 400_000 },
  { clients: 1000, pipeline: 1, requests: 80_000 },
  { clients: 1000, pipeline: 16, requests: 400_000 },
];
const wanted = process.env.BENCH_CASES?.split(',').map((c) => c.trim());
const CASES = ALL_CASES.filter((c) => !wanted || wanted.includes(`${c.clients}x${c.pipeline}`));
const log = (line) => process.stdout.write(`${line}\n`);


/** read and write system calls a process made so far (/proc/<pid>/io, Linux); NaN elsewhere. */
function syscalls(pid) {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    return Number(/syscr: (\d+)/.exec(io)[1]) + Number(/syscw: (\d+)/.exec(io)[1]);
  } catch {
    return NaN;
  }
}

/** One redis-benchmark run of one test against one middle process: rps, CPU µs and syscalls per request. */
async function measure(target, c, test, requests) {
  const pid = target.child.process.pid;
  const before = cpuSeconds(pid);
  const callsBefore = syscalls(pid);
  const { rps } = await redisBenchmark(target.port, { clients: c.clients, requests, pipeline: c.pipeline, tests: test });
  const after = cpuSeconds(pid);
  const calls = (syscalls(pid) - callsBefore) / requests;
  return { rps: rps[test.toUpperCase()], us: before === null ? NaN : ((after - before) * 1e6) / requests, calls };
}

async function main() {
  const info = machineInfo();
  log(`machine: nproc ${info.nproc}, ${info.cpuModel}; node ${info.node}; redis ${info.redis} (shared cores, no pinning)`);
  const dir = makeTempDir('notifylist-passthrough-');
  const redis = await startRedis(dir);
  const targets = {
    proxy: await startProxy(redis.port),
    pipe: await startPipe(redis.port),
  };
  if (process.env.BENCH_BASE) targets.base = await startProxy(redis.port, { cliPath: path.resolve(process.env.BENCH_BASE, 'dist', 'cli.js'), cwd: path.resolve(process.env.BENCH_BASE) });
  const names = Object.keys(targets);
  log(`redis-server :${redis.port}, proxy (dist/cli.js) :${targets.proxy.port}, socket-pipe :${targets.pipe.port}${targets.base ? `, base (${process.env.BENCH_BASE}) :${targets.base.port}` : ''}`);
  log(`${ROUNDS} interleaved rounds; tests ${TESTS.join(',')}; CPU = utime+stime of the middle process / requests`);
  // Warm-up (JIT, connection set-up paths) on both, not counted.
  for (const name of names) {
    await redisBenchmark(targets[name].port, { clients: 50, requests: 50_000, pipeline: 1, tests: 'set,get' });
    await redisBenchmark(targets[name].port, { clients: 50, requests: 200_000, pipeline: 16, tests: 'set,get' });
  }
  const results = new Map(); // key `${case}|${test}|${name}` -> [{rps, us}]
  const started = Date.now();
  for (let round = 0; round < ROUNDS; round++) {
    // Every round another order (proxy, pipe / pipe, proxy; with a base, its rotations).
    const order = names.length === 2 ? (round % 2 === 0 ? names : [...names].reverse()) : names.map((_, i) => names[(i + round) % names.length]);
    for (const c of CASES) {
      const requests = Math.round(c.requests * SCALE);
      for (const test of TESTS) {
        for (const name of order) {
          const r = await measure(targets[name], c, test, requests);
          const key = `${c.clients}x${c.pipeline}|${test}|${name}`;
          if (!results.has(key)) results.set(key, []);
          results.get(key).push(r);
        }
      }
    }
    log(`round ${round + 1}/${ROUNDS} done (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }
  log('');
  log('medians over rounds (CPU µs/request of the middle process; ratios proxy rps / pipe rps and pipe µs / proxy µs: >= 0.95 is the target)');
  log('paired: the median of the ratios of each round (proxy and pipe ran one after the other): less noise from load that drifts');
  log(`${'case'.padEnd(18)} ${'test'.padEnd(4)} ${'proxy rps'.padStart(10)} ${'pipe rps'.padStart(10)} ${'rps ratio'.padStart(9)}  ${'proxy µs'.padStart(8)} ${'pipe µs'.padStart(8)} ${'CPU ratio'.padStart(9)} ${'paired'.padStart(6)}  proxy µs per round | pipe`);
  for (const c of CASES) {
    for (const test of TESTS) {
      const get = (name) => results.get(`${c.clients}x${c.pipeline}|${test}|${name}`);
      const proxy = get('proxy');
      const pipe = get('pipe');
      const pr = median(proxy.map((r) => r.rps));
      const qr = median(pipe.map((r) => r.rps));
      const pu = median(proxy.map((r) => r.us));
      const qu = median(pipe.map((r) => r.us));
      log(`${`-c ${c.clients} -P ${c.pipeline}`.padEnd(18)} ${test.toUpperCase().padEnd(4)} ${pr.toFixed(0).padStart(10)} ${qr.toFixed(0).padStart(10)} ${(pr / qr).toFixed(2).padStart(9)}  ${pu.toFixed(2).padStart(8)} ${qu.toFixed(2).padStart(8)} ${(qu / pu).toFixed(2).padStart(9)} ${median(proxy.map((r, i) => pipe[i].us / r.us)).toFixed(2).padStart(6)}  ${proxy.map((r) => r.us.toFixed(2)).join(' ')} | ${pipe.map((r) => r.us.toFixed(2)).join(' ')}`);
      const base = get('base');
      if (base) {
        const br = median(base.map((r) => r.rps));
        const bu = median(base.map((r) => r.us));
        log(`${'  base'.padEnd(18)} ${test.toUpperCase().padEnd(4)} ${br.toFixed(0).padStart(10)} ${qr.toFixed(0).padStart(10)} ${(br / qr).toFixed(2).padStart(9)}  ${bu.toFixed(2).padStart(8)} ${qu.toFixed(2).padStart(8)} ${(qu / bu).toFixed(2).padStart(9)} ${median(base.map((r, i) => pipe[i].us / r.us)).toFixed(2).padStart(6)}  ${base.map((r) => r.us.toFixed(2)).join(' ')}`);
      }
    }
  }
  syscallTable(results);
}

function syscallTable(results) {
  log('');
  log('read+write system calls of the middle process per request (medians)');
  for (const [key, runs] of results) log(`  ${key.replace(/\|/g, ' ').padEnd(24)} ${median(runs.map((r) => r.calls)).toFixed(3)}`);
}

try {
  await main();
} catch (error) {
  process.stderr.write(`passthrough: ${error.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
