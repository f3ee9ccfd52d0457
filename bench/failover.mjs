// Failover window: how long writes fail when the master of a Sentinel group dies (SIGKILL), or is
// switched with SENTINEL FAILOVER, for a client writing through the proxy (`--sentinel`) and, in
// the same failover, a Sentinel-aware client connected directly (ioredis with `sentinels`). Both
// clients use ioredis's defaults otherwise. Window: from the kill (or the FAILOVER command) to the
// completion of the first write sent after it that succeeded; also the longest write, and how many
// writes succeeded but are not on the new master (lost with the old master).
// Run: npm run build && node bench/failover.mjs
// Env: FAILOVER_ROUNDS (default 3 of each kind), FAILOVER_DOWN_AFTER_MS (default 1000),
//      FAILOVER_KINDS (default "kill,graceful").
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { cleanup, freePort, makeTempDir, machineInfo, median, ROOT, sleep, spawnTracked, stopChild } from './lib.mjs';

const ROUNDS = Number(process.env.FAILOVER_ROUNDS ?? 3);
const DOWN_AFTER_MS = Number(process.env.FAILOVER_DOWN_AFTER_MS ?? 1000);
const KINDS = (process.env.FAILOVER_KINDS ?? 'kill,graceful').split(',');
const MASTER = 'mymaster';

async function until(probe, what, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A short-lived connection for one question. */
async function ask(port, ...command) {
  const redis = new Redis(port, { retryStrategy: null, maxRetriesPerRequest: 0, lazyConnect: true });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await redis.call(...command);
  } finally {
    redis.disconnect();
  }
}

async function startServer(dir, name, extra = []) {
  const port = await freePort();
  const child = spawnTracked(`${name}:${port}`, 'redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', ...extra,
  ]);
  await until(() => ask(port, 'PING'), `${name} on ${port}`);
  return { port, child };
}

