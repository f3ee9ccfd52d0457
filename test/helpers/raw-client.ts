// A raw RESP connection for byte-exact comparisons: sends bytes, collects whole replies as bytes.
import { connect, type Socket } from 'node:net';

/** End offset of the RESP2/RESP3 reply starting at `start`, or -1 if it is incomplete. */
export function replyEnd(buf: Buffer, start: number): number {
  if (start >= buf.length) return -1;
  const lineEnd = buf.indexOf('\r\n', start);
  if (lineEnd === -1) return -1;
  const type = String.fromCharCode(buf[start]);
  const header = buf.toString('latin1', start + 1, lineEnd);
  const afterLine = lineEnd + 2;
  switch (type) {
    case '+': case '-': case ':': case ',': case '#': case '_': case '(':
      return afterLine;
    case '$': case '!': case '=': {
      const length = Number(header);
      if (length < 0) return afterLine;
      const end = afterLine + length + 2;
      return end <= buf.length ? end : -1;
    }
    case '*': case '~': case '>': case '%': case '|': {
      let count = Number(header);
      if (count < 0) return afterLine;
      if (type === '%' || type === '|') count *= 2;
      let offset = afterLine;
      for (let i = 0; i < count; i++) {
        offset = replyEnd(buf, offset);
        if (offset === -1) return -1;
      }
      // An attribute (|) precedes the reply it annotates.
      return type === '|' ? replyEnd(buf, offset) : offset;
    }
    default:
      // Not RESP (e.g. MONITOR lines are +status): treat the line as one reply.
      return afterLine;
  }
}

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

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
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
