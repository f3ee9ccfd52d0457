// Property test (fast-check): random sequences of TTL-changing writes through the proxy, waits,
// and SIGKILLs of the proxy process, against a model of the events each key must get:
// `set` for each successful set-family write, and `expired` exactly once for each incarnation
// whose TTL, set through the proxy, ran out. At the end (a proxy up, every deadline passed + 1.5 s)
// the event list must equal the model key by key, and the expiry index must be empty.
//
// Time is real. The model decides "did this incarnation run out before this command?" by the local
// clock (the same clock as Redis's: one machine); a command is never sent within a few ms of a
// deadline of a key it touches (the runner waits past the deadline first), so the decision is never
// a coin toss. A run in which a command took so long that the decision became ambiguous anyway is
// discarded (fc.pre), not failed.
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { ProxyProcess } from './helpers/proxy.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep } from './helpers/wait.js';

const LIST = 'events';
const INDEX = 'notifylist:expiry';
/** k* are registered; x1 is not (its TTL is set through the proxy but never reported). */
const KEYS = ['k1', 'k2', 'k3', 'x1'] as const;
type Key = (typeof KEYS)[number];
const matches = (key: string): boolean => key.startsWith('k');

type Command =
  | { t: 'setpx'; key: Key; ms: number }
  | { t: 'setex'; key: Key }
  | { t: 'set'; key: Key }
  | { t: 'expire'; key: Key }
  | { t: 'pexpire'; key: Key; ms: number }
  | { t: 'persist'; key: Key }
  | { t: 'del'; key: Key }
  | { t: 'rename'; from: Key; to: Key }
  | { t: 'wait'; ms: number }
  | { t: 'kill'; downMs: number };

