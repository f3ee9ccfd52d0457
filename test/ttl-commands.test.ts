// Every TTL-changing command against the expiry index: "no stray, no missing expired".
// For each command: the exact event list of every key involved once its deadlines (if any) have
// passed, no stale entry in `notifylist:expiry`, and Redis's own `__keyevent@<db>__:expired`
// notifications (subscribed on the server directly) as the oracle for how many incarnations
// really expired. Cases run concurrently on distinct keys; TTLs are 300-800 ms (EXPIRE/EXPIREAT
// and friends in seconds: 1 s).
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { holdLease } from './helpers/internal.js';
import { startTestProxy } from './helpers/proxy.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const LIST = 'events';
const INDEX = 'notifylist:expiry';

interface Expectation {
  key: string;
  ops: string[];
  db?: number;
  list?: string;
  /** Compare the number of `expired` with Redis's own notifications (default true). */
  oracle?: boolean;
}

/** One redis-server, one in-process proxy, clients per database, and the keyevent oracle. */
class Harness {
  redis!: RedisServer;
  proxy!: RunningProxy;
  private oracleConnection!: Redis;
  private readonly directs = new Map<number, Redis>();
  private readonly clients = new Map<number, Redis>();
  /** `${db}:${key}` -> number of `expired` notifications Redis itself published. */
  readonly redisExpired = new Map<string, number>();

  static async start(options: { beforeProxy?: (direct: Redis) => Promise<void>; proxyFlags?: string[] } = {}): Promise<Harness> {
    const harness = new Harness();
    harness.redis = await startRedis({ config: { 'enable-debug-command': 'yes' } });
    if (options.beforeProxy) await options.beforeProxy(harness.direct(0));
    harness.proxy = await startTestProxy(harness.redis, options.proxyFlags ?? []);
    // The proxy has enabled `Ex` in notify-keyspace-events by now.
    harness.oracleConnection = new Redis(harness.redis.port);
    harness.oracleConnection.on('pmessage', (_pattern: string, channel: string, key: string) => {
      const db = /^__keyevent@(\d+)__:expired$/.exec(channel)?.[1];
      if (db !== undefined) harness.redisExpired.set(`${db}:${key}`, (harness.redisExpired.get(`${db}:${key}`) ?? 0) + 1);
    });
    await harness.oracleConnection.psubscribe('__keyevent@*__:expired');
    return harness;
  }

  /** A connection straight to Redis, in `db`. */
  direct(db = 0): Redis {
    let connection = this.directs.get(db);
    if (!connection) this.directs.set(db, (connection = new Redis(this.redis.port, { db })));
    return connection;
  }

  /** A client of the proxy, in `db`. */
  client(db = 0): Redis {
    let connection = this.clients.get(db);
    if (!connection) this.clients.set(db, (connection = new Redis(this.proxy.port, { db })));
    return connection;
  }

  async close(): Promise<void> {
    for (const connection of [...this.clients.values(), ...this.directs.values()]) connection.disconnect();
    this.oracleConnection?.disconnect();
    await this.proxy?.close();
    await this.redis?.destroy();
  }

  /** The ops of `key`'s events in `list` of `db`, in list order. */
  async ops(key: string, db = 0, list = LIST): Promise<string[]> {
    const entries = await this.direct(db).lrange(list, 0, -1);
    return entries.map((entry) => JSON.parse(entry) as { key: string; op: string }).filter((e) => e.key === key).map((e) => e.op);
  }

  /** The index must hold exactly Redis's deadline for a key with a TTL, and nothing otherwise; a
   * key that ran out since (a slow machine: EXAT now + 1 may be due within ms) may keep its entry
   * until its expiry is reported (verify checks that it is). */
  async expectIndexTrue(expect: ExpectStatic, key: string, db = 0): Promise<void> {
    const score = await this.direct(db).zscore(INDEX, key);
    const deadline = Number(await this.direct(db).call('PEXPIRETIME', key));
    const [seconds, micros] = (await this.direct(db).time()) as [string, string];
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    if (deadline === -2 && score !== null && Number(score) < now) return;
    expect(score === null ? null : Number(score), `index entry of ${db}:${key} (PEXPIRETIME ${deadline})`).toBe(deadline > 0 ? deadline : null);
  }

