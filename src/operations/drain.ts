// Graceful drain: what the proxy does on SIGTERM / SIGINT (cli.ts; with --workers, each worker
// runs it when the primary forwards the signal). One entry point: drainProxy().
//   1. Stop accepting on every listener (TCP, TLS, Unix socket): new clients are refused.
//   2. Every session stops reading its client; once the replies to what was already forwarded are
//      written (an idle session: at once), it closes (session-drain.ts tells when).
//   3. Then (at the latest LAST_SHARE of --drain-ms before the end) the sessions closed last:
//      RESP2 subscribers, and those that got no byte from Redis for QUIET_MS (blocked commands,
//      a MULTI not yet EXECed, a client that does not read): an EOF to Redis, which ends a
//      blocked command without serving it (nothing is popped) or discards the transaction, and
//      closes after the replies it has written.
//   4. At the deadline whatever is still open is destroyed; the control plane stops last (it
//      may still be reporting expirations of forwarded writes), in the time that is left.
import { silentLog, type Log } from './logger.js';
import type { RunningProxy } from '../index.js';
import { drainToken, type SessionDrain } from './session-drain.js';

/** How often the drain looks at its sessions (quiet ones, all closed). */
const TICK_MS = 25;
/** Share of --drain-ms kept for step 3 (closing blocked and subscribed clients) and for step 4. */
const LAST_SHARE = 0.25;
const CONTROL_SHARE = 0.1;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** Resolves when `done()` holds (looked at every TICK_MS), or at `until` (ms since the epoch). */
async function waitUntil(done: () => boolean, until: number): Promise<void> {
  while (!done() && Date.now() < until) await sleep(Math.min(TICK_MS, until - Date.now()));
}

/**
 * Drains `proxy` (steps above) and stops it, within `drainMs`. Resolves when the proxy is stopped
 * (the caller exits). Logs its start, the clients closed by the deadline if any, and its end.
 */
export async function drainProxy(proxy: RunningProxy, drainMs: number, log: Log = silentLog): Promise<void> {
  const started = Date.now();
  const end = started + drainMs;
  const sessionsEnd = end - Math.min(500, drainMs * CONTROL_SHARE);
  const lastFrom = end - drainMs * LAST_SHARE;
  const sessions = proxy.server.drain(drainToken());
  log.info('draining', `draining: ${sessions.length} client connection(s), within ${drainMs} ms (--drain-ms)`, { clients: sessions.length, drainMs });
  const open = new Set(sessions);
  for (const entry of sessions) void entry.drain.closed.then(() => open.delete(entry));
  const endedLast = new Set<SessionDrain>();
  const endLast = (): void => {
    for (const { session, drain } of open) {
      if (!endedLast.has(drain) && (drain.last || Date.now() >= lastFrom)) {
        endedLast.add(drain);
        session.endUpstream();
      }
    }
  };
  // Steps 2 and 3: the last ones are ended only once every other session is closed.
  await waitUntil(() => {
    if (open.size === 0) return true;
    if ([...open].every(({ drain }) => drain.last || endedLast.has(drain)) || Date.now() >= lastFrom) endLast();
    return false;
  }, sessionsEnd);
  if (open.size > 0) {
    log.warn('drain_deadline', `drain: ${open.size} client connection(s) still open after ${Date.now() - started} ms (--drain-ms ${drainMs}), closed now`, {
      clients: open.size,
      drainMs,
    });
    for (const { session } of open) session.destroy();
  }
  // Step 4: the control plane (and the listeners, already closed) in the time left.
  await Promise.race([proxy.close().catch(() => undefined), sleep(end - Date.now())]);
  log.info('drained', `drained in ${Date.now() - started} ms`, { ms: Date.now() - started });
}
