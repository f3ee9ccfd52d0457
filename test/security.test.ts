// The proxy grants nothing (issue "Security", findings 1-3): registrations are authorized against
// the registering user's own rights and keep to its owner's rights later; what a user writes by
// hand into internal keys is never taken for the library's own entries; the library's functions
// refuse calls that do not come from a proxy. Users are made with exactly the README's recipes.
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig, startProxy, type RunningProxy } from '../src/index.js';
import { LIBRARY_VERSION } from '../src/notify/control-plane.js';
import { registeringRules, writerRules } from '../src/security/user-rules.js';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const ADMIN_PASSWORD = 'adminpw';
let redis: RedisServer;
let proxy: RunningProxy;
let admin: Redis;
let direct: Redis;
const open: Redis[] = [];

/** The README's rules for users who write registered keys, and for users who register. */
const WRITER_RULES = writerRules('notifylist:');
const REGISTERING_RULES = registeringRules('notifylist:');

async function user(name: string, ...rules: string[]): Promise<Redis> {
  await direct.call('ACL', 'SETUSER', name, 'reset', 'on', `>${name}pw`, ...rules);
  const client = new Redis(proxy.port, { username: name, password: `${name}pw`, retryStrategy: () => null });
  open.push(client);
  return client;
}

const events = async (list: string): Promise<Array<{ key: string; op: string }>> => (await direct.lrange(list, 0, -1)).map((e) => JSON.parse(e));

beforeAll(async () => {
  // As where ACL users matter: the default user has a password, so every connection starts
  // unauthenticated and the proxy reads which user each AUTH makes it (README: an AUTH on a
  // connection already authenticated is not read).
  redis = await startRedis({ config: { requirepass: ADMIN_PASSWORD } });
  direct = new Redis(redis.port, { password: ADMIN_PASSWORD });
  proxy = await startProxy(parseConfig(['--port', String(await freePort()), '--upstream', `redis://:${ADMIN_PASSWORD}@127.0.0.1:${redis.port}`, '--lease-ms', '600'], {})!);
  admin = new Redis(proxy.port, { password: ADMIN_PASSWORD });
});

afterAll(async () => {
  for (const client of open) client.disconnect();
  admin?.disconnect();
  direct?.disconnect();
  await proxy?.close();
  await redis?.destroy();
});

beforeEach(async () => {
  await admin.flushall(); // through the proxy: the registrations stay, so drop them too
  for (let i = 0; ; i += 2) {
    const list = (await admin.call('NOTIFYLIST.LIST')) as string[];
    if (list.length === 0) break;
    for (let j = 0; j < list.length; j += 2) await admin.call('NOTIFYLIST.DEL', list[j]);
    if (i > 20) throw new Error('registrations do not go away');
  }
  for (const name of (await direct.call('ACL', 'USERS')) as string[]) if (name !== 'default') await direct.call('ACL', 'DELUSER', name);
});

describe('the README', () => {
  it('lists exactly the rules writing and registering users need (src/security/user-rules.ts)', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(`\`${WRITER_RULES.join(' ')}\``);
    expect(readme).toContain(`\`${REGISTERING_RULES.join(' ')}\``);
  });
});