  /**
   * Waits until every key shows its expected events, waits a little more (a duplicate or a stray
   * would show up), then asserts: exact event lists, no index entry, and as many `expired` as
   * Redis itself published for the key.
   */
  async verify(expect: ExpectStatic, expectations: Expectation[], timeoutMs = 4000): Promise<void> {
    const read = (): Promise<string[][]> => Promise.all(expectations.map((e) => this.ops(e.key, e.db ?? 0, e.list ?? LIST)));
    await waitFor(read, (all) => all.every((ops, i) => JSON.stringify(ops) === JSON.stringify(expectations[i].ops)), timeoutMs, 25);
    await sleep(300);
    const final = await read();
    for (const [i, e] of expectations.entries()) {
      const db = e.db ?? 0;
      expect(final[i], `events of ${db}:${e.key}`).toEqual(e.ops);
      expect(await this.direct(db).zscore(INDEX, e.key), `stale index entry of ${db}:${e.key}`).toBeNull();
      if (e.oracle !== false) {
        const ours = e.ops.filter((op) => op === 'expired').length;
        expect(this.redisExpired.get(`${db}:${e.key}`) ?? 0, `Redis's own expired notifications for ${db}:${e.key}`).toBe(ours);
      }
    }
  }
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

describe('TTL-changing commands keep the expiry index true (k* -> events in db 0 and db 1, j* -> events in db 0 only)', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await Harness.start();
    expect0(await h.client(0).call('NOTIFYLIST.SET', 'k*', LIST));
    expect0(await h.client(0).call('NOTIFYLIST.SET', 'j*', LIST));
    expect0(await h.client(1).call('NOTIFYLIST.SET', 'k*', LIST));
    await sleep(50);
  });

  afterAll(async () => {
    await h?.close();
  });

  it.concurrent('EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT give a key a TTL: set, then exactly one expired', async ({ expect }) => {
    const c = h.client();
    await c.set('k:e:expire', 'v');
    expect(await c.expire('k:e:expire', 1)).toBe(1);
    await c.set('k:e:pexpire', 'v');
    expect(await c.pexpire('k:e:pexpire', 400)).toBe(1);
    await c.set('k:e:expireat', 'v');
    expect(await c.expireat('k:e:expireat', nowSeconds() + 1)).toBe(1);
    await c.set('k:e:pexpireat', 'v');
    expect(await c.pexpireat('k:e:pexpireat', Date.now() + 500)).toBe(1);
    // A key created outside the proxy that gets its TTL through the proxy is covered too.
    await h.direct().set('k:e:direct-then-pexpire', 'v');
    expect(await c.pexpire('k:e:direct-then-pexpire', 300)).toBe(1);
    const keys = ['k:e:expire', 'k:e:pexpire', 'k:e:expireat', 'k:e:pexpireat', 'k:e:direct-then-pexpire'];
    for (const key of keys) await h.expectIndexTrue(expect, key);
    await sleep(1100);
    await h.verify(expect, [
      ...keys.slice(0, 4).map((key) => ({ key, ops: ['set', 'expired'] })),
      { key: 'k:e:direct-then-pexpire', ops: ['expired'] },
    ]);
  });

  it.concurrent('NX / XX / GT / LT: successful conditions move the deadline, failing ones keep it', async ({ expect }) => {
    const c = h.client();
    const replies: Record<string, unknown> = {};
    // NX: only without a TTL.
    await c.set('k:c:nx-ok', 'v');
    replies['nx-ok'] = await c.pexpire('k:c:nx-ok', 400, 'NX');
    await c.set('k:c:nx-fail', 'v', 'PX', 400);
    replies['nx-fail'] = await c.pexpire('k:c:nx-fail', 60_000, 'NX');
    await c.set('k:c:expire-nx', 'v');
    replies['expire-nx'] = await c.expire('k:c:expire-nx', 1, 'NX');
    replies['expire-nx-again'] = await c.expire('k:c:expire-nx', 100, 'NX');
    // XX: only with a TTL.
    await c.set('k:c:xx-ok', 'v', 'PX', 60_000);
    replies['xx-ok'] = await c.pexpire('k:c:xx-ok', 400, 'XX');
    await c.set('k:c:xx-fail', 'v');
    replies['xx-fail'] = await c.pexpire('k:c:xx-fail', 400, 'XX');
    await c.set('k:c:expireat-xx', 'v', 'PX', 60_000);
    replies['expireat-xx'] = await c.expireat('k:c:expireat-xx', nowSeconds() + 1, 'XX');
    // GT: only to a later deadline; no TTL counts as infinite, so GT fails on it.
    await c.set('k:c:gt-ok', 'v', 'PX', 300);
    replies['gt-ok'] = await c.pexpire('k:c:gt-ok', 700, 'GT');
    await c.set('k:c:gt-fail', 'v', 'PX', 700);
    replies['gt-fail'] = await c.pexpire('k:c:gt-fail', 300, 'GT');
    await c.set('k:c:gt-no-ttl', 'v');
    replies['gt-no-ttl'] = await c.pexpire('k:c:gt-no-ttl', 300, 'GT');
    await c.set('k:c:pexpireat-gt', 'v', 'PX', 300);
    replies['pexpireat-gt'] = await c.pexpireat('k:c:pexpireat-gt', Date.now() + 700, 'GT');
    // LT: only to an earlier deadline; no TTL counts as infinite, so LT succeeds on it.
    await c.set('k:c:lt-ok', 'v', 'PX', 60_000);
    replies['lt-ok'] = await c.pexpire('k:c:lt-ok', 300, 'LT');
    await c.set('k:c:lt-fail', 'v', 'PX', 300);
    replies['lt-fail'] = await c.pexpire('k:c:lt-fail', 60_000, 'LT');
    await c.set('k:c:lt-no-ttl', 'v');
    replies['lt-no-ttl'] = await c.pexpire('k:c:lt-no-ttl', 400, 'LT');
    await c.set('k:c:pexpireat-lt-fail', 'v', 'PX', 300);
    replies['pexpireat-lt-fail'] = await c.pexpireat('k:c:pexpireat-lt-fail', Date.now() + 60_000, 'LT');

    expect(replies).toEqual({
      'nx-ok': 1, 'nx-fail': 0, 'expire-nx': 1, 'expire-nx-again': 0,
      'xx-ok': 1, 'xx-fail': 0, 'expireat-xx': 1,
      'gt-ok': 1, 'gt-fail': 0, 'gt-no-ttl': 0, 'pexpireat-gt': 1,
      'lt-ok': 1, 'lt-fail': 0, 'lt-no-ttl': 1, 'pexpireat-lt-fail': 0,
    });
    const keys = Object.keys(replies).filter((name) => name !== 'expire-nx-again').map((name) => `k:c:${name}`);
    for (const key of keys) await h.expectIndexTrue(expect, key);

    // At ~500 ms: the GT-extended key and the failed-GT key (700 ms) are still alive, unreported.
    await sleep(450);
    for (const key of ['k:c:gt-ok', 'k:c:gt-fail', 'k:c:pexpireat-gt']) {
      expect(await h.ops(key), `${key} at ~500 ms`).toEqual(['set']);
      await h.expectIndexTrue(expect, key);
    }
    await sleep(800);
    const noTtl = new Set(['k:c:xx-fail', 'k:c:gt-no-ttl']);
    await h.verify(expect, keys.map((key) => ({ key, ops: noTtl.has(key) ? ['set'] : ['set', 'expired'] })));
  });

  it.concurrent('a time in the past deletes the key: no expired event, no index entry; a missing key gets nothing', async ({ expect }) => {
    const c = h.client();
    await c.set('k:p:pexpire', 'v', 'PX', 60_000);
    expect(await c.pexpire('k:p:pexpire', -1)).toBe(1);
    await c.set('k:p:expire', 'v', 'PX', 60_000);
    expect(await c.expire('k:p:expire', 0)).toBe(1);
    await c.set('k:p:expireat', 'v');
    expect(await c.expireat('k:p:expireat', 1)).toBe(1);
    await c.set('k:p:pexpireat', 'v', 'PX', 60_000);
    expect(await c.pexpireat('k:p:pexpireat', 1)).toBe(1);
    await c.set('k:p:pexpireat-xx', 'v', 'PX', 400);
    expect(await c.pexpireat('k:p:pexpireat-xx', Date.now() - 1000, 'XX')).toBe(1);
    expect(await c.pexpire('k:p:missing', 300)).toBe(0);
    // An invalid (overflowing) time changes nothing: the old deadline stays and is reported.
    await c.set('k:p:overflow', 'v', 'PX', 400);
    await expect(c.pexpire('k:p:overflow', '9223372036854775807')).rejects.toThrow('invalid expire time');
    await h.expectIndexTrue(expect, 'k:p:overflow');
    const keys = ['k:p:pexpire', 'k:p:expire', 'k:p:expireat', 'k:p:pexpireat', 'k:p:pexpireat-xx'];
    expect(await h.direct().exists(...keys, 'k:p:missing')).toBe(0);
    await sleep(700);
    await h.verify(expect, [
      ...keys.map((key) => ({ key, ops: ['set'] })),
      { key: 'k:p:missing', ops: [] },
      { key: 'k:p:overflow', ops: ['set', 'expired'] },
    ]);
  });

  it.concurrent('PERSIST removes the TTL: never an expired event', async ({ expect }) => {
    const c = h.client();
    await c.set('k:persist:ttl', 'v', 'PX', 400);
    expect(await c.persist('k:persist:ttl')).toBe(1);
    await h.expectIndexTrue(expect, 'k:persist:ttl');
    await c.set('k:persist:no-ttl', 'v');
    expect(await c.persist('k:persist:no-ttl')).toBe(0);
    await c.set('k:persist:again', 'v', 'PX', 60_000);
    expect(await c.persist('k:persist:again')).toBe(1);
    expect(await c.pexpire('k:persist:again', 300)).toBe(1);
    // Inside MULTI (the rewritten commands are queued and run at EXEC).
    const tx = await c.multi().set('k:persist:multi', 'v', 'PX', 300).persist('k:persist:multi').exec();
    expect(tx).toEqual([[null, 'OK'], [null, 1]]);
    const tx2 = await c.multi().set('k:persist:multi2', 'v', 'PX', 60_000).pexpire('k:persist:multi2', 300).exec();
    expect(tx2).toEqual([[null, 'OK'], [null, 1]]);
    await h.expectIndexTrue(expect, 'k:persist:multi');
    await h.expectIndexTrue(expect, 'k:persist:multi2');
    await sleep(700);
    await h.verify(expect, [
      { key: 'k:persist:multi', ops: ['set'] },
      { key: 'k:persist:multi2', ops: ['set', 'expired'] },
      { key: 'k:persist:ttl', ops: ['set'] },
      { key: 'k:persist:no-ttl', ops: ['set'] },
      { key: 'k:persist:again', ops: ['set', 'expired'] },
    ]);
  });

  it.concurrent('GETEX EX / PX / EXAT / PXAT / PERSIST / no option', async ({ expect }) => {
    const c = h.client();
    const getex = (...args: Array<string | number>): Promise<unknown> => c.call('GETEX', ...args);
    for (const key of ['k:g:ex', 'k:g:px', 'k:g:exat', 'k:g:pxat', 'k:g:pxat-past']) await c.set(key, 'v');
    for (const key of ['k:g:exat-past', 'k:g:persist', 'k:g:plain']) await c.set(key, 'v', 'PX', 400);
    await c.set('k:g:shorten', 'v', 'PX', 60_000);
    expect(await getex('k:g:ex', 'EX', 1)).toBe('v');
    expect(await getex('k:g:px', 'PX', 400)).toBe('v');
    expect(await getex('k:g:exat', 'EXAT', nowSeconds() + 1)).toBe('v');
    expect(await getex('k:g:pxat', 'PXAT', Date.now() + 500)).toBe('v');
    expect(await getex('k:g:pxat-past', 'PXAT', Date.now() - 1000)).toBe('v');
    expect(await getex('k:g:exat-past', 'EXAT', 1)).toBe('v');
    expect(await getex('k:g:persist', 'PERSIST')).toBe('v');
    expect(await getex('k:g:plain')).toBe('v');
    expect(await getex('k:g:shorten', 'PX', 300)).toBe('v');
    expect(await getex('k:g:missing', 'PX', 300)).toBe(null);
    expect(await h.direct().exists('k:g:pxat-past', 'k:g:exat-past')).toBe(0);
    const keys = ['k:g:ex', 'k:g:px', 'k:g:exat', 'k:g:pxat', 'k:g:pxat-past', 'k:g:exat-past', 'k:g:persist', 'k:g:plain', 'k:g:shorten'];
    for (const key of keys) await h.expectIndexTrue(expect, key);
    await sleep(1100);
    const expired = new Set(['k:g:ex', 'k:g:px', 'k:g:exat', 'k:g:pxat', 'k:g:plain', 'k:g:shorten']);
    await h.verify(expect, [
      ...keys.map((key) => ({ key, ops: expired.has(key) ? ['set', 'expired'] : ['set'] })),
      { key: 'k:g:missing', ops: [] },
    ]);
  });

  it.concurrent('SET family: SET / GETSET / MSET without KEEPTTL clear the TTL; KEEPTTL keeps the old deadline; a new TTL replaces it', async ({ expect }) => {
    const c = h.client();
    await c.set('k:s:set', 'v', 'PX', 400);
    await c.set('k:s:set', 'v2');
    await c.set('k:s:getset', 'v', 'PX', 400);
    expect(await c.getset('k:s:getset', 'v2')).toBe('v');
    await c.set('k:s:mset1', 'v', 'PX', 400);
    await c.set('k:s:mset2', 'v', 'PX', 400);
    await c.mset('k:s:mset1', 'v2', 'k:s:mset2', 'v2');
    await c.set('k:s:keepttl', 'v', 'PX', 500);
    const oldDeadline = Number(await h.direct().call('PEXPIRETIME', 'k:s:keepttl'));
    await sleep(100);
    expect(await c.set('k:s:keepttl', 'v2', 'KEEPTTL')).toBe('OK');
    expect(Number(await h.direct().call('PEXPIRETIME', 'k:s:keepttl'))).toBe(oldDeadline);
    await c.setex('k:s:setex-then-px', 1, 'v');
    await c.set('k:s:setex-then-px', 'v2', 'PX', 300);
    await c.set('k:s:psetex', 'v', 'PX', 60_000);
    await c.psetex('k:s:psetex', 300, 'v2');
    await c.set('k:s:xx', 'v', 'PX', 60_000);
    expect(await c.set('k:s:xx', 'v2', 'PX', 300, 'XX')).toBe('OK');
    await c.set('k:s:nx-fails', 'v', 'PX', 400);
    expect(await c.set('k:s:nx-fails', 'v2', 'NX')).toBe(null);
    const keys = ['k:s:set', 'k:s:getset', 'k:s:mset1', 'k:s:mset2', 'k:s:keepttl', 'k:s:setex-then-px', 'k:s:psetex', 'k:s:xx', 'k:s:nx-fails'];
    for (const key of keys) await h.expectIndexTrue(expect, key);
    // KEEPTTL: reported at the old deadline, not later.
    await waitFor(() => h.ops('k:s:keepttl'), (ops) => ops.length === 3, 3000, 10);
    expect(Date.now()).toBeLessThan(oldDeadline + 600);
    await sleep(Math.max(0, oldDeadline + 300 - Date.now()));
    await h.verify(expect, [
      { key: 'k:s:set', ops: ['set', 'set'] },
      { key: 'k:s:getset', ops: ['set', 'set'] },
      { key: 'k:s:mset1', ops: ['set', 'set'] },
      { key: 'k:s:mset2', ops: ['set', 'set'] },
      { key: 'k:s:keepttl', ops: ['set', 'set', 'expired'] },
      { key: 'k:s:setex-then-px', ops: ['set', 'set', 'expired'] },
      { key: 'k:s:psetex', ops: ['set', 'set', 'expired'] },
      { key: 'k:s:xx', ops: ['set', 'set', 'expired'] },
      { key: 'k:s:nx-fails', ops: ['set', 'expired'] },
    ]);
  });

  it.concurrent('DEL / UNLINK / GETDEL: never an expired event', async ({ expect }) => {
    const c = h.client();
    await c.set('k:d:del1', 'v', 'PX', 400);
    await c.set('k:d:del2', 'v', 'PX', 400);
    expect(await c.del('k:d:del1', 'k:d:del2', 'k:d:missing')).toBe(2);
    await c.set('k:d:unlink', 'v', 'PX', 400);
    expect(await c.unlink('k:d:unlink')).toBe(1);
    await c.set('k:d:getdel', 'v', 'PX', 400);
    expect(await c.getdel('k:d:getdel')).toBe('v');
    await c.set('k:d:del-reset', 'v', 'PX', 400);
    await c.del('k:d:del-reset');
    await c.set('k:d:del-reset', 'v2');
    const keys = ['k:d:del1', 'k:d:del2', 'k:d:unlink', 'k:d:getdel', 'k:d:del-reset'];
    for (const key of keys) await h.expectIndexTrue(expect, key);
    await sleep(700);
    await h.verify(expect, [
      ...keys.slice(0, 4).map((key) => ({ key, ops: ['set'] })),
      { key: 'k:d:del-reset', ops: ['set', 'set'] },
      { key: 'k:d:missing', ops: [] },
    ]);
  });

  it.concurrent('RENAME / RENAMENX: the TTL moves; expired is reported for the destination (if it matches), never the source', async ({ expect }) => {
    const c = h.client();
    await c.set('k:r:src1', 'v', 'PX', 500);
    expect(await c.rename('k:r:src1', 'k:r:dst1')).toBe('OK');
    // To a key that matches no registration: nothing is reported at all.
    await c.set('k:r:src2', 'v', 'PX', 500);
    expect(await c.rename('k:r:src2', 'x:r:dst2')).toBe('OK');
    // From a key that matches nothing (its TTL set through the proxy) to one that matches.
    await c.set('x:r:src3', 'v', 'PX', 500);
    expect(await c.rename('x:r:src3', 'k:r:dst3')).toBe('OK');
    // Onto a destination with a TTL, from a source without one: the destination loses its TTL.
    await c.set('k:r:dst4', 'v', 'PX', 400);
    await c.set('k:r:src4', 'v');
    expect(await c.rename('k:r:src4', 'k:r:dst4')).toBe('OK');
    // Onto a destination without a TTL, from a source with one.
    await c.set('k:r:dst5', 'v');
    await c.set('k:r:src5', 'v', 'PX', 500);
    expect(await c.rename('k:r:src5', 'k:r:dst5')).toBe('OK');
    // RENAMENX that succeeds, and one that fails (both keys keep their own TTLs).
    await c.set('k:r:src6', 'v', 'PX', 500);
    expect(await c.renamenx('k:r:src6', 'k:r:dst6')).toBe(1);
    await c.set('k:r:src7', 'v', 'PX', 500);
    await c.set('k:r:dst7', 'v');
    expect(await c.renamenx('k:r:src7', 'k:r:dst7')).toBe(0);
    // Onto itself.
    await c.set('k:r:self', 'v', 'PX', 500);
    expect(await c.rename('k:r:self', 'k:r:self')).toBe('OK');
    await expect(c.rename('k:r:missing', 'k:r:dst9')).rejects.toThrow('ERR no such key');
    const keys = ['src1', 'dst1', 'src2', 'src3', 'dst3', 'src4', 'dst4', 'src5', 'dst5', 'src6', 'dst6', 'src7', 'dst7', 'self'].map((k) => `k:r:${k}`);
    for (const key of [...keys, 'x:r:src3']) await h.expectIndexTrue(expect, key);
    expect(await h.direct().zscore(INDEX, 'x:r:dst2')).toBeNull();
    await sleep(900);
    await h.verify(expect, [
      { key: 'k:r:src1', ops: ['set'] },
      { key: 'k:r:dst1', ops: ['expired'] },
      { key: 'k:r:src2', ops: ['set'] },
      { key: 'x:r:dst2', ops: [], oracle: false }, // Redis does expire it; it matches no registration
      { key: 'k:r:dst3', ops: ['expired'] },
      { key: 'k:r:src4', ops: ['set'] },
      { key: 'k:r:dst4', ops: ['set'] },
      { key: 'k:r:src5', ops: ['set'] },
      { key: 'k:r:dst5', ops: ['set', 'expired'] },
      { key: 'k:r:src6', ops: ['set'] },
      { key: 'k:r:dst6', ops: ['expired'] },
      { key: 'k:r:src7', ops: ['set', 'expired'] },
      { key: 'k:r:dst7', ops: ['set'] },
      { key: 'k:r:self', ops: ['set', 'expired'] },
      { key: 'k:r:dst9', ops: [] },
    ]);
  });

  it.concurrent("MOVE to db 1: expired is reported in db 1's list when db 1 registers a matching pattern", async ({ expect }) => {
    const c = h.client();
    const c1 = h.client(1);
    await c.set('k:m:ttl', 'v', 'PX', 500);
    expect(await c.move('k:m:ttl', 1)).toBe(1);
    await h.expectIndexTrue(expect, 'k:m:ttl', 0);
    await h.expectIndexTrue(expect, 'k:m:ttl', 1);
    // j* is registered in db 0 only: nothing is indexed or reported in db 1.
    await c.set('j:m:ttl', 'v', 'PX', 500);
    expect(await c.move('j:m:ttl', 1)).toBe(1);
    expect(await h.direct(1).zscore(INDEX, 'j:m:ttl')).toBeNull();
    // Without a TTL, then given one in db 1.
    await c.set('k:m:no-ttl', 'v');
    expect(await c.move('k:m:no-ttl', 1)).toBe(1);
    expect(await c1.pexpire('k:m:no-ttl', 300)).toBe(1);
    // MOVE refused (the key exists in db 1): both keep their own TTL.
    await c.set('k:m:refused', 'v', 'PX', 500);
    await c1.set('k:m:refused', 'v1');
    expect(await c.move('k:m:refused', 1)).toBe(0);
    await sleep(900);
    await h.verify(expect, [
      { key: 'k:m:ttl', ops: ['set'] },
      { key: 'k:m:ttl', db: 1, ops: ['expired'] },
      { key: 'j:m:ttl', ops: ['set'] },
      { key: 'j:m:ttl', db: 1, ops: [], oracle: false }, // Redis expires it in db 1, where j* is not registered
      { key: 'k:m:no-ttl', ops: ['set'] },
      { key: 'k:m:no-ttl', db: 1, ops: ['expired'] },
      { key: 'k:m:refused', ops: ['set', 'expired'] },
      { key: 'k:m:refused', db: 1, ops: ['set'] },
    ]);
  });

  it.concurrent('COPY (same db, with DB, REPLACE): the copy gets its own expired where it matches', async ({ expect }) => {
    const c = h.client();
    const c1 = h.client(1);
    await c.set('k:y:src1', 'v', 'PX', 500);
    expect(await c.copy('k:y:src1', 'k:y:dst1')).toBe(1);
    // REPLACE from a source without TTL onto a destination with one: the destination loses it.
    await c.set('k:y:src2', 'v');
    await c.set('k:y:dst2', 'v', 'PX', 400);
    expect(await c.copy('k:y:src2', 'k:y:dst2', 'REPLACE')).toBe(1);
    // COPY ... DB 1.
    await c.set('k:y:src3', 'v', 'PX', 500);
    expect(await c.copy('k:y:src3', 'k:y:dst3', 'DB', 1)).toBe(1);
    await h.expectIndexTrue(expect, 'k:y:dst3', 1);
    // COPY ... DB 1 REPLACE from a source without TTL onto a db 1 key with one.
    await c.set('k:y:src4', 'v');
    await c1.set('k:y:dst4', 'v', 'PX', 400);
    expect(await c.copy('k:y:src4', 'k:y:dst4', 'DB', 1, 'REPLACE')).toBe(1);
    await h.expectIndexTrue(expect, 'k:y:dst4', 1);
    // COPY refused (destination exists, no REPLACE): both keep their TTLs.
    await c.set('k:y:src5', 'v');
    await c.set('k:y:dst5', 'v', 'PX', 400);
    expect(await c.copy('k:y:src5', 'k:y:dst5')).toBe(0);
    // To a key that matches nothing.
    await c.set('k:y:src6', 'v', 'PX', 500);
    expect(await c.copy('k:y:src6', 'x:y:dst6')).toBe(1);
    // From a key that matches nothing (TTL set through the proxy) to one that matches, in db 1.
    await c.set('x:y:src7', 'v', 'PX', 500);
    expect(await c.copy('x:y:src7', 'k:y:dst7', 'DB', 1)).toBe(1);
    // COPY ... DB <the current database>.
    await c.set('k:y:src8', 'v', 'PX', 500);
    expect(await c.copy('k:y:src8', 'k:y:dst8', 'DB', 0)).toBe(1);
    for (const key of ['src1', 'dst1', 'src2', 'dst2', 'src3', 'src5', 'dst5', 'src6', 'src8', 'dst8']) await h.expectIndexTrue(expect, `k:y:${key}`);
    await sleep(900);
    await h.verify(expect, [
      { key: 'k:y:src1', ops: ['set', 'expired'] },
      { key: 'k:y:dst1', ops: ['expired'] },
      { key: 'k:y:src2', ops: ['set'] },
      { key: 'k:y:dst2', ops: ['set'] },
      { key: 'k:y:src3', ops: ['set', 'expired'] },
      { key: 'k:y:dst3', db: 1, ops: ['expired'] },
      { key: 'k:y:src4', ops: ['set'] },
      { key: 'k:y:dst4', db: 1, ops: ['set'] },
      { key: 'k:y:src5', ops: ['set'] },
      { key: 'k:y:dst5', ops: ['set', 'expired'] },
      { key: 'k:y:src6', ops: ['set', 'expired'] },
      { key: 'k:y:dst7', db: 1, ops: ['expired'] },
      { key: 'k:y:src8', ops: ['set', 'expired'] },
      { key: 'k:y:dst8', ops: ['expired'] },
    ]);
  });

  it.concurrent('RESTORE with a TTL, with ABSTTL (future and past), with 0 (REPLACE clears a TTL), refused (BUSYKEY)', async ({ expect }) => {
    const c = h.client();
    await h.direct().set('x:t:payload', 'v');
    const payload = (await h.direct().dumpBuffer('x:t:payload'))!;
    expect(await c.call('RESTORE', 'k:t:ttl', 400, payload)).toBe('OK');
    expect(await c.call('RESTORE', 'k:t:absttl', Date.now() + 500, payload, 'ABSTTL')).toBe('OK');
    expect(await c.call('RESTORE', 'k:t:absttl-past', 1, payload, 'ABSTTL')).toBe('OK');
    await c.set('k:t:replace-past', 'v', 'PX', 400);
    expect(await c.call('RESTORE', 'k:t:replace-past', 1, payload, 'ABSTTL', 'REPLACE')).toBe('OK');
    await c.set('k:t:replace-0', 'v', 'PX', 400);
    expect(await c.call('RESTORE', 'k:t:replace-0', 0, payload, 'REPLACE')).toBe('OK');
    await c.set('k:t:replace-ttl', 'v');
    expect(await c.call('RESTORE', 'k:t:replace-ttl', 400, payload, 'REPLACE')).toBe('OK');
    await c.set('k:t:busy', 'v', 'PX', 400);
    await expect(c.call('RESTORE', 'k:t:busy', 60_000, payload)).rejects.toThrow('BUSYKEY');
    expect(await h.direct().exists('k:t:absttl-past', 'k:t:replace-past')).toBe(0);
    const keys = ['ttl', 'absttl', 'absttl-past', 'replace-past', 'replace-0', 'replace-ttl', 'busy'].map((k) => `k:t:${k}`);
    for (const key of keys) await h.expectIndexTrue(expect, key);
    await sleep(900);
    await h.verify(expect, [
      { key: 'k:t:ttl', ops: ['expired'] },
      { key: 'k:t:absttl', ops: ['expired'] },
      { key: 'k:t:absttl-past', ops: [] },
      { key: 'k:t:replace-past', ops: ['set'] },
      { key: 'k:t:replace-0', ops: ['set'] },
      { key: 'k:t:replace-ttl', ops: ['set', 'expired'] },
      { key: 'k:t:busy', ops: ['set', 'expired'] },
    ]);
  });

  it('afterwards, no stale entry anywhere in the index', async ({ expect }) => {
    await sleep(200);
    expect(await h.direct(0).zrange(INDEX, 0, -1)).toEqual([]);
    expect(await h.direct(1).zrange(INDEX, 0, -1)).toEqual([]);
  });
});

