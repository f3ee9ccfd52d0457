// Redis resets a connection it has stopped reading (after QUIT, CLIENT KILL, a protocol error)
// when the client is still sending. A client connected directly still reads Redis's last reply
// after its own write failed (Redis's test suite relies on it). Node instead destroys a socket as
// soon as a write fails, before reading what is already in the kernel: the last reply is lost.
import { readSync } from 'node:fs';
import type { Socket } from 'node:net';

/**
 * When `socket` is destroyed because a write failed, first reads what Redis sent before the reset
 * (the kernel keeps it after a reset) and passes it to `onData`, in order after every earlier
 * 'data' event.
 */
export function keepLastReplies(socket: Socket, onData: (chunk: Buffer) => void): void {
  // Over TLS the file descriptor carries ciphertext: what is left there cannot be read back.
  if ((socket as Socket & { encrypted?: boolean }).encrypted) return;
  const destroy = socket._destroy;
  socket._destroy = function (this: Socket, error: Error | null, callback: (error?: Error | null) => void): void {
    // Node's socket handle keeps its file descriptor (Unix); elsewhere nothing can be read back.
    const fd = (this as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if ((error as NodeJS.ErrnoException | null)?.syscall === 'write' && typeof fd === 'number' && fd >= 0) {
      const buffer = Buffer.allocUnsafe(64 * 1024);
      for (;;) {
        let n: number;
        try {
          n = readSync(fd, buffer);
        } catch {
          break; // EAGAIN: nothing left; ECONNRESET: past the last byte Redis sent
        }
        if (n === 0) break;
        onData(Buffer.from(buffer.subarray(0, n)));
      }
    }
    destroy.call(this, error, callback);
  };
}