describe('a registration reaches no further than the registering user', () => {
  const appRules = ['+@all', '-@dangerous', '~app:*', '~app_events', ...REGISTERING_RULES, ...WRITER_RULES];

  it('a pattern the user may not read every key of is refused (no other users\' key names in its list, from writes or backfill)', async () => {
    const app = await user('app', ...appRules);
    await direct.set('secret:old', 'v', 'PX', 400); // would be found by the backfill SCAN (proxy's login)
    await expect(app.call('NOTIFYLIST.SET', 'secret:**', 'app_events')).rejects.toThrow(/^NOPERM notifylist: user 'app' may not read every key the pattern can match/);
    await expect(app.call('NOTIFYLIST.SET', '*', 'app_events')).rejects.toThrow(/^NOPERM/);
    await expect(app.call('NOTIFYLIST.SET', 'ap*', 'app_events')).rejects.toThrow(/^NOPERM/);
    expect(await admin.call('NOTIFYLIST.LIST')).toEqual([]);
    await admin.set('secret:1', 'v');
    await sleep(600);
    expect(await direct.exists('app_events')).toBe(0);
    // Within its key patterns it may.
    expect(await app.call('NOTIFYLIST.SET', 'app:*', 'app_events')).toBe('OK');
    expect(await app.call('NOTIFYLIST.SET', 'app:orders:*', 'app_events')).toBe('OK');
    await admin.set('app:1', 'v');
    expect(await events('app_events')).toEqual([{ key: 'app:1', op: 'set' }]);
  });

  it('a client that authenticates again as another user may register only what both users may (the second reply is not read)', async () => {
    await user('app', ...appRules);
    const both = new Redis(proxy.port, { password: ADMIN_PASSWORD });
    open.push(both);
    expect(await both.call('AUTH', 'app', 'apppw')).toBe('OK'); // now app, which the proxy does not read
    await expect(both.call('NOTIFYLIST.SET', 'secret:*', 'app_events')).rejects.toThrow(/^NOPERM notifylist: user 'app' may not read every key/);
    expect(await both.call('NOTIFYLIST.SET', 'app:*', 'app_events')).toBe('OK');
    const back = new Redis(proxy.port, { username: 'app', password: 'apppw' });
    open.push(back);
    expect(await back.call('AUTH', ADMIN_PASSWORD)).toBe('OK'); // app, then default
    await expect(back.call('NOTIFYLIST.SET', 'secret:*', 'app_events')).rejects.toThrow(/^NOPERM notifylist: user 'app' may not read every key/);
  });

  it('a list the user may not push to is refused', async () => {
    const app = await user('app', ...appRules);
    await expect(app.call('NOTIFYLIST.SET', 'app:*', 'victim_queue')).rejects.toThrow(/^NOPERM notifylist: this user has no permissions to RPUSH to the event list victim_queue/);
    await admin.set('app:1', 'v');
    expect(await direct.exists('victim_queue')).toBe(0);
  });

  it("another user's string key as the list: refused, so the admin's writes are not broken", async () => {
    const app = await user('app', ...appRules);
    await admin.set('victim:config', 'do not touch');
    await expect(app.call('NOTIFYLIST.SET', 'cfg:*', 'victim:config')).rejects.toThrow(/^NOPERM/);
    expect(await admin.set('cfg:1', 'v')).toBe('OK');
    expect(await direct.get('victim:config')).toBe('do not touch');
  });

  it("re-registering or removing another user's registration needs the right to push to its list", async () => {
    const app = await user('app', ...appRules);
    expect(await admin.call('NOTIFYLIST.SET', 'app:*', 'admin_events')).toBe('OK');
    await expect(app.call('NOTIFYLIST.SET', 'app:*', 'app_events')).rejects.toThrow(/^NOPERM notifylist: this user has no permissions to change the registration of app:\*/);
    await expect(app.call('NOTIFYLIST.DEL', 'app:*')).rejects.toThrow(/^NOPERM notifylist: this user has no permissions to change the registration of app:\*/);
    await admin.set('app:1', 'v');
    expect(await events('admin_events')).toEqual([{ key: 'app:1', op: 'set' }]);
    expect(await direct.exists('app_events')).toBe(0);
  });

  it('a registration whose owner loses its rights gets nothing the proxy does under its own login (reaper, backfill)', async () => {
    const app = await user('app', ...appRules);
    expect(await app.call('NOTIFYLIST.SET', 'app:*', 'app_events')).toBe('OK');
    await admin.set('app:1', 'v', 'PX', 200);
    await waitFor(() => events('app_events'), (list) => list.length === 2, 3000);
    expect(await events('app_events')).toEqual([{ key: 'app:1', op: 'set' }, { key: 'app:1', op: 'expired' }]);
    // Its keys are taken away; the registration stays in Redis, but the proxy stops acting for it
    // (checked every 5 s while active).
    await direct.call('ACL', 'SETUSER', 'app', 'resetkeys', '~other:*', '~app_events');
    await waitFor(async () => proxy.controlPlane.registry.isSuspended(0, 'app:*'), (suspended) => suspended, 7000, 100);
    expect(proxy.controlPlane.registry.isSuspended(0, 'app:*')).toBe(true);
    await direct.del('app_events');
    await direct.set('app:2', 'v', 'PX', 200); // a TTL the reaper would report
    await admin.call('NOTIFYLIST.SET', 'zz:*', 'zz_events'); // a backfill runs for new patterns
    await sleep(800);
    expect(await direct.exists('app_events')).toBe(0);
    // Writes through the proxy still emit events: they run with the writer's own rights.
    await admin.set('app:3', 'v');
    expect(await events('app_events')).toEqual([{ key: 'app:3', op: 'set' }]);
    // The rights come back: so does the proxy's work for it.
    await direct.call('ACL', 'SETUSER', 'app', '~app:*');
    await waitFor(async () => proxy.controlPlane.registry.isSuspended(0, 'app:*'), (suspended) => !suspended, 7000, 100);
    await admin.set('app:4', 'v', 'PX', 200);
    await waitFor(() => events('app_events'), (list) => list.length === 3, 3000);
    expect((await events('app_events')).at(-1)).toEqual({ key: 'app:4', op: 'expired' });
  });
});

