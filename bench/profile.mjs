// CPU profile of the proxy under SET load with a registration matching every key (every SET is
// rewritten to FCALL and emits an event): starts redis-server and `node --cpu-prof dist/cli.js`,
// registers `NOTIFYLIST.SET key:* bench_events`, runs redis-benchmark -t set, stops the proxy with
// SIGINT (so node writes the .cpuprofile), and prints the top functions by self time with file:line.
//
// Environment:
//   PROFILE_REQUESTS   requests (default 1000000)
//   PROFILE_PIPELINE   -P (default 16)
//   PROFILE_TESTS      redis-benchmark -t (default set)
//   PROFILE_EVENTS     1 (default) registers key:*; 0 profiles plain forwarding
//   PROFILE_TOP        rows to print (default 25)
//   PROFILE_KEEP       a path to copy the .cpuprofile to (open it in Chrome DevTools)
//   or: node bench/profile.mjs <file.cpuprofile>   only summarizes an existing profile
//
// Usage: npm run build && node bench/profile.mjs
import { copyFileSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  ROOT, cleanup, cli, cpuSeconds, machineInfo, makeTempDir, redisBenchmark, sleep, startProxy, startRedis, stopChild,
} from './lib.mjs';

const REQUESTS = Number(process.env.PROFILE_REQUESTS ?? '1000000');
const PIPELINE = Number(process.env.PROFILE_PIPELINE ?? '16');
const TESTS = process.env.PROFILE_TESTS ?? 'set';
const EVENTS = (process.env.PROFILE_EVENTS ?? '1') !== '0';
const TOP = Number(process.env.PROFILE_TOP ?? '25');
const log = (line) => process.stdout.write(`${line}\n`);

function displayUrl(url) {
  if (!url) return '';
  let file = url.startsWith('file://') ? new URL(url).pathname : url;
  if (file.startsWith(ROOT + path.sep)) file = path.relative(ROOT, file);
  return file;
}

/** Self time per function (name + file + line), from samples and their time deltas. */
export function summarize(profile, top = TOP) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map();
  const { samples = [], timeDeltas = [] } = profile;
  for (let i = 0; i < samples.length; i++) {
    // timeDeltas[i] is the time before sample i; attribute the following interval to sample i.
    const delta = timeDeltas[i + 1] ?? 0;
    selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, delta));
  }
  const byFunction = new Map();
  const byFile = new Map();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const { callFrame } = byId.get(id);
    totalUs += us;
    if (callFrame.functionName === '(idle)') idleUs += us;
    const file = displayUrl(callFrame.url);
    const name = callFrame.functionName || '(anonymous)';
    const where = file ? `${file}:${callFrame.lineNumber + 1}` : '';
    const key = `${name}\u0000${where}`;
    const entry = byFunction.get(key) ?? { name, where, us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
    const fileKey = file || name;
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs;
  const pct = (us, of) => `${((100 * us) / of).toFixed(1).padStart(5)}%`;
  const lines = [];
  lines.push(`profile: ${(totalUs / 1e6).toFixed(2)} s sampled, ${(idleUs / 1e6).toFixed(2)} s idle, ${(busyUs / 1e6).toFixed(2)} s busy (${pct(busyUs, totalUs).trim()} of wall time)`);
  lines.push('');
  lines.push(`top ${top} functions by self time (% of busy time)`);
  lines.push(`${'self ms'.padStart(9)} ${'busy%'.padStart(6)}  function  (file:line)`);
  const functions = [...byFunction.values()].filter((e) => e.name !== '(idle)').sort((a, b) => b.us - a.us);
  for (const entry of functions.slice(0, top)) {
    lines.push(`${(entry.us / 1000).toFixed(1).padStart(9)} ${pct(entry.us, busyUs)}  ${entry.name}${entry.where ? `  (${entry.where})` : ''}`);
  }
  lines.push('');
  lines.push('self time by file (top 12, % of busy time)');
  const files = [...byFile.entries()].filter(([f]) => f !== '(idle)').sort((a, b) => b[1] - a[1]);
  for (const [file, us] of files.slice(0, 12)) lines.push(`${(us / 1000).toFixed(1).padStart(9)} ${pct(us, busyUs)}  ${file}`);
  return lines.join('\n');
}

async function profileRun() {
  const info = machineInfo();
  log(`machine: nproc ${info.nproc}, ${info.cpuModel}; node ${info.node}; redis ${info.redis} (no pinning: all processes share the cores)`);
  const dir = makeTempDir('notifylist-profile-');
  const redis = await startRedis(dir);
  const proxy = await startProxy(redis.port, { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir] });
  log(`redis-server 127.0.0.1:${redis.port}, proxy (node --cpu-prof) 127.0.0.1:${proxy.port}`);
  if (EVENTS) {
    const reply = await cli(proxy.port, 'NOTIFYLIST.SET', 'key:*', 'bench_events');
    if (reply !== 'OK') throw new Error(`NOTIFYLIST.SET replied ${reply}`);
    await sleep(200);
  }
  log(`redis-benchmark -c 50 -n ${REQUESTS} -r 100000 -P ${PIPELINE} -t ${TESTS}${EVENTS ? ' (registration key:* -> bench_events)' : ' (no registrations)'}`);
  await cli(redis.port, 'CONFIG', 'RESETSTAT');
  const before = { redis: cpuSeconds(redis.child.process.pid), proxy: cpuSeconds(proxy.child.process.pid) };
  const { rps, seconds } = await redisBenchmark(proxy.port, { clients: 50, requests: REQUESTS, pipeline: PIPELINE, tests: TESTS });
  const after = { redis: cpuSeconds(redis.child.process.pid), proxy: cpuSeconds(proxy.child.process.pid) };
  const events = Number(await cli(redis.port, 'LLEN', 'bench_events'));
  log(`${Object.entries(rps).map(([t, v]) => `${t} ${Math.round(v)} rps`).join(', ')} in ${seconds.toFixed(1)} s; ${events} events`);
  if (before.redis !== null && after.redis !== null) {
    const share = (name) => `${(after[name] - before[name]).toFixed(2)} s CPU (${((100 * (after[name] - before[name])) / seconds).toFixed(0)}% of one core)`;
    log(`during the benchmark: redis-server ${share('redis')}, proxy ${share('proxy')}`);
  }
  const stats = (await cli(redis.port, 'INFO', 'commandstats')).split('\n').filter((l) => l.startsWith('cmdstat_'))
    .map((l) => /^cmdstat_([^:]+):calls=(\d+),usec=(\d+),usec_per_call=([0-9.]+)/.exec(l.trim())).filter(Boolean)
    .sort((a, b) => Number(b[3]) - Number(a[3])).slice(0, 4);
  log(`redis commandstats (top by total time): ${stats.map((m) => `${m[1]} ${m[2]} calls, ${(Number(m[3]) / 1e6).toFixed(2)} s, ${m[4]} us/call`).join('; ')}`);
  await stopChild(proxy.child, 'SIGINT', 15_000);
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`the proxy wrote no .cpuprofile (exit ${proxy.child.exitCode ?? proxy.child.exitSignal})`);
  const full = path.join(dir, file);
  if (process.env.PROFILE_KEEP) {
    copyFileSync(full, process.env.PROFILE_KEEP);
    log(`profile copied to ${process.env.PROFILE_KEEP}`);
  }
  log('');
  log(summarize(JSON.parse(readFileSync(full, 'utf8'))));
}

try {
  if (process.argv[2]) log(summarize(JSON.parse(readFileSync(process.argv[2], 'utf8'))));
  else await profileRun();
} catch (error) {
  process.stderr.write(`profile: ${error.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
