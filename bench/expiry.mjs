// Expiry latency: from a key's deadline to its `expired` event in the list, for 10,000 keys with
// random TTLs, side by side with Redis's own `expired` publication for the same keys, plus what
// reporting expirations costs Redis in CPU. Run: npm run build && node bench/expiry.mjs
// Env: EXPIRY_KEYS (default 10000), EXPIRY_MIN_MS / EXPIRY_MAX_MS (default 1000 / 6000).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { DEFAULTS } from '../dist/config.js';
import { internalNames } from '../dist/notify/names.js';

const KEYS = Number(process.env.EXPIRY_KEYS ?? 10_000);
const MIN_MS = Number(process.env.EXPIRY_MIN_MS ?? 1000);
const MAX_MS = Number(process.env.EXPIRY_MAX_MS ?? 6000);

const freePort = () =>
  new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForRedis(port) {
  for (let i = 0; i < 200; i++) {
    const probe = new Redis(port, { lazyConnect: true, retryStrategy: null });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      return;
    } catch {
      probe.disconnect();
      await sleep(25);
    }
  }
  throw new Error(`nothing on ${port}`);
}

const children = [];
const dir = mkdtempSync(join(tmpdir(), 'notifylist-bench-expiry-'));
function cleanup() {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanup);

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function cpuSeconds(info) {
  const user = Number(/used_cpu_user:([\d.]+)/.exec(info)[1]);
  const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)[1]);
  return user + sys;
}

function commandStat(info, name) {
  const match = new RegExp(`cmdstat_${name}:calls=(\\d+),usec=(\\d+)`).exec(info);
  return match ? { calls: Number(match[1]), usec: Number(match[2]) } : { calls: 0, usec: 0 };
}

async function main() {
  const redisPort = await freePort();
  const proxyPort = await freePort();
  children.push(spawn('redis-server', ['--port', String(redisPort), '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' }));
  await waitForRedis(redisPort);
  children.push(spawn(process.execPath, ['dist/cli.js', '--port', String(proxyPort), '--upstream', `redis://127.0.0.1:${redisPort}`], { stdio: 'ignore' }));
  await waitForRedis(proxyPort);

  const direct = new Redis(redisPort);
  const client = new Redis(proxyPort);
  await client.call('NOTIFYLIST.SET', 'lat:*', 'lat_events');

  // Redis clock vs ours: deadlines are on Redis's clock.
  const before = Date.now();
  const [seconds, micros] = await direct.time();
  const offset = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - (before + Date.now()) / 2;

  // Oracle: when Redis itself publishes `expired` for the same keys, on a second Redis that has
  // no proxy in front (on the first one, the reaper's touch makes Redis publish at once).
  const plainPort = await freePort();
  children.push(spawn('redis-server', ['--port', String(plainPort), '--save', '', '--appendonly', 'no', '--dir', dir, '--notify-keyspace-events', 'Ex'], { stdio: 'ignore' }));
  await waitForRedis(plainPort);
  const plain = new Redis(plainPort);
  const published = new Map();
  const subscriber = new Redis(plainPort);
  await subscriber.psubscribe('__keyevent@0__:expired');
  subscriber.on('pmessage', (_p, _c, key) => {
    if (!published.has(key)) published.set(key, Date.now());
  });

  // Consumer: when each `expired` event reaches the list.
  const delivered = new Map();
  const consumer = new Redis(redisPort);
  let consuming = true;
  const consumerLoop = (async () => {
    while (consuming) {
      const batch = await consumer.lpop('lat_events', 1000);
      if (!batch) {
        await sleep(1);
        continue;
      }
      const now = Date.now();
      for (const entry of batch) {
        const event = JSON.parse(entry);
        if (event.op === 'expired' && !delivered.has(event.key)) delivered.set(event.key, now);
      }
    }
  })();

  // The same absolute deadlines on both servers (same machine, same clock).
  const base = Date.now() + 200;
  const pipeline = client.pipeline();
  const plainPipeline = plain.pipeline();
  for (let i = 0; i < KEYS; i++) {
    const deadline = String(base + MIN_MS + Math.floor(Math.random() * (MAX_MS - MIN_MS)));
    pipeline.set(`lat:${i}`, '1', 'PXAT', deadline);
    plainPipeline.set(`lat:${i}`, '1', 'PXAT', deadline);
  }
  await Promise.all([pipeline.exec(), plainPipeline.exec()]);
  const scores = await direct.zrange(internalNames(DEFAULTS.prefix).expiry, 0, -1, 'WITHSCORES');
  const deadlines = new Map();
  for (let i = 0; i < scores.length; i += 2) deadlines.set(scores[i], Number(scores[i + 1]) - offset);

  const infoBefore = await direct.info('all');
  const phaseStart = Date.now();
  while (delivered.size < KEYS && Date.now() - phaseStart < MAX_MS + 10_000) await sleep(50);
  await sleep(300);
  const infoAfter = await direct.info('all');
  consuming = false;
  await consumerLoop;

  const latencies = (times) =>
    [...deadlines].filter(([key]) => times.has(key)).map(([key, deadline]) => times.get(key) - deadline).sort((a, b) => a - b);
  const proxyLatency = latencies(delivered);
  const redisLatency = latencies(published);
  const row = (name, values) =>
    `| ${name} | ${values.length}/${KEYS} | ${percentile(values, 50).toFixed(0)} | ${percentile(values, 99).toFixed(0)} | ${values[values.length - 1].toFixed(0)} |`;
  const fcall = { after: commandStat(infoAfter, 'fcall'), before: commandStat(infoBefore, 'fcall') };
  const zrange = { after: commandStat(infoAfter, 'zrange'), before: commandStat(infoBefore, 'zrange') };
  const reportingUsec = fcall.after.usec - fcall.before.usec + (zrange.after.usec - zrange.before.usec);
  const cpu = cpuSeconds(infoAfter) - cpuSeconds(infoBefore);
  const phaseSeconds = (Date.now() - phaseStart) / 1000;

  const lines = [
    `Expiry latency, ${KEYS} keys, TTL ${MIN_MS}-${MAX_MS} ms (ms from the key's deadline):`,
    '',
    '| path | keys seen | p50 | p99 | max |',
    '|---|---|---|---|---|',
    row('`expired` event in the list (proxy)', proxyLatency),
    row("Redis's own `expired` publication (same keys, Redis alone)", redisLatency),
    '',
    `Reporting cost in Redis: ${fcall.after.calls - fcall.before.calls} FCALL + ${zrange.after.calls - zrange.before.calls} ZRANGE calls, ` +
      `${(reportingUsec / 1000).toFixed(1)} ms of command time (${(reportingUsec / KEYS).toFixed(1)} µs per expiry); ` +
      `Redis CPU over the ${phaseSeconds.toFixed(1)} s expiry phase: ${(cpu * 1000).toFixed(0)} ms (includes Redis's own expiry work).`,
  ];
  console.log(lines.join('\n'));
  for (const connection of [direct, client, plain, subscriber, consumer]) connection.disconnect();
  cleanup();
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  cleanup();
  process.exit(1);
});
