// The floor of a function per evented write: Redis's CPU time per call of plain SET and of small
// functions, on one redis-server of its own, with redis-benchmark -P 16 -c 50 straight to it
// (no proxy). The functions: an empty one; the same with the proxy's ten arguments; SET + RPUSH;
// and one running exactly the library's seven commands and two ACL checks for a plain evented SET
// (HGET registry, HGET targets, ZSCORE index, TYPE target, SET, RPUSH, HINCRBY), with no other logic.
// Interleaved rounds, medians. See README, "Benchmark".
//
// Usage: node bench/function-floor.mjs   (BENCH_ROUNDS default 3, BENCH_REQUESTS default 400000,
//   BENCH_PIPELINE default 16)
import { Redis } from 'ioredis';
import { cleanup, cpuSeconds, machineInfo, makeTempDir, median, run, startRedis } from './lib.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? '3');
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? '400000');
const PIPELINE = Number(process.env.BENCH_PIPELINE ?? '16');

const LIBRARY = `#!lua name=floor
redis.register_function('empty', function() return 1 end)
redis.register_function('set_push', function(keys, argv)
  redis.call('SET', keys[1], argv[#argv])
  redis.call('RPUSH', argv[5], keys[1])
  return redis.status_reply('OK')
end)
redis.register_function('same_commands', function(keys, argv)
  local key, list = keys[1], argv[5]
  redis.pcall('HGET', 'floor:registry', argv[4])
  redis.pcall('HGET', 'floor:targets', key)
  redis.pcall('ZSCORE', 'floor:expiry', key)
  redis.acl_check_cmd('hincrby', 'floor:stats', 'events', '1')
  redis.pcall('TYPE', list)
  redis.acl_check_cmd('rpush', list, 'x')
  local reply = redis.pcall('SET', key, argv[#argv])
  redis.call('RPUSH', list, '{"key":"' .. key .. '","op":"set"}')
  redis.pcall('HINCRBY', 'floor:stats', 'c:set', 1)
  return reply
end)`;

// The arguments the proxy sends with a plain evented SET: secret, spec, key index, pattern, list, SET, key, value.
const SECRET = 'f'.repeat(64);
const PROXY_ARGS = [SECRET, '1/2/c/0/0', '1', 'key:*', 'floor_events', 'SET', 'key:__rand_int__', 'xxx'];
const CASES = [
  { name: 'SET', command: ['SET', 'key:__rand_int__', 'xxx'] },
  { name: 'empty FCALL, 1 key 1 argument', command: ['FCALL', 'empty', '1', 'key:__rand_int__', 'xxx'] },
  { name: "empty FCALL, the proxy's arguments", command: ['FCALL', 'empty', '1', 'key:__rand_int__', ...PROXY_ARGS] },
  { name: 'SET + RPUSH', command: ['FCALL', 'set_push', '1', 'key:__rand_int__', ...PROXY_ARGS] },
  { name: "the library's 7 commands + 2 ACL checks", command: ['FCALL', 'same_commands', '1', 'key:__rand_int__', ...PROXY_ARGS] },
];

try {
  console.log(`function floor; ${JSON.stringify(machineInfo())}`);
  const redis = await startRedis(makeTempDir());
  const direct = new Redis(redis.port);
  await direct.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY);
  const us = new Map(CASES.map((c) => [c.name, []]));
  for (let round = 0; round < ROUNDS + 1; round++) {
    for (const c of round % 2 === 0 ? CASES : [...CASES].reverse()) {
      await direct.del('floor_events');
      const before = cpuSeconds(redis.child.process.pid);
      await run('redis-benchmark', ['-p', String(redis.port), '-c', '50', '-n', String(REQUESTS), '-P', String(PIPELINE), '-r', '100000', '-q', ...c.command], { timeoutMs: 600_000 });
      // (Round 0 warms up, not counted.)
      if (round > 0) us.get(c.name).push(((cpuSeconds(redis.child.process.pid) - before) * 1e6) / REQUESTS);
    }
  }
  console.log(`Redis CPU µs per call, -P ${PIPELINE} -c 50, ${REQUESTS} per run, median of ${ROUNDS}`);
  for (const [name, values] of us) console.log(`${median(values).toFixed(2).padStart(7)}  ${name}  (${values.map((v) => v.toFixed(1)).join(' ')})`);
  direct.disconnect();
} catch (error) {
  process.stderr.write(`function-floor: ${error.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