describe('FLUSHDB / FLUSHALL through the proxy: no expired event, registrations are kept', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.start();
    expect0(await h.client(0).call('NOTIFYLIST.SET', 'k*', LIST));
    expect0(await h.client(1).call('NOTIFYLIST.SET', 'k*', LIST));
  });
  afterAll(async () => {
    await h?.close();
  });

  it('FLUSHDB (and FLUSHDB ASYNC) drops the keys and their index entries, keeps the registrations; other databases are untouched', async ({ expect }) => {
    const c = h.client(0);
    const c1 = h.client(1);
    await c.set('k:f:1', 'v', 'PX', 400);
    await c.set('k:f:2', 'v', 'PX', 600);
    await c.set('k:f:3', 'v');
    await c1.set('k:f:4', 'v', 'PX', 400);
    expect(await c.flushdb()).toBe('OK');
    expect(await h.direct(0).dbsize()).toBe(3); // the registry, its targets and the secret, nothing else
    expect(await c.call('NOTIFYLIST.LIST')).toEqual(['k*', LIST]);
    expect(await h.direct(0).zcard(INDEX)).toBe(0);
    await sleep(900);
    expect(await h.direct(0).lrange(LIST, 0, -1)).toEqual([]);
    await h.verify(expect, [
      { key: 'k:f:1', ops: [] },
      { key: 'k:f:2', ops: [] },
      { key: 'k:f:3', ops: [] },
      { key: 'k:f:4', db: 1, ops: ['set', 'expired'] },
    ]);
    // The registration still works.
    await c.set('k:f:5', 'v', 'PX', 300);
    // FLUSHDB ASYNC in db 1.
    await c1.set('k:f:6', 'v', 'PX', 300);
    expect(await c1.call('FLUSHDB', 'ASYNC')).toBe('OK');
    expect(await c1.call('NOTIFYLIST.LIST')).toEqual(['k*', LIST]);
    await sleep(700);
    await h.verify(expect, [
      { key: 'k:f:5', ops: ['set', 'expired'] },
      { key: 'k:f:6', db: 1, ops: [] },
    ]);
    expect(await h.direct(1).lrange(LIST, 0, -1)).toEqual([]);
  });

  it('FLUSHALL drops every database, keeps every registration', async ({ expect }) => {
    const c = h.client(0);
    const c1 = h.client(1);
    await c.set('k:a:1', 'v', 'PX', 400);
    await c1.set('k:a:2', 'v', 'PX', 400);
    expect(await c.flushall()).toBe('OK');
    expect(await c.call('NOTIFYLIST.LIST')).toEqual(['k*', LIST]);
    expect(await c1.call('NOTIFYLIST.LIST')).toEqual(['k*', LIST]);
    await sleep(800);
    expect(await h.direct(0).lrange(LIST, 0, -1)).toEqual([]);
    expect(await h.direct(1).lrange(LIST, 0, -1)).toEqual([]);
    await c1.set('k:a:3', 'v', 'PX', 300);
    await sleep(500);
    await h.verify(expect, [
      { key: 'k:a:1', ops: [] },
      { key: 'k:a:2', db: 1, ops: [] },
      { key: 'k:a:3', db: 1, ops: ['set', 'expired'] },
    ]);
  });
});

