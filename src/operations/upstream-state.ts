// Whether Redis is reachable, as the control connection sees it, with one log line per change:
// upstream_lost when it closes, upstream_back when it is ready again (ioredis retries in between:
// each failed retry closes again, and is not a change). (Reconnects are counted for the metrics
// in ProxyCounters; readiness asks Redis with a PING.)
import type { Redis } from 'ioredis';
import type { Log } from './logger.js';

export class UpstreamState {
  /** Watched from a started proxy: the control connection is ready. */
  up = true;
  private lostAt = 0;
  private lastError: string | null = null;
  private stopped = false;

  constructor(
    control: Redis,
    /** Where Redis is now (under Sentinel: the current master). */
    private readonly name: () => string,
    private readonly log: Log,
  ) {
    control.on('error', (error: Error) => (this.lastError ??= error.message));
    control.on('close', () => this.lost());
    control.on('ready', () => this.back());
  }

  /** The proxy is closing its connections: that is no loss. */
  stop(): void {
    this.stopped = true;
  }

  private lost(): void {
    if (!this.up || this.stopped) return;
    this.up = false;
    this.lostAt = Date.now();
    const reason = this.lastError;
    const upstream = this.name();
    this.log.warn('upstream_lost', `lost the connection to Redis at ${upstream}${reason ? ` (${reason})` : ''}; reconnecting`, { upstream, reason });
  }

  private back(): void {
    this.lastError = null;
    if (this.up || this.stopped) return;
    this.up = true;
    const downMs = Date.now() - this.lostAt;
    const upstream = this.name();
    this.log.info('upstream_back', `Redis at ${upstream} answers again after ${downMs} ms`, { upstream, downMs });
  }
}
