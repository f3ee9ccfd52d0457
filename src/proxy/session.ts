// One client connection and its own upstream connection to Redis. All connection state (db,
// auth, MULTI, WATCH, subscriptions, protocol, CLIENT settings) lives in Redis, exactly as without
// the proxy. Requests are framed, not decoded; replies are forwarded as raw bytes, never read.
import type { Socket } from 'node:net';
import type { FramerLimits, RequestFrame } from '../resp/request-framer.js';
import { RequestFramer } from '../resp/request-framer.js';
import { encodeCommand } from '../resp/encode.js';
import { replyEnd } from '../resp/reply-scanner.js';
import type { Registry } from '../notify/registry.js';
import type { Upstream } from '../upstream/upstream.js';
import { keepLastReplies } from './last-replies.js';
import type { Rewriter, SessionState } from './rewrite.js';

export interface SessionOptions {
  /** Where Redis is (TCP, TLS, Unix socket; the master Sentinel names). */
  upstream: Upstream;
  /** Database the session starts in; selected before the client's first command. */
  initialDb: number;
  limits: FramerLimits;
  registry: Registry;
  rewriter: Rewriter;
  /** New upstream connections must AUTH first. */
  authRequired: () => boolean;
  /** The registry view is provably current (its change subscription is up and loaded). */
  registryIsCurrent: () => boolean;
  /** Resolves when it is current again (or after a bounded wait). */
  whenCurrent: () => Promise<void>;
}

export class Session {
  private readonly framer: RequestFramer;
  private readonly upstream: Socket;
  /**
   * Requests wait (in order; the client is not read meanwhile) while the registry view may be
   * stale, and while a registration is announced to every proxy: nothing that may need an event
   * goes to Redis unchanged, and nothing goes before what it must follow.
   */
  private holding = false;
  private readonly heldChunks: Buffer[] = [];
  private chunkHold: Promise<void> | null = null;
  /** What the rewriter reads of this session; one object, updated in place (hot path). */
  private readonly state: SessionState;
  /** Placeholders among held pieces, and what replaces each once the hold is over. */
  private readonly lateBytes = new Map<Buffer, () => Buffer[]>();
  // The proxy's own SELECT (for a database in the upstream URL) gets a reply the client must not
  // see. Only while such a reply is expected are requests and replies counted (by ordinal), so
  // that exactly that reply is dropped. With requirepass the SELECT first fails with NOAUTH, and
  // is sent again right after each AUTH of the client until it succeeds. Until then every request
  // gets exactly one reply (unauthenticated clients can do nothing else), so counting is exact.
  private counting = false;
  private requestsSent = 0;
  private repliesSeen = 0;
  private readonly dropReplyOrdinals: number[] = [];
  private partialReply: Buffer | null = null;
  private selectAfterAuth = false;
  /** The client is not read before the first SELECT reply: nothing may run in the wrong db. */
  private handshaking = false;
  private poisoned = false;
  private closed = false;
  /** Pieces for the upstream socket from the current client chunk, written at its end. */
  private readonly outgoing: Buffer[] = [];
  // The run of consecutive forwarded-as-is bytes not yet written (coalesced into one write).
  private runBuf: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;

