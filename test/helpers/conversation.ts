// One-shot raw conversations (send bytes, collect everything until the peer closes or goes quiet)
// and process memory readings, for robustness tests.
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { keepLastReplies } from '../../src/proxy/last-replies.js';

export interface Conversation {
  /** Every byte received. */
  data: Buffer;
  /** The peer closed the connection (FIN or reset). */
  closed: boolean;
  /** The connection ended with an error (e.g. ECONNRESET) instead of a clean FIN. */
  error: string | null;
  /** The peer closed cleanly (FIN received). */
  ended: boolean;
}

export interface ConverseOptions {
  /** Give up waiting for a close this long after the last byte was received (or sent). */
  idleMs?: number;
  /** Absolute limit. */
  timeoutMs?: number;
  /** Delay between chunks (0: one write each, back to back). */
  gapMs?: number;
}

/** Connects, writes the chunks, and returns what came back once the peer closed or went quiet. */
export function converse(port: number, chunks: Array<Buffer | string>, options: ConverseOptions = {}): Promise<Conversation> {
  const { idleMs = 300, timeoutMs = 10_000, gapMs = 0 } = options;
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let ended = false;
    let error: string | null = null;
    let idleTimer: NodeJS.Timeout | null = null;
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      if (idleTimer) clearTimeout(idleTimer);
      clearTimeout(hardTimer);
      socket.destroy();
      resolve({ data: Buffer.concat(received), closed, error, ended });
    };
    const armIdle = (): void => {
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = setTimeout(() => finish(false), idleMs);
    };
    const hardTimer = setTimeout(() => finish(false), timeoutMs);
    const onData = (chunk: Buffer): void => {
      received.push(chunk);
      armIdle();
    };
    socket.on('data', onData);
    // Like a C client (redis-cli, Redis's own tests), read what the peer sent before it reset a
    // connection we kept writing to: Redis's protocol error reply, directly and through the proxy.
    keepLastReplies(socket, onData);
    socket.on('end', () => {
      ended = true;
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.on('close', () => finish(true));
    socket.once('connect', async () => {
      try {
        for (const chunk of chunks) {
          if (socket.destroyed) break;
          socket.write(chunk);
          if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
        }
        armIdle();
      } catch (e) {
        reject(e);
      }
    });
    socket.once('error', (e) => {
      if (!socket.connecting) return;
      reject(e);
    });
  });
}

/** Resident set size of a process in bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

/** Splits a RESP reply stream into complete replies' texts (latin1); the rest, if any, last. */
export function splitReplies(data: Buffer, replyEnd: (buf: Buffer, start: number) => number): { replies: string[]; rest: string } {
  const replies: string[] = [];
  let offset = 0;
  for (;;) {
    const end = replyEnd(data, offset);
    if (end === -1) break;
    replies.push(data.toString('latin1', offset, end));
    offset = end;
  }
  return { replies, rest: data.toString('latin1', offset) };
}
