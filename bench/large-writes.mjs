// Large MSET / DEL of registered keys: time through the proxy (one function call that writes every
// key and pushes one event per key) against the plain command sent to Redis directly.
// Run: npm run build && node bench/large-writes.mjs
// Env: LARGE_N (comma-separated key counts, default 200000,500000), LARGE_ROUNDS (default 3).
// Prints per N the median wall time seen by the client and the time Redis spent in the command
// (INFO commandstats), which is how long other clients wait (BUSY past lua-time-limit).
import { Redis } from 'ioredis';
import { cleanup, makeTempDir, median, startProxy, startRedis } from './lib.mjs';

const SIZES = (process.env.LARGE_N ?? '200000,500000').split(',').map(Number);
const ROUNDS = Number(process.env.LARGE_ROUNDS ?? 3);

/** usec Redis has spent in each command so far (cmdstat_<name>). */
async function commandUsec(redis) {
  const stats = await redis.info('commandstats');
  const usec = {};
  for (const match of stats.matchAll(/^cmdstat_([^:]+):calls=\d+,usec=(\d+)/gm)) usec[match[1]] = Number(match[2]);
  return usec;
}

/** Runs `send` and returns [wall ms, ms Redis spent in `command`]. */
async function timed(observer, command, send) {
  const before = await commandUsec(observer);
  const start = process.hrtime.bigint();
  await send();
  const wall = Number(process.hrtime.bigint() - start) / 1e6;
  const after = await commandUsec(observer);
  return [wall, ((after[command] ?? 0) - (before[command] ?? 0)) / 1000];
}

async function main() {
  const dir = makeTempDir();
  const redis = await startRedis(dir);
  const proxy = await startProxy(redis.port, { nodeArgs: process.env.PROXY_NODE_ARGS ? process.env.PROXY_NODE_ARGS.split(' ') : [] });
  const direct = new Redis(redis.port, { retryStrategy: () => null });
  const viaProxy = new Redis(proxy.port, { retryStrategy: () => null });
  await viaProxy.call('NOTIFYLIST.SET', 'lw:*', 'lw_events');
  await direct.call('CONFIG', 'SET', 'lua-time-limit', '60000'); // no BUSY replies to our own probes

  console.log(`large writes of registered keys, median of ${ROUNDS} rounds (wall ms as the client sees it / ms inside Redis)`);
  console.log('| N | MSET direct | MSET proxy (events) | ratio | DEL direct | DEL proxy | ratio |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|');
  for (const n of SIZES) {
    const args = [];
    const keys = [];
    for (let i = 0; i < n; i++) {
      keys.push(`lw:${i}`);
      args.push(`lw:${i}`, 'v');
    }
    const results = { msetDirect: [], msetProxy: [], delDirect: [], delProxy: [] };
    for (let round = 0; round < ROUNDS; round++) {
      await direct.del('lw_events');
      results.msetDirect.push(await timed(direct, 'mset', () => direct.mset(args)));
      results.delDirect.push(await timed(direct, 'del', () => direct.del(keys)));
      results.msetProxy.push(await timed(direct, 'fcall', () => viaProxy.mset(args)));
      const events = await direct.llen('lw_events');
      if (events !== n) throw new Error(`expected ${n} events, got ${events}`);
      results.delProxy.push(await timed(direct, 'fcall', () => viaProxy.del(keys)));
      if ((await direct.exists(keys[0], keys[n - 1])) !== 0) throw new Error('DEL through the proxy left keys');
    }
    const cell = (samples) => `${median(samples.map((s) => s[0])).toFixed(0)} / ${median(samples.map((s) => s[1])).toFixed(0)}`;
    const ratio = (a, b) => (median(results[a].map((s) => s[0])) / median(results[b].map((s) => s[0]))).toFixed(2);
    console.log(
      `| ${n} | ${cell(results.msetDirect)} | ${cell(results.msetProxy)} | ${ratio('msetProxy', 'msetDirect')}x | ${cell(results.delDirect)} | ${cell(results.delProxy)} | ${ratio('delProxy', 'delDirect')}x |`,
    );
  }
  direct.disconnect();
  viaProxy.disconnect();
}


main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