  constructor(
    private readonly client: Socket,
    private readonly options: SessionOptions,
    private readonly onClose: (session: Session) => void,
  ) {
    this.framer = new RequestFramer(options.limits);
    this.state = { registry: options.registry.all, authAttempted: false, user: 'default' };
    client.setNoDelay(true);
    client.pause(); // nothing is read until the upstream connection is there
    const link = options.upstream.open(() => this.closeForFailover());
    const upstream = link.socket;
    this.upstream = upstream;

    let connected = false;
    upstream.once(link.readyEvent, () => {
      connected = true;
      if (options.initialDb !== 0) {
        this.handshaking = true;
        this.counting = true;
        this.sendSelect();
        return;
      }
      client.resume();
    });
    upstream.on('data', (chunk: Buffer) => this.fromUpstream(chunk));
    // Redis's last reply before it reset a connection the client kept writing to (after QUIT).
    keepLastReplies(upstream, (chunk) => this.fromUpstream(chunk));
    upstream.on('drain', () => {
      if (!this.poisoned && !this.handshaking && !this.holding) client.resume();
    });
    // Redis closed (QUIT, CLIENT KILL, protocol error, shutdown): the client still gets every
    // reply already read, then its connection ends.
    upstream.on('end', () => client.end());
    upstream.on('close', () => client.destroySoon());
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (connected || client.destroyed) return;
      // Never connected: tell the client why, Redis-style, then close.
      client.end(`-ERR notifylist-proxy: upstream ${link.name} unavailable (${error.code ?? error.message})\r\n`);
    });

    client.on('data', (chunk: Buffer) => this.fromClient(chunk));
    client.on('drain', () => upstream.resume());
    // A client that half-closes: Redis closes on EOF too, so pass the EOF on.
    client.on('end', () => upstream.end());
    client.on('close', () => this.close());
    client.on('error', () => client.destroy());
  }

  /** Stops reading the client and ends both connections once written. */
  shutdown(): void {
    this.client.pause();
    this.upstream.end();
    this.client.end();
  }

  /**
   * The master moved (Sentinel): nothing more goes to the old one. The client gets the replies
   * already read from it, then its connection ends; it reconnects (to the new master), as after
   * a failover without the proxy, where Sentinel has the old master close its clients.
   */
  private closeForFailover(): void {
    this.poison();
    this.heldChunks.length = 0;
    this.upstream.destroy(); // 'close': the client's connection ends once written
  }

  /** The client connection is gone: drop the upstream connection with it. */
  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.upstream.destroy();
    this.onClose(this);
  }

  private fromClient(chunk: Buffer): void {
    if (this.poisoned) return;
    if (this.holding) {
      this.heldChunks.push(chunk);
      return;
    }
    // A stale registry could let a write to a newly registered key through unchanged: wait.
    if (!this.options.registryIsCurrent()) {
      this.hold(this.options.whenCurrent(), [], chunk);
      return;
    }
    this.processChunk(chunk);
  }

  private processChunk(chunk: Buffer): void {
    const error = this.framer.push(chunk, this.onFrame);
    this.flushRun();
    if (error) this.outgoing.push(error.upstreamTrigger);
    const chunkHold = this.chunkHold;
    this.chunkHold = null;
    if (chunkHold !== null) {
      this.hold(chunkHold, this.outgoing.splice(0));
    } else {
      this.writeOutgoing();
    }
    if (error) this.poison();
    // Backpressure: a Redis that does not keep up stops us reading the client.
    if (this.upstream.writableNeedDrain) this.client.pause();
  }

  /** Writes `pieces` (then processes `chunk` and what arrived meanwhile) once `until` resolves. */
  private hold(until: Promise<void>, pieces: Buffer[], chunk?: Buffer): void {
    this.holding = true;
    this.client.pause();
    void until.then(() => {
      if (this.closed) return;
      this.holding = false;
      for (const piece of pieces) {
        const later = this.lateBytes.get(piece);
        if (later === undefined) {
          this.outgoing.push(piece);
        } else {
          this.lateBytes.delete(piece);
          this.outgoing.push(...later());
        }
      }
      this.writeOutgoing();
      if (chunk !== undefined) this.processChunk(chunk);
      while (!this.holding && !this.poisoned && this.heldChunks.length > 0) this.fromClient(this.heldChunks.shift()!);
      if (!this.holding && !this.poisoned && !this.handshaking && !this.upstream.writableNeedDrain) this.client.resume();
    });
  }

  /** One write for the usual single piece; several go out corked, as one writev. */
  private writeOutgoing(): void {
    const outgoing = this.outgoing;
    if (outgoing.length === 1) {
      this.upstream.write(outgoing[0]);
    } else if (outgoing.length > 1) {
      this.upstream.cork();
      for (const piece of outgoing) this.upstream.write(piece);
      this.upstream.uncork();
    }
    outgoing.length = 0;
  }

  private readonly onFrame = (frame: RequestFrame): void => {
    let authenticates = false;
    if (frame.argc > 0) {
      if (this.options.authRequired()) authenticates = this.trackAuth(frame);
      if (this.counting) this.requestsSent++;
    }
    const rewrite = this.options.rewriter.rewrite(frame, this.state);
    if (rewrite.kind === 'forward') {
      if (frame.buf === this.runBuf && frame.start === this.runEnd) {
        this.runEnd = frame.end;
      } else {
        this.flushRun();
        this.runBuf = frame.buf;
        this.runStart = frame.start;
        this.runEnd = frame.end;
      }
    } else {
      this.flushRun();
      if (rewrite.later) {
        // A placeholder of its own, replaced by the bytes once the hold is over (see hold()).
        const placeholder = Buffer.alloc(0);
        this.lateBytes.set(placeholder, rewrite.later);
        this.outgoing.push(placeholder);
      }
      for (const bytes of rewrite.bytes) this.outgoing.push(bytes);
      if (rewrite.hold) this.chunkHold = this.chunkHold ? Promise.all([this.chunkHold, rewrite.hold]).then(() => undefined) : rewrite.hold;
    }
    if (authenticates && this.selectAfterAuth) {
      // Right behind the AUTH in the upstream stream.
      this.flushRun();
      this.sendSelect();
    }
  };

  /** SELECT of the URL's database; its reply is dropped (see `counting`). */
  private sendSelect(): void {
    this.dropReplyOrdinals.push(this.requestsSent++);
    this.outgoing.push(encodeCommand(['SELECT', String(this.options.initialDb)]));
    if (this.handshaking) this.writeOutgoing();
  }

  /** Notes AUTH / HELLO ... AUTH / RESET; true if the frame tries to authenticate. */
  private trackAuth(frame: RequestFrame): boolean {
    let authenticates = frame.argIs(0, 'auth');
    if (!authenticates && frame.argIs(0, 'hello')) {
      for (let i = 1; i < frame.argc; i++) if (frame.argIs(i, 'auth')) authenticates = true;
    }
    if (authenticates) this.state.authAttempted = true;
    else if (frame.argIs(0, 'reset')) this.state.authAttempted = false;
    return authenticates;
  }

  private flushRun(): void {
    const run = this.runBuf;
    if (run === null) return;
    this.outgoing.push(this.runStart === 0 && this.runEnd === run.length ? run : run.subarray(this.runStart, this.runEnd));
    this.runBuf = null;
  }

  /**
   * Malformed request: everything before it was forwarded, followed by bytes that make Redis fail
   * with the very same error and close the connection (the framer's upstreamTrigger). The client thus gets all earlier replies,
   * then Redis's own error text, in order, and only this connection closes.
   */
  private poison(): void {
    this.poisoned = true;
    this.client.pause();
    this.client.removeAllListeners('data');
  }

  private fromUpstream(chunk: Buffer): void {
    if (this.counting) {
      chunk = this.dropOwnReplies(chunk);
      if (chunk.length === 0) return;
    }
    if (!this.client.write(chunk)) this.upstream.pause();
  }

  /** Counts replies, drops those to the proxy's own SELECT, returns what the client gets. */
  private dropOwnReplies(chunk: Buffer): Buffer {
    const bytes = this.partialReply ? Buffer.concat([this.partialReply, chunk]) : chunk;
    this.partialReply = null;
    const forward: Buffer[] = [];
    let offset = 0;
    while (this.counting) {
      const end = replyEnd(bytes, offset);
      if (end === -1) {
        this.partialReply = bytes.subarray(offset);
        offset = bytes.length;
        break;
      }
      if (this.dropReplyOrdinals[0] === this.repliesSeen++) {
        this.dropReplyOrdinals.shift();
        this.onSelectReply(bytes.toString('latin1', offset, end));
      } else {
        forward.push(bytes.subarray(offset, end));
      }
      offset = end;
      if (!this.selectAfterAuth && this.dropReplyOrdinals.length === 0) this.counting = false;
    }
    if (offset < bytes.length) forward.push(bytes.subarray(offset)); // counting is over
    if (!this.counting && this.partialReply) {
      forward.push(this.partialReply);
      this.partialReply = null;
    }
    return forward.length === 1 ? forward[0] : Buffer.concat(forward);
  }

  private onSelectReply(reply: string): void {
    if (reply.startsWith('-NOAUTH')) {
      this.selectAfterAuth = true; // again after the client's next AUTH
    } else if (reply.startsWith('-')) {
      this.client.end(`-ERR notifylist-proxy: cannot select database ${this.options.initialDb}: ${reply.slice(1)}`);
      this.upstream.destroy();
      return;
    } else {
      this.selectAfterAuth = false;
    }
    if (this.handshaking) {
      this.handshaking = false;
      this.client.resume();
    }
  }
}
