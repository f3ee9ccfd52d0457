// A raw RESP connection for byte-exact comparisons: sends bytes, collects whole replies as bytes.
import type { Socket } from 'node:net';
import { replyEnd } from '../../src/resp/reply-scanner.js';
import { connectTo, type Target } from './transport.js';

export { replyEnd };

export class RawClient {
  private received = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.notify();
    });
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
    socket.on('error', () => undefined);
  }

  /** To a TCP port (on 127.0.0.1 unless `host` says), or to any target (TLS, Unix socket: see transport.ts). */
  static async connect(to: number | Target, host?: string): Promise<RawClient> {
    return new RawClient(await connectTo(typeof to === 'number' ? { port: to, host } : to));
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  send(bytes: Buffer | string): void {
    this.socket.write(bytes);
  }

  /** Waits for `count` whole replies and returns their bytes (concatenated). */
  async replies(count: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let offset = 0;
      let complete = 0;
      while (complete < count) {
        const end = replyEnd(this.received, offset);
        if (end === -1) break;
        offset = end;
        complete++;
      }
      if (complete === count) {
        const bytes = this.received.subarray(0, offset);
        this.received = this.received.subarray(offset);
        return Buffer.from(bytes);
      }
      if (this.closed || Date.now() > deadline) {
        throw new Error(`expected ${count} replies, got ${complete}: ${JSON.stringify(this.received.toString('latin1'))}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Everything until the peer closes the connection. */
  async untilClosed(timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const bytes = this.received;
    this.received = Buffer.alloc(0);
    return bytes;
  }

  /** What has arrived and not been taken by replies() yet (latin1), without waiting. */
  pending(): string {
    return this.received.toString('latin1');
  }

  close(): void {
    this.socket.destroy();
  }
}

/** RESP multibulk encoding for tests (strings are sent as UTF-8, Buffers as they are). */
export function command(...args: Array<string | Buffer | number>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg));
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}
