// Shared helpers for bench/run.mjs and bench/profile.mjs: free ports, tracked child processes
// (always stopped on exit, even on error or Ctrl-C), redis-server / proxy / nutcracker start-up,
// redis-cli and redis-benchmark calls. Plain Node ESM, no dependencies.
import { spawn, spawnSync, execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(BENCH_DIR, '..');

const children = new Set();
const tempDirs = new Set();
/** Short-lived programs (redis-cli, redis-benchmark) still running. */
const helpers = new Set();
let cleanedUp = false;

/** Stop every tracked child (SIGTERM, then SIGKILL after a grace period) and remove temp dirs. */
export async function cleanup() {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const proc of helpers) {
    try { proc.kill('SIGTERM'); } catch { /* gone */ }
  }
  await Promise.all([...children].map((child) => stopChild(child, 'SIGTERM', 5000)));
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}

function cleanupSync() {
  for (const proc of helpers) {
    try { proc.kill('SIGKILL'); } catch { /* gone */ }
  }
  for (const child of children) {
    try { child.process.kill('SIGKILL'); } catch { /* already gone */ }
  }
  for (const dir of tempDirs) {
    try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
  }
}

process.on('exit', cleanupSync);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping everything\n`);
    cleanup().finally(() => process.exit(130));
  });
}

export function makeTempDir(prefix = 'notifylist-bench-') {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

const usedPorts = new Set([6379]);
/** A port the OS reports free on 127.0.0.1 (never 6379, never handed out twice by this process). */
export async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const server = net.createServer();
      server.unref();
      server.on('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port: p } = server.address();
        server.close(() => resolve(p));
      });
    });
    if (!usedPorts.has(port)) {
      usedPorts.add(port);
      return port;
    }
  }
}

/** Spawn a tracked child; keeps the last 64 KiB of its stdout+stderr for error messages. */
export function spawnTracked(name, command, args, options = {}) {
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const child = { name, process: proc, output: '', exited: false, exitCode: null, exitSignal: null };
  const keep = (chunk) => {
    child.output += chunk.toString();
    if (child.output.length > 65536) child.output = child.output.slice(-65536);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  child.exitPromise = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      child.exited = true;
      child.exitCode = code;
      child.exitSignal = signal;
      children.delete(child);
      resolve();
    });
    proc.on('error', (error) => {
      child.exited = true;
      child.output += `\nspawn error: ${error.message}`;
      children.delete(child);
      resolve();
    });
  });
  children.add(child);
  return child;
}

/** Send a signal to one child (by its own pid) and wait for it, escalating to SIGKILL. */
export async function stopChild(child, signal = 'SIGTERM', graceMs = 5000) {
  if (child.exited) return;
  try { child.process.kill(signal); } catch { /* gone */ }
  let timer;
  const timedOut = await Promise.race([
    child.exitPromise.then(() => false),
    new Promise((resolve) => { timer = setTimeout(() => resolve(true), graceMs); }),
  ]);
  clearTimeout(timer);
  if (timedOut && !child.exited) {
    try { child.process.kill('SIGKILL'); } catch { /* gone */ }
    await child.exitPromise;
  }
}

function describeFailure(child, what) {
  return new Error(`${what}\n--- ${child.name} output ---\n${child.output.trim()}\n---`);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Run a program, resolve with stdout (rejects on a non-zero exit or timeout). */
export function run(command, args, { timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = execFile(command, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      helpers.delete(proc);
      if (error) {
        error.message += `\n${stderr}`;
        reject(error);
      } else {
        resolve(stdout);
      }
    });
    helpers.add(proc);
  });
}

/** redis-cli against a port; returns the trimmed raw reply text. */
export async function cli(port, ...args) {
  return (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeoutMs: 20_000 })).trim();
}

async function waitForPong(port, child, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exited) throw describeFailure(child, `${what} exited during start-up`);
    try {
      if ((await cli(port, 'PING')) === 'PONG') return;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw describeFailure(child, `${what} did not answer PING within ${timeoutMs} ms`);
    await sleep(50);
  }
}

export function hasBinary(name, versionArgs = ['--version']) {
  const result = spawnSync(name, versionArgs, { encoding: 'utf8' });
  if (result.error) return null;
  return `${result.stdout}${result.stderr}`.trim();
}

/** A redis-server on a free port, no persistence. */
export async function startRedis(dir) {
  const port = await freePort();
  const child = spawnTracked(`redis-server:${port}`, 'redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no', '--logfile', '',
  ]);
  await waitForPong(port, child, `redis-server on port ${port}`);
  return { port, child };
}

/** The proxy from dist/ (`node [nodeArgs] dist/cli.js`), ready once it prints its 'listening' line. */
export async function startProxy(redisPort, { nodeArgs = [], extraArgs = [], cwd = ROOT, timeoutMs = 30_000, cliPath = path.join(ROOT, 'dist', 'cli.js') } = {}) {
  const port = await freePort();
  const child = spawnTracked(`notifylist-proxy:${port}`, process.execPath, [
    ...nodeArgs, cliPath,
    '--port', String(port), '--upstream', `redis://127.0.0.1:${redisPort}`, ...extraArgs,
  ], { cwd });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(describeFailure(child, `proxy did not print 'listening' within ${timeoutMs} ms`)), timeoutMs);
    const onData = () => {
      if (/listening/.test(child.output)) {
        clearTimeout(timer);
        child.process.stdout.off('data', onData);
        resolve();
      }
    };
    child.process.stdout.on('data', onData);
    child.exitPromise.then(() => {
      clearTimeout(timer);
      reject(describeFailure(child, 'proxy exited during start-up'));
    });
    onData();
  });
  return { port, child };
}