describe('what users write by hand into internal keys is never taken for the library\'s own', () => {
  beforeEach(async () => {
    expect(await admin.call('NOTIFYLIST.SET', 'secret:*', 'secret_events')).toBe('OK');
  });

  it('a writer cannot read the secret', async () => {
    const writer = await user('writer', '+@all', '-@dangerous', '~app:*', ...WRITER_RULES);
    expect(await direct.exists('notifylist:secret')).toBe(1);
    await expect(writer.get('notifylist:secret')).rejects.toThrow(/^NOPERM/);
  });

  it('an expiry entry added by hand gives no `expired` event (ZADD, even with a made-up tag), and is dropped', async () => {
    const writer = await user('writer', '+@all', '-@dangerous', '~app:*', ...WRITER_RULES);
    expect(await writer.zadd('notifylist:expiry', 1, 'secret:victim')).toBe(1);
    expect(await writer.hset('notifylist:tags', 'secret:forged', 'a'.repeat(40))).toBe(1);
    expect(await writer.zadd('notifylist:expiry', 2, 'secret:forged')).toBe(1);
    await waitFor(() => direct.zcard('notifylist:expiry'), (n) => n === 0, 3000);
    expect(await direct.zcard('notifylist:expiry')).toBe(0);
    expect(await direct.exists('secret_events')).toBe(0);
    // Entries the library made are reported as ever.
    await admin.set('secret:real', 'v', 'PX', 100);
    await waitFor(() => events('secret_events'), (list) => list.length === 2, 3000);
    expect(await events('secret_events')).toEqual([{ key: 'secret:real', op: 'set' }, { key: 'secret:real', op: 'expired' }]);
  });

  it('a registration written by hand into the registry is no registration', async () => {
    const registering = await user('reg', '+@all', '-@dangerous', '~app:*', '~app_events', ...REGISTERING_RULES);
    expect(await registering.hset('notifylist:registry', 'secret:**', 'app_events')).toBe(1);
    await admin.call('NOTIFYLIST.INFO'); // any round trip
    await admin.set('secret:1', 'v');
    expect(await direct.exists('app_events')).toBe(0);
    expect(await admin.call('NOTIFYLIST.LIST')).toEqual(['secret:*', 'secret_events']);
  });

  it('an event-target count written by hand does not silence a key', async () => {
    const registering = await user('reg', '+@all', '-@dangerous', '~app:*', ...REGISTERING_RULES);
    expect(await registering.hset('notifylist:targets', 'secret:1', '1')).toBe(1);
    await admin.set('secret:1', 'v');
    expect(await events('secret_events')).toEqual([{ key: 'secret:1', op: 'set' }]);
  });

  it('a reaper lease set by hand does not stop the reaper: backfill and expirations go on', async () => {
    const writer = await user('writer', '+@all', '-@dangerous', '~app:*', '~notifylist:reaper', ...WRITER_RULES);
    await admin.call('NOTIFYLIST.DEL', 'secret:*');
    await sleep(700); // the lease (600 ms) is held by the proxy; let it be taken by hand
    await direct.del('notifylist:reaper');
    expect(await writer.set('notifylist:reaper', 'evil', 'PX', 600_000)).toBe('OK');
    // A key that had its TTL before its pattern was registered: only backfill (the leader) finds it.
    await direct.set('secret:old', 'v', 'PX', 1200);
    expect(await admin.call('NOTIFYLIST.SET', 'secret:*', 'secret_events')).toBe('OK');
    await waitFor(() => events('secret_events'), (list) => list.length === 1, 4000);
    expect(await events('secret_events')).toEqual([{ key: 'secret:old', op: 'expired' }]);
    expect(proxy.controlPlane.reaper.isLeader).toBe(true);
  });
});