describe('SWAPDB through the proxy: keys, index and registrations move together', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.start();
    expect0(await h.client(0).call('NOTIFYLIST.SET', 'k*', LIST));
    expect0(await h.client(1).call('NOTIFYLIST.SET', 'k*', 'events1'));
    expect0(await h.client(3).call('NOTIFYLIST.SET', 'k*', 'events3')); // db 2 registers nothing
    expect0(await h.client(5).call('NOTIFYLIST.SET', 'k*', 'events5')); // db 4 registers nothing
    await sleep(50);
  });
  afterAll(async () => {
    await h?.close();
  });

  it('SWAPDB 0 1 and SWAPDB 2 3 (into a database that registered nothing): expired lands where the key now lives', async ({ expect }) => {
    await h.client(0).set('k:w:a', 'v', 'PX', 600);
    await h.client(1).set('k:w:b', 'v', 'PX', 600);
    await h.client(3).set('k:w:c', 'v', 'PX', 600);
    expect(await h.client(0).swapdb(0, 1)).toBe('OK');
    expect(await h.client(0).swapdb(2, 3)).toBe('OK');
    expect(await h.client(0).call('NOTIFYLIST.LIST')).toEqual(['k*', 'events1']);
    expect(await h.client(1).call('NOTIFYLIST.LIST')).toEqual(['k*', LIST]);
    expect(await h.client(2).call('NOTIFYLIST.LIST')).toEqual(['k*', 'events3']);
    expect(await h.client(3).call('NOTIFYLIST.LIST')).toEqual([]);
    await sleep(900);
    await h.verify(expect, [
      { key: 'k:w:a', db: 1, ops: ['set', 'expired'] },
      { key: 'k:w:b', db: 0, list: 'events1', ops: ['set', 'expired'] },
      { key: 'k:w:c', db: 2, list: 'events3', ops: ['set', 'expired'] },
    ]);
    for (const db of [0, 1, 2, 3]) expect(await h.direct(db).zcard(INDEX), `index of db ${db}`).toBe(0);
  });

  it('SWAPDB queued in MULTI and run by a later EXEC: the expired still lands where the key now lives', async ({ expect }) => {
    const c = h.client(0);
    await h.client(5).set('k:w:d', 'v', 'PX', 900);
    await c.multi({ pipeline: false });
    await c.swapdb(4, 5);
    await sleep(400); // past the proxy's own re-reads of the registry after it forwarded SWAPDB
    expect(await c.exec()).toEqual([[null, 'OK']]);
    expect(await h.client(4).call('NOTIFYLIST.LIST')).toEqual(['k*', 'events5']);
    await sleep(700);
    await h.verify(expect, [{ key: 'k:w:d', db: 4, list: 'events5', ops: ['set', 'expired'] }], 3000);
  });
});