const keyArb = fc.constantFrom<Key>('k1', 'k1', 'k2', 'k2', 'k3', 'x1');
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('setpx' as const), key: keyArb, ms: fc.integer({ min: 50, max: 600 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('setex' as const), key: keyArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('set' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('expire' as const), key: keyArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('pexpire' as const), key: keyArb, ms: fc.integer({ min: 50, max: 600 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('persist' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('del' as const), key: keyArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('rename' as const), from: keyArb, to: keyArb }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('wait' as const), ms: fc.integer({ min: 50, max: 400 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('kill' as const), downMs: fc.integer({ min: 0, max: 500 }) }) },
);
const sequenceArb = fc.array(commandArb, { minLength: 10, maxLength: 25 });

/**
 * Failing sequences found so far (shrunk), replayed first on every run, plus a few hand-written
 * ones for the interesting interleavings.
 */
const REGRESSIONS: Command[][] = [
  // Every deadline passes while no proxy runs; the restarted proxy reports each once.
  [
    { t: 'setpx', key: 'k1', ms: 100 },
    { t: 'setex', key: 'k2' },
    { t: 'kill', downMs: 500 },
    { t: 'wait', ms: 400 },
    { t: 'set', key: 'k1' },
    { t: 'wait', ms: 300 },
    { t: 'kill', downMs: 400 },
    { t: 'wait', ms: 100 },
    { t: 'rename', from: 'k2', to: 'k3' },
    { t: 'wait', ms: 50 },
  ],
  // The TTL travels through an unregistered key and back; PERSIST and DEL never report.
  [
    { t: 'setpx', key: 'k1', ms: 400 },
    { t: 'rename', from: 'k1', to: 'x1' },
    { t: 'rename', from: 'x1', to: 'k2' },
    { t: 'setpx', key: 'k3', ms: 200 },
    { t: 'persist', key: 'k3' },
    { t: 'pexpire', key: 'k1', ms: 100 },
    { t: 'setpx', key: 'k1', ms: 300 },
    { t: 'del', key: 'k1' },
    { t: 'wait', ms: 400 },
    { t: 'rename', from: 'k2', to: 'k1' },
  ],
  // A key re-written after its deadline, while a just-restarted proxy does not hold the lease yet.
  [
    { t: 'setpx', key: 'k1', ms: 60 },
    { t: 'kill', downMs: 0 },
    { t: 'setpx', key: 'k1', ms: 60 },
    { t: 'wait', ms: 100 },
    { t: 'set', key: 'k1' },
    { t: 'expire', key: 'k1' },
    { t: 'kill', downMs: 0 },
    { t: 'rename', from: 'k1', to: 'k2' },
    { t: 'wait', ms: 50 },
    { t: 'pexpire', key: 'k2', ms: 50 },
  ],
  // Found (shrunk) against a mutant that skipped the settle-before-write: k3 ran out while the
  // restarted proxy did not hold the reaper lease yet; the SETEX must report it before its `set`.
  [
    { t: 'wait', ms: 50 },
    { t: 'wait', ms: 50 },
    { t: 'setpx', key: 'k3', ms: 50 },
    { t: 'kill', downMs: 0 },
    { t: 'rename', from: 'k1', to: 'k1' },
    { t: 'setex', key: 'k3' },
    { t: 'pexpire', key: 'k1', ms: 50 },
    { t: 'rename', from: 'k1', to: 'k1' },
    { t: 'set', key: 'x1' },
    { t: 'wait', ms: 50 },
  ],
  // Found (shrunk) against a mutant whose PERSIST left the index entry: a stray `expired` for k3.
  [
    { t: 'setpx', key: 'k1', ms: 50 },
    { t: 'rename', from: 'k1', to: 'k1' },
    { t: 'rename', from: 'k1', to: 'k1' },
    { t: 'setpx', key: 'k3', ms: 50 },
    { t: 'persist', key: 'k3' },
    { t: 'pexpire', key: 'k1', ms: 50 },
    { t: 'setpx', key: 'k1', ms: 50 },
    { t: 'del', key: 'k1' },
    { t: 'wait', ms: 50 },
    { t: 'rename', from: 'k1', to: 'k1' },
  ],
];

interface KeyState {
  exists: boolean;
  /** Absolute deadline in ms (Redis's clock), or null without TTL. */
  deadline: number | null;
}

/** One Redis, one proxy process; runs one sequence at a time against the model. */
class Lane {
  redis!: RedisServer;
  proxy!: ProxyProcess;
  direct!: Redis;
  client: Redis | null = null;
  runs = 0;
  discarded = 0;

  async start(): Promise<void> {
    this.redis = await startRedis();
    this.direct = new Redis(this.redis.port);
    this.proxy = await new ProxyProcess(this.redis.url, ['--lease-ms', '600']).start();
  }

  async close(): Promise<void> {
    this.client?.disconnect();
    this.direct?.disconnect();
    await this.proxy?.kill();
    await this.redis?.destroy();
  }

  private connect(): Redis {
    if (!this.client) this.client = new Redis(this.proxy.port, { maxRetriesPerRequest: 1 });
    return this.client;
  }

  private async ensureUp(): Promise<void> {
    if (this.proxy.process === null) await this.proxy.start();
  }

  private async kill(downMs: number): Promise<void> {
    this.client?.disconnect();
    this.client = null;
    await this.proxy.kill();
    await sleep(downMs);
    await this.proxy.start();
  }

  /** Redis's deadline of a key (PEXPIRETIME), or null; a key already gone counts as already due. */
  private async deadlineOf(key: string): Promise<number | null> {
    const value = Number(await this.direct.call('PEXPIRETIME', key));
    if (value === -1) return null;
    if (value === -2) return Date.now() - 1;
    return value;
  }

  async run(commands: Command[]): Promise<void> {
    this.runs++;
    await this.ensureUp();
    await this.direct.flushall();
    const c = this.connect();
    if ((await c.call('NOTIFYLIST.SET', 'k*', LIST)) !== 'OK') throw new Error('cannot register');

    const state = new Map<Key, KeyState>(KEYS.map((key) => [key, { exists: false, deadline: null }]));
    const expected = new Map<string, string[]>(KEYS.filter(matches).map((key) => [key, []]));
    const log: string[] = [];
    const start = Date.now();
    let ambiguous = false;
    const emit = (key: string, op: string): void => {
      if (matches(key)) expected.get(key)!.push(op);
    };
    /** The incarnation ran out before `now`: it ends, with one `expired` if it is registered. */
    const expireIfDue = (key: Key, now: number): void => {
      const s = state.get(key)!;
      if (s.exists && s.deadline !== null && s.deadline < now) {
        emit(key, 'expired');
        state.set(key, { exists: false, deadline: null });
      }
    };

    for (const command of commands) {
      if (command.t === 'wait') {
        await sleep(command.ms);
        log.push(`+${Date.now() - start} wait ${command.ms}`);
        continue;
      }
      if (command.t === 'kill') {
        await this.kill(command.downMs);
        log.push(`+${Date.now() - start} kill, down ${command.downMs} ms, restarted`);
        continue;
      }
      const keys: Key[] = command.t === 'rename' ? [command.from, command.to] : [command.key];
      // Never send a command within a few ms of a deadline of a key it touches.
      for (;;) {
        const now = Date.now();
        const close = keys
          .map((key) => state.get(key)!)
          .filter((s) => s.exists && s.deadline !== null && s.deadline - now > -15 && s.deadline - now < 40);
        if (close.length === 0) break;
        await sleep(Math.max(...close.map((s) => s.deadline! - now)) + 16);
      }
      const client = this.connect();
      const sent = Date.now();
      const alive = new Map<Key, number>();
      for (const key of keys) {
        expireIfDue(key, sent);
        const s = state.get(key)!;
        if (s.exists && s.deadline !== null) alive.set(key, s.deadline);
      }
      let reply: unknown;
      let expectedReply: unknown;
      switch (command.t) {
        case 'setpx':
          reply = await client.set(command.key, 'v', 'PX', command.ms);
          expectedReply = 'OK';
          emit(command.key, 'set');
          state.set(command.key, { exists: true, deadline: await this.deadlineOf(command.key) });
          break;
        case 'setex':
          reply = await client.setex(command.key, 1, 'v');
          expectedReply = 'OK';
          emit(command.key, 'set');
          state.set(command.key, { exists: true, deadline: await this.deadlineOf(command.key) });
          break;
        case 'set':
          reply = await client.set(command.key, 'v');
          expectedReply = 'OK';
          emit(command.key, 'set');
          state.set(command.key, { exists: true, deadline: null });
          break;
        case 'expire':
        case 'pexpire': {
          const s = state.get(command.key)!;
          reply = command.t === 'expire' ? await client.expire(command.key, 1) : await client.pexpire(command.key, command.ms);
          expectedReply = s.exists ? 1 : 0;
          if (s.exists) state.set(command.key, { exists: true, deadline: await this.deadlineOf(command.key) });
          break;
        }
        case 'persist': {
          const s = state.get(command.key)!;
          reply = await client.persist(command.key);
          expectedReply = s.exists && s.deadline !== null ? 1 : 0;
          if (s.exists) state.set(command.key, { exists: true, deadline: null });
          break;
        }
        case 'del': {
          const s = state.get(command.key)!;
          reply = await client.del(command.key);
          expectedReply = s.exists ? 1 : 0;
          state.set(command.key, { exists: false, deadline: null });
          break;
        }
        case 'rename': {
          const from = state.get(command.from)!;
          reply = await client.rename(command.from, command.to).catch((error: Error) => error.message);
          expectedReply = from.exists ? 'OK' : 'ERR no such key';
          if (from.exists && command.from !== command.to) {
            state.set(command.to, { ...from });
            state.set(command.from, { exists: false, deadline: null });
          }
          break;
        }
      }
      const replied = Date.now();
      // A deadline the model took as "not yet" that passed before the reply: cannot tell.
      for (const deadline of alive.values()) if (deadline < replied) ambiguous = true;
      log.push(`+${sent - start} ${JSON.stringify(command)} -> ${JSON.stringify(reply)} (${replied - sent} ms)`);
      if (!ambiguous && JSON.stringify(reply) !== JSON.stringify(expectedReply)) {
        throw new Error(`reply ${JSON.stringify(reply)} != model ${JSON.stringify(expectedReply)}\n${log.join('\n')}`);
      }
    }

    // The end: a proxy up, every deadline passed + 1.5 s.
    await this.ensureUp();
    const last = Math.max(Date.now(), ...[...state.values()].map((s) => (s.exists && s.deadline !== null ? s.deadline : 0)));
    await sleep(last + 1500 - Date.now());
    for (const key of KEYS) expireIfDue(key, Date.now());

    if (ambiguous) {
      this.discarded++;
      fc.pre(false);
    }
    const actual = new Map<string, string[]>();
    for (const entry of await this.direct.lrange(LIST, 0, -1)) {
      const event = JSON.parse(entry) as { key: string; op: string };
      actual.set(event.key, [...(actual.get(event.key) ?? []), event.op]);
    }
    const mismatches: string[] = [];
    for (const key of new Set([...expected.keys(), ...actual.keys()])) {
      const want = expected.get(key) ?? [];
      const got = actual.get(key) ?? [];
      if (JSON.stringify(want) !== JSON.stringify(got)) mismatches.push(`${key}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
    }
    const stale = await this.direct.zrange(INDEX, 0, -1, 'WITHSCORES');
    if (stale.length > 0) mismatches.push(`stale index entries: ${JSON.stringify(stale)}`);
    if (mismatches.length > 0) {
      throw new Error(`${mismatches.join('\n')}\ncommands:\n${log.join('\n')}\nproxy output:\n${this.proxy.output.slice(-2000)}`);
    }
  }
}

describe('expiry model: random TTL writes, waits and proxy kills against the per-key event model', () => {
  const lanes = [new Lane(), new Lane()];
  beforeAll(async () => {
    await Promise.all(lanes.map((lane) => lane.start()));
  });
  afterAll(async () => {
    await Promise.all(lanes.map((lane) => lane.close()));
  });

  // Two lanes (each its own Redis and proxy process) run concurrently; lane 0 replays the
  // regression sequences first.
  for (const [i, lane] of lanes.entries()) {
    it.concurrent(`random sequences, lane ${i}`, async () => {
      await fc.assert(
        fc.asyncProperty(sequenceArb, (commands) => lane.run(commands)),
        {
          numRuns: 12,
          // Replay a reported failure: EXPIRY_MODEL_SEED=<seed> EXPIRY_MODEL_PATH=<path> (lane 1).
          ...(i === 1 && process.env.EXPIRY_MODEL_SEED
            ? { seed: Number(process.env.EXPIRY_MODEL_SEED), path: process.env.EXPIRY_MODEL_PATH }
            : {}),
          examples: i === 0 ? REGRESSIONS.map((commands) => [commands] as [Command[]]) : [],
          interruptAfterTimeLimit: 80_000,
          markInterruptAsFailure: false,
        },
      );
      console.log(`expiry model lane ${i}: ${lane.runs} sequences run, ${lane.discarded} discarded as ambiguous`);
    }, 120_000);
  }
});