describe('the registration barrier cannot be cut short by made-up acknowledgements', () => {
  it('a subscriber of the change channel that answers each announcement with acks it made up (and repeats real ones) does not end the wait', async () => {
    const snoop = new Redis(redis.port, { password: ADMIN_PASSWORD });
    const publisher = new Redis(redis.port, { password: ADMIN_PASSWORD });
    open.push(snoop, publisher);
    await snoop.subscribe('notifylist:changes');
    snoop.on('message', (_channel: string, message: string) => {
      if (message.startsWith('announce ')) {
        const nonce = message.split(' ')[1];
        publisher.publish('notifylist:changes', `ack ${nonce} someone ${'0'.repeat(40)}`).catch(() => undefined);
        publisher.publish('notifylist:changes', `ack ${nonce}`).catch(() => undefined);
      } else if (message.startsWith('ack ')) {
        publisher.publish('notifylist:changes', message).catch(() => undefined); // a real one, once more
      }
    });
    const info = async (): Promise<number> => Number(/barrier_timeouts:(\d+)/.exec((await admin.call('NOTIFYLIST.INFO')) as string)![1]);
    const before = await info();
    const started = Date.now();
    expect(await admin.call('NOTIFYLIST.SET', 'ack:*', 'ack_events')).toBe('OK');
    // The snoop never acknowledges for real: the registration waits its bound (1 s), counted.
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(await info()).toBe(before + 1);
    snoop.disconnect(); // it counts as a subscriber that never acknowledges: not for the next tests
    publisher.disconnect();
  });
});

