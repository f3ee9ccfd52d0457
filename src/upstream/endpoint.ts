// Where one Redis server is: host and port, or a Unix socket's path; and the socket to it.
import { connect, isIP, Socket, type OnReadOpts } from 'node:net';
import type { UpstreamTls } from './tls.js';

export type Endpoint = { host: string; port: number } | { path: string };

export function endpointName(endpoint: Endpoint): string {
  if ('path' in endpoint) return endpoint.path;
  return isIP(endpoint.host) === 6 ? `[${endpoint.host}]:${endpoint.port}` : `${endpoint.host}:${endpoint.port}`;
}

export function sameEndpoint(a: Endpoint | null, b: Endpoint | null): boolean {
  if (a === null || b === null) return a === b;
  if ('path' in a || 'path' in b) return 'path' in a && 'path' in b && a.path === b.path;
  return a.host === b.host && a.port === b.port;
}

/** A socket to Redis and the event after which RESP may flow on it. */
export interface OpenSocket {
  socket: Socket;
  readyEvent: 'connect' | 'secureConnect';
}

/**
 * Gets what Redis sends on a session's link, instead of 'data' events. The chunk is valid only
 * during the call (a plain socket reads into a buffer it reuses): what is kept must be copied, or
 * the reader returns true when it still references the chunk's memory (a write that is queued), and
 * the next read goes into a fresh buffer.
 */
export type Reader = (chunk: Buffer) => boolean;

/** First size of a link's read buffer; it grows while reads fill it. */
const READ_BUFFER_MIN = 8 * 1024;
/** As Node's own reads. */
const READ_BUFFER_MAX = 64 * 1024;
/** A grown buffer goes back to the first size after this many reads that would have fit in it. */
const SHRINK_AFTER_READS = 256;

/**
 * READ_BUFFER_MIN buffers are cut from slabs (one allocation for several links, as Node's pool;
 * a link that keeps its buffer keeps at most one slab alive, READ_BUFFER_MAX bytes).
 */
const SLAB_SIZE = 8 * READ_BUFFER_MIN;
let slab: Buffer | null = null;
let slabUsed = 0;

/** A buffer of `size` bytes no one else has: never handed out twice, its memory is the caller's. */
function readBuffer(size: number): Buffer {
  if (size !== READ_BUFFER_MIN) return Buffer.allocUnsafeSlow(size);
  if (slab === null || slabUsed === SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    slabUsed = 0;
  }
  slabUsed += size;
  return slab.subarray(slabUsed - size, slabUsed);
}

/**
 * `onread` for a plain socket: reads go into one buffer, reused, without Node's allocation and
 * Readable stream work per read (a pass-through copies every reply straight to the client's
 * socket, nothing is queued in between). A new buffer is taken when the reader kept the last one,
 * and when reads fill it (up to READ_BUFFER_MAX) or stay small for long (back to READ_BUFFER_MIN).
 */
function reusedBufferReads(reader: Reader): OnReadOpts {
  let size = READ_BUFFER_MIN;
  let fresh = true;
  let small = 0;
  // Called after every read: anything but a Uint8Array keeps the buffer (Node's net.js).
  const next = (): Buffer | undefined => {
    if (!fresh) return undefined;
    fresh = false;
    return readBuffer(size);
  };
  return {
    buffer: next as () => Uint8Array,
    callback: (bytes, buffer) => {
      const b = buffer as Buffer;
      if (reader(bytes === b.length ? b : b.subarray(0, bytes))) fresh = true;
      if (bytes === size && size < READ_BUFFER_MAX) {
        size = READ_BUFFER_MAX;
        small = 0;
        fresh = true;
      } else if (size > READ_BUFFER_MIN) {
        if (bytes > READ_BUFFER_MIN) small = 0;
        else if (++small === SHRINK_AFTER_READS) {
          size = READ_BUFFER_MIN;
          small = 0;
          fresh = true;
        }
      }
      return true; // (false would stop reading: the session pauses the socket itself)
    },
  };
}

/**
 * Opens a connection to `endpoint` (TLS if `tls`), or, with `later`, returns the socket at once and
 * connects it when `later` resolves with the endpoint (a Sentinel master not known yet): writes
 * made meanwhile wait in the socket. A rejected `later` destroys the socket with its error.
 * With `reader`, what Redis sends goes to it (see Reader) rather than to 'data' events.
 */
export function openSocket(target: Endpoint | Promise<Endpoint>, tls: UpstreamTls | null, reader?: Reader): OpenSocket {
  const onread = reader !== undefined && tls === null ? reusedBufferReads(reader) : undefined;
  const opened = connectTo(target, tls, onread);
  if (reader !== undefined && onread === undefined) opened.socket.on('data', (chunk: Buffer) => void reader(chunk));
  return opened;
}

function connectTo(target: Endpoint | Promise<Endpoint>, tls: UpstreamTls | null, onread: OnReadOpts | undefined): OpenSocket {
  if (!(target instanceof Promise)) {
    if ('path' in target) return { socket: connect({ path: target.path, onread }), readyEvent: 'connect' };
    if (tls) return { socket: tls.connect(target), readyEvent: 'secureConnect' };
    return { socket: connect({ host: target.host, port: target.port, noDelay: true, onread }), readyEvent: 'connect' };
  }
  // (Node's Socket constructor takes onread as connect() does; its types do not say so.)
  const raw = new Socket(onread === undefined ? undefined : ({ onread } as ConstructorParameters<typeof Socket>[0]));
  const late = tls ? tls.connectLater(raw) : null;
  target.then(
    (known) => {
      const socket = late?.socket ?? raw;
      if (socket.destroyed) return;
      if ('path' in known) {
        raw.connect({ path: known.path });
        return;
      }
      late?.connecting(known);
      raw.setNoDelay(true);
      raw.connect({ host: known.host, port: known.port });
    },
    (error: Error) => (late?.socket ?? raw).destroy(error),
  );
  return late ? { socket: late.socket, readyEvent: 'secureConnect' } : { socket: raw, readyEvent: 'connect' };
}
