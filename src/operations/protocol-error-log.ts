// "A client closed for a protocol error" lines, at most one per PROTOCOL_ERROR_LOG_MS per proxy: a
// client (or a scanner) sending garbage in a loop must not flood the log. The first error is logged
// at once; those within the next interval are counted, and one line at its end gives the last
// one's details and how many others there were (`suppressed`: not logged on their own). Every line
// thus stands for 1 + suppressed clients.
import type { Log } from './logger.js';

export const PROTOCOL_ERROR_LOG_MS = 1000;

export class ProtocolErrorLog {
  private lastLineAt = -Infinity;
  private suppressed = 0;
  private last: { client: string; error: string } | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly log: Log) {}

  /** A session closes its client for this protocol error (Redis's own text, without "ERR "). */
  report(client: string, error: string): void {
    if (Date.now() - this.lastLineAt >= PROTOCOL_ERROR_LOG_MS) {
      this.line(client, error, 0);
      return;
    }
    this.suppressed++;
    this.last = { client, error };
    this.timer ??= setTimeout(() => this.flush(), this.lastLineAt + PROTOCOL_ERROR_LOG_MS - Date.now()).unref();
  }

  /** Says what is still counted (at shutdown too). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.suppressed === 0 || this.last === null) return;
    const { client, error } = this.last;
    const suppressed = this.suppressed - 1;
    this.suppressed = 0;
    this.last = null;
    this.line(client, error, suppressed);
  }

  private line(client: string, error: string, suppressed: number): void {
    this.lastLineAt = Date.now();
    const others = suppressed > 0 ? ` (and ${suppressed} other client(s) within ${PROTOCOL_ERROR_LOG_MS} ms, not logged)` : '';
    const msg = `client ${client} closed for a protocol error: ${error}${others}`;
    this.log.warn('client_protocol_error', msg, { client, error, suppressed });
  }
}
