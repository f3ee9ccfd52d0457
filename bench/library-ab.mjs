// Redis's time per evented SET under the function library of each given build, on ONE redis-server
// behind one proxy (this checkout's dist/): each build's library (made with the deployment's own
// secret) is loaded in turn with FUNCTION LOAD REPLACE, then redis-benchmark SET -P 16 -c 50 runs
// through the proxy; the order flips every round. Steadier than bench/compare-builds.mjs (one
// redis-server per build) on a shared machine: the same process, caches and neighbours for both.
//
// Usage: npm run build && node bench/library-ab.mjs <checkout with dist/>...   (e.g. . /tmp/before)
//   BENCH_ROUNDS (default 6), BENCH_REQUESTS (default 200000), BENCH_OPTIONS registration options
//   (e.g. 'WITH value ts')
import path from 'node:path';
import { Redis } from 'ioredis';
import { DEFAULTS } from '../dist/config.js';
import { internalNames } from '../dist/notify/names.js';
import { cleanup, cli, cpuSeconds, machineInfo, makeTempDir, median, redisBenchmark, startProxy, startRedis } from './lib.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? '6');
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? '200000');
const OPTIONS = (process.env.BENCH_OPTIONS ?? '').split(' ').filter(Boolean);
const LIST = 'bench_events';

try {
  const builds = process.argv.slice(2).map((dir) => path.resolve(dir));
  if (builds.length === 0) throw new Error('usage: node bench/library-ab.mjs <checkout with dist/>...');
  console.log(`library A/B on one redis-server; ${JSON.stringify(machineInfo())}`);
  const redis = await startRedis(makeTempDir());
  const proxy = await startProxy(redis.port);
  console.log(`NOTIFYLIST.SET key:* ${LIST} ${OPTIONS.join(' ')}: ${await cli(proxy.port, 'NOTIFYLIST.SET', 'key:*', LIST, ...OPTIONS)}`);
  const direct = new Redis(redis.port);
  const secret = await direct.get(internalNames(DEFAULTS.prefix).secret);
  const libraries = [];
  for (const dir of builds) {
    const { librarySource } = await import(path.join(dir, 'dist', 'notify', 'control-plane.js'));
    libraries.push({ dir, source: librarySource(DEFAULTS.prefix, secret), us: [] });
  }
  // Warm-up (the proxy's JIT, connection set-up), not counted.
  await redisBenchmark(proxy.port, { clients: 50, requests: REQUESTS, pipeline: 16, tests: 'set' });
  for (let round = 0; round < ROUNDS; round++) {
    for (const library of round % 2 === 0 ? libraries : [...libraries].reverse()) {
      await direct.call('FUNCTION', 'LOAD', 'REPLACE', library.source);
      await direct.del(LIST);
      const before = cpuSeconds(redis.child.process.pid);
      await redisBenchmark(proxy.port, { clients: 50, requests: REQUESTS, pipeline: 16, tests: 'set' });
      library.us.push(((cpuSeconds(redis.child.process.pid) - before) * 1e6) / REQUESTS);
      if ((await direct.llen(LIST)) !== REQUESTS) throw new Error(`${library.dir}: not one event per SET`);
    }
  }
  console.log(`Redis CPU µs per evented SET, -P 16 -c 50, ${REQUESTS} per run, median of ${ROUNDS} (each run)`);
  for (const { dir, us } of libraries) console.log(`${median(us).toFixed(2).padStart(7)}  ${dir}  (${us.map((u) => u.toFixed(1)).join(' ')})`);
  direct.disconnect();
} catch (error) {
  process.stderr.write(`library-ab: ${error.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