describe('an indexed incarnation that expired but was not reported yet is reported before the next write (no reaper, no active expiry)', () => {
  let h: Harness;
  const payload: { value?: Buffer } = {};
  beforeAll(async () => {
    h = await Harness.start({
      proxyFlags: ['--lease-ms', '60000'],
      beforeProxy: async (direct) => {
        // Redis expires keys only when they are touched, and another holder owns the reaper lease
        // (this proxy, a follower, would reap 200 ms after a deadline: the writes below come sooner).
        await direct.call('DEBUG', 'SET-ACTIVE-EXPIRE', '0');
        await holdLease(direct, 'someone-else', 120_000);
      },
    });
    expect0(await h.client(0).call('NOTIFYLIST.SET', 'k*', LIST));
    expect0(await h.client(1).call('NOTIFYLIST.SET', 'k*', LIST));
    await h.direct().set('x:payload', 'v');
    payload.value = (await h.direct().dumpBuffer('x:payload'))!;
    await sleep(50);
  });
  afterAll(async () => {
    await h?.close();
  });

  it('this proxy is not the reaper', async ({ expect }) => {
    expect(await h.client().call('NOTIFYLIST.INFO')).toContain('reaper_leader:0');
  });

  /** Writes `key` with a 200 ms TTL through the proxy and waits until it is logically expired. */
  const stale = async (key: string, db = 0): Promise<void> => {
    await h.client(db).set(key, 'v', 'PX', 200);
    await sleep(280);
  };

  it.concurrent('a SET after the deadline: expired, then set', async ({ expect }) => {
    await stale('k:z:set');
    expect(await h.ops('k:z:set')).toEqual(['set']); // nobody has noticed yet
    expect(h.redisExpired.get('0:k:z:set')).toBeUndefined();
    await h.client().set('k:z:set', 'v2');
    expect(await h.ops('k:z:set')).toEqual(['set', 'expired', 'set']);
    await h.verify(expect, [{ key: 'k:z:set', ops: ['set', 'expired', 'set'] }]);
  });

  it.concurrent('a SET with a new TTL: expired, set, and the new incarnation is reported when Redis notices it', async ({ expect }) => {
    await stale('k:z:set-ttl');
    await h.client().set('k:z:set-ttl', 'v2', 'PX', 200);
    expect(await h.ops('k:z:set-ttl')).toEqual(['set', 'expired', 'set']);
    await h.expectIndexTrue(expect, 'k:z:set-ttl');
    await sleep(280);
    expect(await h.direct().get('k:z:set-ttl')).toBe(null); // touching it makes Redis publish `expired`
    await h.verify(expect, [{ key: 'k:z:set-ttl', ops: ['set', 'expired', 'set', 'expired'] }]);
  });

  it.concurrent('SET KEEPTTL, SETEX, GETSET, MSET after the deadline: expired before set', async ({ expect }) => {
    await Promise.all(['k:z:keepttl', 'k:z:setex', 'k:z:getset', 'k:z:mset'].map((key) => stale(key)));
    const c = h.client();
    await c.set('k:z:keepttl', 'v2', 'KEEPTTL');
    await c.setex('k:z:setex', 60, 'v2');
    expect(await c.getset('k:z:getset', 'v2')).toBe(null);
    await c.mset('k:z:mset', 'v2');
    expect(Number(await h.direct().call('PEXPIRETIME', 'k:z:keepttl'))).toBe(-1);
    expect(await c.persist('k:z:setex')).toBe(1); // leave nothing with a TTL behind
    await h.verify(expect, [
      { key: 'k:z:keepttl', ops: ['set', 'expired', 'set'] },
      { key: 'k:z:setex', ops: ['set', 'expired', 'set'] },
      { key: 'k:z:getset', ops: ['set', 'expired', 'set'] },
      { key: 'k:z:mset', ops: ['set', 'expired', 'set'] },
    ]);
  });

  it.concurrent('DEL, UNLINK, GETDEL, PEXPIRE, PERSIST, GETEX, RESTORE after the deadline: each reports the expiry once', async ({ expect }) => {
    const keys = ['del', 'unlink', 'getdel', 'pexpire', 'persist', 'getex', 'restore'].map((k) => `k:z:${k}`);
    await Promise.all(keys.map((key) => stale(key)));
    const c = h.client();
    expect(await c.del('k:z:del')).toBe(0);
    expect(await c.unlink('k:z:unlink')).toBe(0);
    expect(await c.getdel('k:z:getdel')).toBe(null);
    expect(await c.pexpire('k:z:pexpire', 60_000)).toBe(0);
    expect(await c.persist('k:z:persist')).toBe(0);
    expect(await c.call('GETEX', 'k:z:getex', 'PX', 60_000)).toBe(null);
    expect(await c.call('RESTORE', 'k:z:restore', 0, payload.value!)).toBe('OK');
    await h.verify(expect, keys.map((key) => ({ key, ops: ['set', 'expired'] })));
  });

  it.concurrent('a read through the proxy (not rewritten) makes Redis publish; the subscription reports it', async ({ expect }) => {
    await stale('k:z:get');
    expect(await h.client().get('k:z:get')).toBe(null);
    await h.verify(expect, [{ key: 'k:z:get', ops: ['set', 'expired'] }]);
  });

  it.concurrent('RENAME from an expired source (fails), and onto an expired destination', async ({ expect }) => {
    const c = h.client();
    await Promise.all([stale('k:z:rsrc'), stale('k:z:rdst')]);
    await expect(c.rename('k:z:rsrc', 'k:z:rsrc-to')).rejects.toThrow('ERR no such key');
    await c.set('k:z:rsrc2', 'v');
    expect(await c.rename('k:z:rsrc2', 'k:z:rdst')).toBe('OK');
    await h.verify(expect, [
      { key: 'k:z:rsrc', ops: ['set', 'expired'] },
      { key: 'k:z:rsrc-to', ops: [] },
      { key: 'k:z:rsrc2', ops: ['set'] },
      { key: 'k:z:rdst', ops: ['set', 'expired'] },
    ]);
  });

  it.concurrent('COPY onto an expired destination in the same database', async ({ expect }) => {
    await stale('k:z:cdst');
    await h.client().set('k:z:csrc', 'v');
    expect(await h.client().copy('k:z:csrc', 'k:z:cdst')).toBe(1);
    await h.verify(expect, [
      { key: 'k:z:csrc', ops: ['set'] },
      { key: 'k:z:cdst', ops: ['set', 'expired'] },
    ]);
  });

  it.concurrent('MOVE (with a TTL) onto a key of db 1 whose indexed incarnation expired unreported', async ({ expect }) => {
    await stale('k:z:move', 1);
    await h.client(0).set('k:z:move', 'v', 'PX', 300);
    expect(await h.client(0).move('k:z:move', 1)).toBe(1);
    // The old db 1 incarnation ran out before the MOVE: it must be reported (and only once).
    await waitFor(() => h.ops('k:z:move', 1), (ops) => ops.length >= 2, 1000);
    expect(await h.ops('k:z:move', 1)).toEqual(['set', 'expired']);
    await sleep(450);
    expect(await h.direct(1).get('k:z:move')).toBe(null); // the moved incarnation, now expired
    await h.verify(expect, [
      { key: 'k:z:move', ops: ['set'] },
      { key: 'k:z:move', db: 1, ops: ['set', 'expired', 'expired'] },
    ]);
  });

  it.concurrent('MOVE (without a TTL) onto a key of db 1 whose indexed incarnation expired unreported', async ({ expect }) => {
    await stale('k:z:move2', 1);
    await h.client(0).set('k:z:move2', 'v');
    expect(await h.client(0).move('k:z:move2', 1)).toBe(1);
    await h.verify(expect, [
      { key: 'k:z:move2', ops: ['set'] },
      { key: 'k:z:move2', db: 1, ops: ['set', 'expired'] },
    ]);
  });

  it.concurrent('COPY ... DB 1 onto a key of db 1 whose indexed incarnation expired unreported', async ({ expect }) => {
    await stale('k:z:cdb', 1);
    await h.client(0).set('k:z:cdb-src', 'v');
    expect(await h.client(0).copy('k:z:cdb-src', 'k:z:cdb', 'DB', 1)).toBe(1);
    await h.verify(expect, [
      { key: 'k:z:cdb-src', ops: ['set'] },
      { key: 'k:z:cdb', db: 1, ops: ['set', 'expired'] },
    ]);
  });
});

/** Assertion outside a test context (setup). */
function expect0(reply: unknown): void {
  if (reply !== 'OK') throw new Error(`setup: expected OK, got ${JSON.stringify(reply)}`);
}