/** Master, replica, three sentinels (the settings of test/helpers/sentinel-group.ts). */
async function startGroup() {
  const dir = makeTempDir('notifylist-failover-');
  const master = await startServer(dir, 'master', ['--dbfilename', 'master.rdb']);
  const replica = await startServer(dir, 'replica', ['--dbfilename', 'replica.rdb', '--replicaof', '127.0.0.1', String(master.port)]);
  await until(async () => String(await ask(replica.port, 'INFO', 'replication')).includes('master_link_status:up'), 'replication');
  const sentinels = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const conf = path.join(dir, `sentinel-${i}.conf`);
    writeFileSync(conf, [
      `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
      `sentinel monitor ${MASTER} 127.0.0.1 ${master.port} 2`,
      `sentinel down-after-milliseconds ${MASTER} ${DOWN_AFTER_MS}`,
      `sentinel failover-timeout ${MASTER} 3000`,
    ].join('\n') + '\n');
    const child = spawnTracked(`sentinel:${port}`, 'redis-server', [conf, '--sentinel']);
    await until(() => ask(port, 'PING'), `sentinel on ${port}`);
    await ask(port, 'SENTINEL', 'DEBUG', 'info-period', '200', 'publish-period', '200', 'ask-period', '200', 'tilt-period', '1000');
    sentinels.push({ port, child });
  }
  for (const sentinel of sentinels) {
    await until(async () => {
      const reply = await ask(sentinel.port, 'SENTINEL', 'MASTER', MASTER);
      const fields = new Map();
      for (let i = 0; i < reply.length; i += 2) fields.set(reply[i], reply[i + 1]);
      return fields.get('num-slaves') === '1' && fields.get('num-other-sentinels') === '2';
    }, 'sentinels to settle');
  }
  return { master, replica, sentinels, servers: [master, replica] };
}

async function startProxy(group) {
  const port = await freePort();
  const child = spawnTracked(`notifylist-proxy:${port}`, process.execPath, [
    path.join(ROOT, 'dist', 'cli.js'), '--port', String(port),
    '--sentinel', group.sentinels.map((s) => `127.0.0.1:${s.port}`).join(','), '--sentinel-master', MASTER,
  ]);
  await until(async () => child.output.includes('listening'), 'the proxy');
  return { port, child };
}

/** Writes in a loop; records each write's key, send time, completion time and outcome. */
function writer(redis, prefix) {
  const writes = [];
  let stopping = false;
  let n = 0;
  redis.on('error', () => undefined);
  const done = (async () => {
    while (!stopping) {
      const key = `${prefix}${n++}`;
      const sent = Date.now();
      try {
        await redis.set(key, 'v', 'PX', 60_000);
        writes.push({ key, sent, done: Date.now(), ok: true });
      } catch {
        writes.push({ key, sent, done: Date.now(), ok: false });
        await sleep(5);
      }
      await sleep(2);
    }
  })();
  return {
    writes,
    async stop() {
      stopping = true;
      await done;
      redis.disconnect();
    },
  };
}

/**
 * What one writer saw, from the kill (or FAILOVER command) at `t`: the window until a write sent
 * after it succeeded, the longest any write in flight at t or sent after it took, the writes that
 * failed, and the writes that succeeded but are not on the new master (lost).
 */
async function outcome(writes, t, newMasterPort) {
  const redis = new Redis(newMasterPort);
  const pipeline = redis.pipeline();
  for (const write of writes) pipeline.exists(write.key);
  const present = (await pipeline.exec()).map(([, n]) => n === 1);
  redis.disconnect();
  const after = writes.map((write, i) => ({ ...write, present: present[i] })).filter((write) => write.sent >= t);
  const firstOk = after.find((write) => write.ok);
  return {
    window: firstOk ? firstOk.done - t : null,
    // Also the write in flight at t (with the offline queue a write waits rather than fails).
    longest: Math.max(...writes.filter((write) => write.done >= t).map((write) => write.done - write.sent)),
    failed: after.filter((write) => !write.ok).length,
    lost: writes.filter((write, i) => write.ok && !present[i]).length,
  };
}

async function round(kind) {
  const group = await startGroup();
  const proxy = await startProxy(group);
  const viaProxy = writer(new Redis(proxy.port), 'p:');
  const direct = writer(new Redis({ sentinels: group.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), name: MASTER }), 'd:');
  await sleep(1500);
  let at = Date.now();
  if (kind === 'kill') {
    await stopChild(group.master.child, 'SIGKILL');
    at = Date.now(); // the master is gone (its process has exited)
  } else {
    await ask(group.sentinels[0].port, 'SENTINEL', 'FAILOVER', MASTER);
  }
  // Until the sentinels name the replica, and both writers have written there for a while.
  await until(async () => {
    const reply = await ask(group.sentinels[0].port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER);
    return Number(reply[1]) === group.replica.port;
  }, 'the sentinels to promote the replica', 60_000);
  await sleep(kind === 'kill' ? 1000 : 5000); // graceful: until Sentinel has demoted the old master
  await Promise.all([viaProxy.stop(), direct.stop()]);
  const result = {
    proxy: await outcome(viaProxy.writes, at, group.replica.port),
    direct: await outcome(direct.writes, at, group.replica.port),
  };
  await stopChild(proxy.child);
  for (const child of [...group.sentinels, ...group.servers].map((s) => s.child)) await stopChild(child, 'SIGKILL');
  return result;
}

const describe = (o) => `failing ${o.window} ms, longest write ${o.longest} ms, ${o.failed} failed, ${o.lost} lost`;

async function main() {
  console.log(`failover window, ${ROUNDS} round(s) per kind, down-after-milliseconds ${DOWN_AFTER_MS}`);
  const machine = machineInfo();
  console.log(`${machine.nproc} cores (${machine.cpuModel}), Node ${machine.node}, Redis ${machine.redis}`);
  const table = [];
  for (const kind of KINDS) {
    const results = [];
    for (let i = 0; i < ROUNDS; i++) {
      const result = await round(kind);
      results.push(result);
      console.log(`${kind} round ${i + 1}: through the proxy: ${describe(result.proxy)}; ioredis with sentinels, direct: ${describe(result.direct)}`);
    }
    table.push({ kind, results });
  }
  const column = (results, side, field) => {
    const values = results.map((r) => r[side][field]);
    return `${median(values)} (${values.join(', ')})`;
  };
  console.log('\nmedian (each round), ms and writes:');
  console.log('| failover | client | until a write succeeds (ms) | longest write (ms) | failed writes | lost writes |');
  console.log('|---|---|---:|---:|---:|---:|');
  for (const { kind, results } of table) {
    const label = kind === 'kill' ? 'SIGKILL of the master' : 'SENTINEL FAILOVER';
    for (const [side, name] of [['proxy', 'through the proxy'], ['direct', 'ioredis with `sentinels`, direct']]) {
      console.log(`| ${label} | ${name} | ${column(results, side, 'window')} | ${column(results, side, 'longest')} | ${column(results, side, 'failed')} | ${column(results, side, 'lost')} |`);
    }
  }
}

main().then(
  () => cleanup(),
  async (error) => {
    console.error(error);
    await cleanup();
    process.exit(1);
  },
);