/** twemproxy (nutcracker) with one redis pool pointing at redisPort; null when not installed. */
export async function startTwemproxy(redisPort, dir) {
  if (hasBinary('nutcracker') === null) return null;
  const port = await freePort();
  const statsPort = await freePort();
  const config = path.join(dir, 'nutcracker.yml');
  writeFileSync(config, [
    'bench:',
    `  listen: 127.0.0.1:${port}`,
    '  redis: true',
    '  hash: fnv1a_64',
    '  distribution: ketama',
    '  preconnect: true',
    '  auto_eject_hosts: false',
    '  servers:',
    `   - 127.0.0.1:${redisPort}:1`,
    '',
  ].join('\n'));
  const child = spawnTracked(`nutcracker:${port}`, 'nutcracker', [
    '-c', config, '-a', '127.0.0.1', '-s', String(statsPort), '-v', '4',
  ]);
  await waitForPong(port, child, `nutcracker on port ${port}`);
  return { port, child };
}

/**
 * One redis-benchmark invocation; returns { rps: { SET: n, GET: n, ... }, seconds }.
 * CSV output: a header line, then "TEST","rps",... per test.
 */
export async function redisBenchmark(port, { clients = 50, requests, pipeline, tests = 'set,get', keyspace = 100000 }) {
  const started = process.hrtime.bigint();
  const stdout = await run('redis-benchmark', [
    '-h', '127.0.0.1', '-p', String(port), '-c', String(clients), '-n', String(requests),
    '-r', String(keyspace), '-P', String(pipeline), '-t', tests, '-q', '--csv',
  ], { timeoutMs: 30 * 60_000 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const rps = {};
  for (const line of stdout.split('\n')) {
    const match = /^"([^"]+)","([0-9.]+)"/.exec(line.trim());
    if (match) rps[match[1]] = Number(match[2]);
  }
  for (const test of tests.split(',')) {
    if (!(test.toUpperCase() in rps)) throw new Error(`redis-benchmark printed no result for ${test} on port ${port}:\n${stdout}`);
  }
  return { rps, seconds };
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); null elsewhere. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return null;
  }
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function machineInfo() {
  const cpus = os.cpus();
  const nproc = hasBinary('nproc', []) ?? String(os.availableParallelism());
  return {
    nproc: nproc.trim(),
    cpuModel: cpus[0]?.model?.trim() ?? 'unknown',
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis: (/v=(\S+)/.exec(hasBinary('redis-server') ?? '') ?? [, 'not found'])[1],
    redisBenchmark: hasBinary('redis-benchmark') ?? 'not found',
    nutcracker: (hasBinary('nutcracker') ?? 'not installed').split('\n')[0].replace(/^This is /, ''),
  };
}

/** The bare Node pipe (scripts/socket-pipe.mjs): one upstream connection per client, bytes copied
 * both ways; the floor of any Node proxy. Resolves once it answers PING. */
export async function startPipe(redisPort) {
  const port = await freePort();
  const child = spawnTracked(`socket-pipe:${port}`, process.execPath, [
    path.join(ROOT, 'scripts', 'socket-pipe.mjs'), '--port', String(port), '--upstream', `127.0.0.1:${redisPort}`,
  ]);
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exited) throw new Error(`socket-pipe exited during start-up:\n${child.output}`);
    try {
      if ((await cli(port, 'PING')) === 'PONG') break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error('socket-pipe did not answer PING');
    await sleep(50);
  }
  return { port, child };
}