describe("the library's functions refuse calls that do not come from a proxy", () => {
  it('notifylist_write_allow_oom does not write past maxmemory, nor run commands its variant does not', async () => {
    expect(await admin.call('NOTIFYLIST.SET', 'app:*', 'app_events')).toBe('OK');
    await direct.config('SET', 'maxmemory-policy', 'noeviction');
    const used = async (): Promise<number> => Number(/used_memory:(\d+)/.exec(await direct.info('memory'))![1]);
    await direct.config('SET', 'maxmemory', String((await used()) + 1024 * 1024));
    const big = Buffer.alloc(1024 * 1024, 'x');
    try {
      await expect(direct.set('app:plain', big)).rejects.toThrow(/^OOM/);
      const before = await used();
      for (let i = 0; i < 10; i++) {
        await expect(direct.call('FCALL', 'notifylist_write_allow_oom', '0', '0', 'set', `app:big${i}`, big)).rejects.toThrow(
          "ERR notifylist: this library's functions are called by notifylist-proxy only",
        );
      }
      expect(await used()).toBeLessThan(before + 1024 * 1024);
      // Even with the secret (an admin can read it), each function runs only its own commands.
      const secret = (await direct.get('notifylist:secret'))!;
      await expect(direct.call('FCALL', 'notifylist_write_allow_oom', '0', secret, '0', 'set', 'app:x', 'v')).rejects.toThrow(
        'ERR notifylist: set is not a command this function runs',
      );
      await expect(direct.call('FCALL', 'notifylist_flush', '0', secret, '16', 'set', 'app:x', 'v')).rejects.toThrow('ERR notifylist: notifylist_flush runs FLUSHDB and FLUSHALL only');
      await expect(direct.call('FCALL', 'notifylist_swapdb', '0', secret, 'set', 'app:x', 'v')).rejects.toThrow('ERR notifylist: notifylist_swapdb runs SWAPDB only');
      expect(await direct.exists('app:x')).toBe(0);
    } finally {
      await direct.config('SET', 'maxmemory', '0');
    }
  });

  it('every function but the version checks refuses a call without the secret', async () => {
    const calls: Array<[string, ...string[]]> = [
      ['notifylist_write', '0', '0', 'set', 'k', 'v'],
      ['notifylist_flush', '0', '16', 'flushall'],
      ['notifylist_swapdb', '0', 'swapdb', '0', '1'],
      ['notifylist_expired', '1', 'k', '0'],
      ['notifylist_backfill', '0', '100'],
      ['notifylist_set', '0', 'x', 'default', '', 'p*', 'l'],
      ['notifylist_del', '0', 'x', 'default', '', 'p*'],
      ['notifylist_info', '0', 'x', '16', '0'],
      ['notifylist_lease', '1', 'notifylist:reaper', 'x', 'me', '60000'],
      ['notifylist_release', '1', 'notifylist:reaper', 'x', 'me'],
      ['notifylist_migrate', '0', 'x'],
      ['notifylist_take_counts', '0', 'x', '16', 'someone', 'set'],
    ];
    for (const [fn, ...args] of calls) {
      await expect(direct.call('FCALL', fn, ...args), fn).rejects.toThrow("ERR notifylist: this library's functions are called by notifylist-proxy only");
    }
    await expect(direct.call('FCALL_RO', 'notifylist_list', '0', 'x')).rejects.toThrow('called by notifylist-proxy only');
    expect(await direct.call('FCALL_RO', 'notifylist_version', '0')).toBe(LIBRARY_VERSION);
  });
});

describe('a library from before tags (version 2) is replaced, and what it made keeps working', () => {
  it('its registrations and expiry entries get their tags once', async () => {
    const other = await startRedis();
    const otherDirect = new Redis(other.port);
    try {
      const v2 = readFileSync(new URL('./fixtures/notifylist-v2.lua', import.meta.url), 'utf8').replace(/__PREFIX__/g, 'notifylist:');
      await otherDirect.call('FUNCTION', 'LOAD', v2);
      // What the version 2 library wrote: plain registry values, index entries without tags.
      await otherDirect.hset('notifylist:registry', 'm*', 'mlist');
      await otherDirect.set('m1', 'v', 'PX', 1500);
      await otherDirect.zadd('notifylist:expiry', Number(await otherDirect.call('PEXPIRETIME', 'm1')), 'm1');
      const upgraded = await startProxy(parseConfig(['--port', String(await freePort()), '--upstream', other.url], {})!);
      const client = new Redis(upgraded.port);
      try {
        expect(await otherDirect.call('FCALL_RO', 'notifylist_version', '0')).toBe(LIBRARY_VERSION);
        expect(await client.call('NOTIFYLIST.LIST')).toEqual(['m*', 'mlist']);
        await client.set('m2', 'v');
        await waitFor(async () => otherDirect.lrange('mlist', 0, -1), (list) => list.length === 2, 4000);
        expect(await otherDirect.lrange('mlist', 0, -1)).toEqual(['{"key":"m2","op":"set"}', '{"key":"m1","op":"expired"}']);
      } finally {
        client.disconnect();
        await upgraded.close();
      }
    } finally {
      otherDirect.disconnect();
      await other.destroy();
    }
  });
});
