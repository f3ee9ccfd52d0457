// Redis's time per evented write, and what the library runs for it: one redis-server, one proxy
// (dist/), a registration matching every benchmark key, redis-benchmark SET through the proxy;
// then INFO commandstats: FCALL's usec_per_call (the whole function call, its commands included)
// and every command the function ran, as calls and µs per evented SET.
//
// Usage: npm run build && node bench/library-cost.mjs
//   BENCH_OPTIONS   registration options (e.g. 'WITH value ts', 'EVENTS all')
//   BENCH_PIPELINE  -P (default 16); BENCH_REQUESTS (default 200000); BENCH_ROUNDS (default 3)
//   BENCH_COMMAND   what redis-benchmark sends instead of -t set, e.g. 'SET key:__rand_int__ v EX 100'
import { cleanup, cli, cpuSeconds, machineInfo, makeTempDir, median, redisBenchmark, run, startProxy, startRedis } from './lib.mjs';

const OPTIONS = (process.env.BENCH_OPTIONS ?? '').split(' ').filter(Boolean);
const PIPELINE = Number(process.env.BENCH_PIPELINE ?? '16');
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? '200000');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? '3');
const COMMAND = process.env.BENCH_COMMAND ?? '';
const LIST = 'bench_events';

function commandStats(text) {
  const stats = new Map();
  for (const match of text.matchAll(/cmdstat_([^:]+):calls=(\d+),usec=(\d+)/g)) stats.set(match[1], { calls: Number(match[2]), usec: Number(match[3]) });
  return stats;
}

try {
  console.log(`library cost per evented write; ${JSON.stringify(machineInfo())}`);
  const redis = await startRedis(makeTempDir());
  const proxy = await startProxy(redis.port);
  console.log(`NOTIFYLIST.SET key:* ${LIST} ${OPTIONS.join(' ')}: ${await cli(proxy.port, 'NOTIFYLIST.SET', 'key:*', LIST, ...OPTIONS)}`);
  const rounds = [];
  for (let round = 0; round < ROUNDS + 1; round++) {
    await cli(redis.port, 'DEL', LIST);
    await cli(redis.port, 'CONFIG', 'RESETSTAT');
    const before = cpuSeconds(redis.child.process.pid);
    let rps;
    if (COMMAND) {
      const started = Date.now();
      await run('redis-benchmark', ['-p', String(proxy.port), '-c', '50', '-n', String(REQUESTS), '-P', String(PIPELINE), '-r', '100000', '-q', ...COMMAND.split(' ')], { timeoutMs: 600_000 });
      rps = REQUESTS / ((Date.now() - started) / 1000);
    } else {
      rps = (await redisBenchmark(proxy.port, { requests: REQUESTS, pipeline: PIPELINE, tests: 'set' })).rps.SET;
    }
    const cpuUs = ((cpuSeconds(redis.child.process.pid) - before) * 1e6) / REQUESTS;
    const stats = commandStats(await cli(redis.port, 'INFO', 'commandstats'));
    if (round === 0) continue; // warm-up
    rounds.push({ rps, cpuUs, stats });
    console.log(`  round ${round}: ${Math.round(rps)} rps, Redis CPU ${cpuUs.toFixed(2)} µs per write, FCALL ${(stats.get('fcall').usec / stats.get('fcall').calls).toFixed(2)} µs per call`);
  }
  const names = [...rounds[0].stats.keys()].filter((name) => !['info', 'config|resetstat', 'del'].includes(name));
  const writes = (r) => r.stats.get('fcall').calls;
  console.log(`\n-P ${PIPELINE}, -c 50, ${REQUESTS} writes per round, medians of ${ROUNDS} rounds`);
  console.log(`rps ${Math.round(median(rounds.map((r) => r.rps)))}; Redis CPU ${median(rounds.map((r) => r.cpuUs)).toFixed(2)} µs per write`);
  console.log('| command | calls per write | µs per write |');
  console.log('|---|---:|---:|');
  for (const name of names) {
    const calls = median(rounds.map((r) => (r.stats.get(name)?.calls ?? 0) / writes(r)));
    const usec = median(rounds.map((r) => (r.stats.get(name)?.usec ?? 0) / writes(r)));
    console.log(`| ${name} | ${calls.toFixed(2)} | ${usec.toFixed(2)} |`);
  }
} finally {
  await cleanup();
}
