// Registrations lost by a restart of Redis without persistence are restored from what the proxy
// knew. A restart is told from a FLUSHALL by Redis's run_id (INFO server), which changes with
// every start of the server: registrations that vanish without a run_id change were removed on
// purpose (FLUSHALL / DEL sent to Redis directly) and stay removed.
import type { Redis } from 'ioredis';
import { RELOAD_MESSAGE } from './changes.js';
import type { InternalNames } from './names.js';
import { binary, inDatabase } from './redis-control.js';
import type { RegistrySnapshot } from './registry.js';
import type { Log } from '../operations/logger.js';

const isEmpty = (snapshot: RegistrySnapshot): boolean => [...snapshot.values()].every((patterns) => patterns.size === 0);

export function parseRunId(info: string): string | null {
  return /^run_id:([0-9a-f]+)\r?$/m.exec(info)?.[1] ?? null;
}

/**
 * Restores `known` (HSET of each database's registry hash) if Redis has none of those databases'
 * registrations; then publishes a change so that every proxy reloads. Returns whether it did.
 */
export async function restoreAfterRestart(control: Redis, known: RegistrySnapshot, names: InternalNames, log: Log): Promise<boolean> {
  const registry = names.registry;
  const databases = [...known.keys()].filter((db) => known.get(db)!.size > 0);
  for (const db of databases) {
    const [fields] = (await inDatabase(control, db, [['HGETALL', registry]])) as [Buffer[]];
    if (fields.length > 0) return false; // not lost, or registered anew since the restart
  }
  // One pipeline: every database's registry, then the change message that makes proxies reload.
  const pipeline = control.pipeline();
  let count = 0;
  for (const db of databases) {
    const fields: Buffer[] = [];
    for (const [pattern, entry] of known.get(db)!) fields.push(binary(pattern), binary(entry.value));
    pipeline.select(db).callBuffer('HSET', registry, ...fields);
    count += fields.length / 2;
  }
  pipeline.select(0).publish(names.changes, RELOAD_MESSAGE);
  for (const [error] of (await pipeline.exec()) ?? []) if (error) throw error;
  log.warn('registrations_restored', `Redis restarted without the registrations: restored ${count} registration(s) in database(s) ${databases.join(', ')}`, { count, databases });
  return true;
}

/**
 * Keeps the last registrations known to be current, and checks the Redis run behind every new
 * control connection. Until that check is done, a full load that finds no registrations at all
 * does not replace known ones (the cache only proposes candidates: a superset costs a lookup,
 * never a wrong event); after it, the registry is loaded again.
 */
export class RegistrationKeeper {
  private runId: string | null = null;
  private unverified = true;
  private withheld = false;

  constructor(
    private readonly control: Redis,
    private readonly names: InternalNames,
    /** What the proxy knows is registered (its registry view, kept current by change messages). */
    private readonly known: () => RegistrySnapshot,
    private readonly log: Log,
    private readonly reload: () => void,
  ) {
    control.on('close', () => (this.unverified = true));
    control.on('ready', () => void this.verify());
  }

  /** Every full load of the registry passes through here before it replaces the cache. */
  loaded(snapshot: RegistrySnapshot): RegistrySnapshot {
    if (this.unverified && isEmpty(snapshot)) {
      const known = this.known();
      if (!isEmpty(known)) {
        this.withheld = true;
        return known;
      }
    }
    return snapshot;
  }

  private async verify(): Promise<void> {
    try {
      const runId = parseRunId(await this.control.info('server'));
      const previous = this.runId;
      this.runId = runId;
      const known = this.known();
      if (previous !== null && runId !== previous && !isEmpty(known)) {
        await restoreAfterRestart(this.control, known, this.names, this.log);
      }
    } catch (error) {
      // Disconnected again (the next ready checks again), or refused: then do not hold on to a
      // snapshot nobody can verify.
      if (this.control.status !== 'ready') return;
      this.log.warn('restart_check_failed', `cannot check for a Redis restart: ${(error as Error).message}`);
    }
    this.unverified = false;
    if (this.withheld) {
      this.withheld = false;
      this.reload();
    }
  }
}
