// Reading and making the proxy's internal entries in tests, the way the library tags them
// (src/security/secret.ts): counts of event targets, and a reaper lease held by someone else.
import type { Redis } from 'ioredis';
import { tag } from '../../src/security/secret.js';

/** notifylist:targets as list -> number of registrations (the tags dropped). */
export async function targetCounts(direct: Redis, key = 'notifylist:targets'): Promise<Record<string, string>> {
  const counts: Record<string, string> = {};
  for (const [list, value] of Object.entries(await direct.hgetall(key))) counts[list] = value.split(':')[0];
  return counts;
}

/**
 * Makes `holder` the reaper lease holder for `ms` (as a proxy that stopped reaping would be). Redis
 * must hold the deployment's secret: if it holds none yet, a test secret is stored, which the
 * proxies then adopt.
 */
export async function holdLease(direct: Redis, holder: string, ms: number, prefix = 'notifylist:'): Promise<void> {
  await direct.set(`${prefix}secret`, 'test-secret', 'NX');
  const secret = (await direct.get(`${prefix}secret`))!;
  const [seconds, micros] = (await direct.time()) as [string | number, string | number];
  const until = String(Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) + ms);
  await direct.set(`${prefix}reaper`, `${holder}|${until}|${tag(secret, 'lease', holder, until)}`, 'PX', ms);
}
