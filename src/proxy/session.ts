// One client connection and its own upstream connection to Redis. All connection state (db,
// auth, MULTI, WATCH, subscriptions, protocol, CLIENT settings) lives in Redis, exactly as without
// the proxy. Requests are framed, not decoded; replies are forwarded as raw bytes, and read only
// while the client may be unauthenticated (and for the proxy's own SELECT).
import type { Socket } from 'node:net';
import type { FramerLimits, ProtocolError, RequestFrame } from '../resp/request-framer.js';
import { RequestFramer } from '../resp/request-framer.js';
import { encodeCommand } from '../resp/encode.js';
import { replyEnd } from '../resp/reply-scanner.js';
import type { Registry } from '../notify/registry.js';
import type { Upstream } from '../upstream/upstream.js';
import type { ProxyCounters } from '../operations/proxy-counters.js';
import { authAttempt, authenticatedBy, isReset } from './auth-tracking.js';
import { keepLastReplies } from './last-replies.js';
import type { SessionDrain } from '../operations/session-drain.js';
import type { Rewriter, SessionState } from './rewrite.js';
import { ReplyMarkers } from './reply-markers.js';

export interface SessionOptions {
  /** Where Redis is (TCP, TLS, Unix socket; the master Sentinel names). */
  upstream: Upstream;
  /** Database the session starts in; selected before the client's first command. */
  initialDb: number;
  limits: FramerLimits;
  registry: Registry;
  rewriter: Rewriter;
  /** New upstream connections must AUTH first (as last asked). */
  authRequired: () => boolean;
  /** The same, asked again first if that answer is old (a client's fate depends on it). */
  authRequiredNow: () => Promise<boolean>;
  /** Ask again soon: a session saw Redis answer otherwise than authRequired() said. */
  recheckAuth: () => void;
  /** The registry view is provably current (its change subscription is up and loaded). */
  registryIsCurrent: () => boolean;
  /** Resolves when it is current again (or after a bounded wait). */
  whenCurrent: () => Promise<void>;
  /** The proxy's counters (requests by path, protocol errors): plain increments (hot path). */
  counters: ProxyCounters;
  /** The client is closed for this protocol error (Redis's text): logged, rate-limited. */
  protocolError: (client: string, error: string) => void;
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
  /** The framer was stopped after a frame (AUTH, RESET); the rest of the chunk waits for this. */
  private stopHold: Promise<void> | null = null;
  /** What the rewriter reads of this session; one object, updated in place (hot path). */
  private readonly state: SessionState;
  /** Placeholders among held pieces, and what replaces each once the hold is over. */
  private readonly lateBytes = new Map<Buffer, () => Buffer[]>();
  // Until the client is known to be authenticated (state.authenticated), Redis may refuse it
  // everything but AUTH, HELLO, RESET and QUIT, and then applies its unauthenticated limits (the
  // framer applies them too, before buffering a frame). Meanwhile requests and replies are counted
  // (by ordinal): every request of a refused client gets exactly one reply, so counting is exact.
  // The reply to each AUTH / HELLO AUTH is read (the client's later requests wait for it: they
  // may be rewritten only once Redis has authenticated the connection). Once authenticated,
  // nothing is read or counted (hot path). The proxy's own SELECT (for a database in the upstream
  // URL) gets a reply the client must not see, dropped by its ordinal; with requirepass it first
  // fails with NOAUTH and is sent again right after each AUTH of the client until it succeeds.
  private counting = false;
  private requestsSent = 0;
  private repliesSeen = 0;
  /** Replies the session reads, by ordinal and in order: its own SELECTs' (dropped) and AUTHs'.
   * `onReply(null)`: counting was given up (see readReplies). */
  private readonly replyHooks: Array<{ ordinal: number; drop: boolean; onReply: (reply: Buffer | null) => void }> = [];
  private partialReply: Buffer | null = null;
  private selectAfterAuth = false;
  /** Born authenticated by the control plane's belief: a first reply of NOAUTH says it was stale. */
  private watchFirstReply: boolean;
  /**
   * An authenticated client sent RESET while Redis requires AUTH: it is unauthenticated again, and
   * counting restarts right after RESET's reply. The replies before it are not counted (hot path);
   * with the client's later requests held, `+RESET` is the last reply, so the stream ends with it.
   */
  private resetSync: { tail: string; done: () => void } | null = null;
  /** The client is not read before the first SELECT reply: nothing may run in the wrong db. */
  private handshaking = false;
  private poisoned = false;
  private closed = false;
  /** The client half-closed; its EOF goes to Redis once nothing of its is held. */
  private clientEnded = false;
  /** See overUnauthenticatedLimit. */
  private closeTimer: NodeJS.Timeout | null = null;
  /** Pieces for the upstream socket from the current client chunk, written at its end. */
  private readonly outgoing: Buffer[] = [];
  // The run of consecutive forwarded-as-is bytes not yet written (coalesced into one write).
  private runBuf: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;
  /** A blocking command sent as a function call, until the reply to the PING after it. */
  private pendingResend: { bytes: Buffer; wouldBlock: boolean; done: () => void } | null = null;
  /** Once a command whose reply may come marked was sent (reply-markers.ts); null otherwise. */
  private replyMarkers: ReplyMarkers | null = null;
  /** Set by drain() (src/operations/session-drain.ts); null otherwise: one check per upstream chunk. */
  private drainState: SessionDrain | null = null;

  constructor(
    private readonly client: Socket,
    private readonly options: SessionOptions,
    private readonly onClose: (session: Session) => void,
  ) {
    this.framer = new RequestFramer(options.limits);
    // Redis authenticates a new connection at once if the default user needs no password.
    const authenticated = !options.authRequired();
    this.state = { registry: options.registry.all, authenticated, users: ['default'], subscribed: false, resp3: false, queuedResp3: null, inMulti: false, db: 0, queuedDb: null };
    this.counting = !authenticated;
    this.framer.unauthenticated = !authenticated;
    this.watchFirstReply = authenticated && options.initialDb === 0;
    client.setNoDelay(true);
    client.pause(); // nothing is read until the upstream connection is there
    const link = options.upstream.open(
      () => this.closeForFailover(),
      (chunk) => this.fromUpstream(chunk),
    );
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
    // Redis's last reply before it reset a connection the client kept writing to (after QUIT).
    keepLastReplies(upstream, (chunk) => this.fromUpstream(chunk));
    upstream.on('drain', () => {
      if (!this.poisoned && !this.handshaking && !this.holding) client.resume();
    });
    // Redis closed (QUIT, CLIENT KILL, protocol error, shutdown): the client still gets every
    // reply already read, then its connection ends.
    upstream.on('end', () => this.flushDrain() && client.end());
    upstream.on('close', () => this.flushDrain() && client.destroySoon());
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (connected || client.destroyed) return;
      // Never connected: tell the client why, Redis-style, then close.
      client.end(`-ERR notifylist-proxy: upstream ${link.name} unavailable (${error.code ?? error.message})\r\n`);
    });

    client.on('data', (chunk: Buffer) => this.fromClient(chunk));
    client.on('drain', () => upstream.resume());
    // A client that half-closes: Redis closes on EOF too, so pass the EOF on (after what is held).
    client.on('end', () => {
      this.clientEnded = true;
      if (!this.holding) upstream.end();
    });
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
   * Graceful drain (src/operations/drain.ts): nothing more is read from the client, requests it
   * held back are dropped; behind what is already forwarded goes the drain marker (see
   * session-drain.ts), whose reply says when every reply is written. An unauthenticated client
   * (its replies are short) gets an EOF to Redis instead; a poisoned one is closed by Redis.
   */
  drain(drain: SessionDrain): void {
    this.drainState = drain;
    const poisoned = this.poisoned;
    this.poison();
    this.heldChunks.length = 0;
    if (poisoned) drain.state = 'ending';
    else if (!this.state.authenticated) {
      drain.state = 'ending';
      this.upstream.end();
    } else if (!this.holding) this.upstream.write(drain.markerRequest);
    // (Holding: the marker follows once what is held is sent, in hold().)
  }

  /** Drain: EOF to Redis, which ends a blocked command unserved, discards a MULTI and then closes. */
  endUpstream(): void {
    this.upstream.end();
  }

  /** Drain deadline: both connections go now. */
  destroy(): void {
    this.client.destroy();
    this.upstream.destroy();
  }

  /** Drain: what the marker filter held back goes to the client before its end. Always true. */
  private flushDrain(): boolean {
    const rest = this.drainState?.rest();
    if (rest !== undefined && rest.length > 0) this.client.write(rest);
    return true;
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
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.upstream.destroy();
    this.onClose(this);
    this.drainState?.onClosed();
  }

  private fromClient(chunk: Buffer): void {
    if (this.poisoned) return;
    if (this.holding) {
      this.heldChunks.push(chunk);
      return;
    }
    // A stale registry could let a write to a newly registered key through unchanged: wait.
    if (!this.options.registryIsCurrent()) {
      this.hold(this.options.whenCurrent(), () => this.processChunk(chunk));
      return;
    }
    this.processChunk(chunk);
  }

  private processChunk(chunk: Buffer): void {
    if (!this.state.authenticated) {
      // Redis stopped requiring AUTH (as last asked): it refuses this client nothing any more.
      if (!this.options.authRequired()) this.authenticate();
      else this.framer.unauthenticated = true;
    }
    const error = this.framer.push(chunk, this.onFrame);
    this.flushRun();
    const rest = this.framer.takeRemainder();
    let then: (() => void) | null = null;
    if (error?.unauthenticated) {
      then = () => this.overUnauthenticatedLimit(error, rest!);
    } else if (rest !== null) {
      const stopHold = this.stopHold!;
      then = () =>
        this.hold(stopHold, () => {
          if (rest.length > 0) this.processChunk(rest);
        });
    } else if (error) {
      this.outgoing.push(error.upstreamTrigger);
    }
    this.stopHold = null;
    const chunkHold = this.chunkHold;
    this.chunkHold = null;
    if (chunkHold !== null) {
      const pieces = this.outgoing.splice(0);
      this.hold(chunkHold, () => {
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
        then?.();
      });
    } else {
      this.writeOutgoing();
      then?.();
    }
    if (error && !error.unauthenticated) this.closeForProtocolError(error);
    // Backpressure: a Redis that does not keep up stops us reading the client.
    if (this.upstream.writableNeedDrain) this.client.pause();
  }

  /** Runs `then` (then what arrived meanwhile) once `until` resolves; the client is not read before. */
  private hold(until: Promise<unknown>, then: () => void): void {
    this.holding = true;
    this.client.pause();
    void until.then(() => {
      if (this.closed) return;
      this.holding = false;
      then();
      while (!this.holding && !this.poisoned && this.heldChunks.length > 0) this.fromClient(this.heldChunks.shift()!);
      if (this.holding) return;
      if (this.drainState?.state === 'pending') this.upstream.write(this.drainState.markerRequest);
      if (this.clientEnded) this.upstream.end();
      else if (!this.poisoned && !this.handshaking && !this.upstream.writableNeedDrain) this.client.resume();
    });
  }

  /**
   * A frame header over Redis's unauthenticated limits (nothing of the frame was buffered or sent).
   * Redis refuses it only if it still requires AUTH: then the trigger makes Redis itself reply its
   * error (after everything before) and close. If the last answer is old it is asked first: a stale
   * "required" would make Redis wait for the rest of a frame it accepts, which the client never sends.
   */
  private overUnauthenticatedLimit(error: ProtocolError, rest: Buffer): void {
    let required = true;
    this.hold(
      this.options.authRequiredNow().then((answer) => (required = answer)),
      () => {
        if (!required) {
          this.processChunk(rest); // authenticated now, without the limits
          return;
        }
        this.outgoing.push(error.upstreamTrigger);
        this.writeOutgoing();
        this.closeForProtocolError(error);
        // Redis stopped requiring AUTH within the last second: it waits for the rest of the frame
        // instead of closing. Close both rather than leave the client hanging.
        this.closeTimer = setTimeout(() => {
          this.client.destroy();
          this.upstream.destroy();
        }, UNAUTHENTICATED_CLOSE_MS).unref();
      },
    );
  }

  /** Redis considers the connection authenticated: no more limits, rewrites allowed. */
  private authenticate(): void {
    this.state.authenticated = true;
    this.framer.unauthenticated = false;
    // Counting ends once no reply is left to read (at once, or in readReplies).
    if (this.replyHooks.length === 0 && !this.selectAfterAuth) this.stopCounting();
  }

  /** No more counting; pending hooks are told so, a withheld partial reply goes out. */
  private stopCounting(): void {
    this.counting = false;
    for (const hook of this.replyHooks.splice(0)) hook.onReply(null);
    if (this.partialReply !== null) this.client.write(this.partialReply);
    this.partialReply = null;
  }

  /** `w`: the blocking command would block; `p`: its verdict is in. It would: the original command
   * goes to Redis now (and blocks there), before the client's later requests. */
  private onMarkerSignal(payload: string): void {
    const pending = this.pendingResend;
    if (pending === null) return;
    if (payload === 'w') {
      pending.wouldBlock = true;
      return;
    }
    this.pendingResend = null;
    if (pending.wouldBlock) this.upstream.write(pending.bytes);
    pending.done();
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
      if (this.counting) this.requestsSent++;
      const nameLength = frame.argLength(0);
      if (!this.state.authenticated) {
        authenticates = this.trackAuth(frame);
      } else if (nameLength !== 4 && nameLength !== 5) {
        // Neither AUTH, HELLO nor RESET (hot path).
      } else if (isReset(frame)) {
        this.state.users = ['default'];
        this.state.subscribed = false; // RESET unsubscribes too
        this.state.resp3 = false; // and goes back to RESP2
        this.state.inMulti = false; // and out of MULTI (a HELLO queued there is dropped)
        this.state.queuedResp3 = null;
        this.state.db = 0; // and to database 0
        this.state.queuedDb = null;
        if (this.options.authRequired()) this.unauthenticatedByReset();
      } else {
        // AUTH / HELLO ... AUTH of an authenticated client: its reply is not read (hot path), so
        // the connection may be either user from now on (see SessionState.users).
        const attempt = authAttempt(frame);
        if (attempt !== null && !this.state.users.includes(attempt.user)) this.state.users.push(attempt.user);
      }
    }
    const rewrite = this.options.rewriter.rewrite(frame, this.state);
    const requests = this.options.counters.requests;
    if (rewrite.kind === 'forward') {
      requests.forwarded++;
      if (frame.buf === this.runBuf && frame.start === this.runEnd) {
        this.runEnd = frame.end;
      } else {
        this.flushRun();
        this.runBuf = frame.buf;
        this.runStart = frame.start;
        this.runEnd = frame.end;
      }
    } else {
      if (rewrite.admin) requests.admin++;
      else requests.rewritten++;
      if (rewrite.marks && this.replyMarkers === null) {
        this.replyMarkers = new ReplyMarkers(
          () => this.options.rewriter.replyMarker(),
          (held) => this.client.write(held),
          (payload) => this.onMarkerSignal(payload),
        );
      }
      this.flushRun();
      if (rewrite.later) {
        // A placeholder of its own, replaced by the bytes once the hold is over (processChunk).
        const placeholder = Buffer.alloc(0);
        this.lateBytes.set(placeholder, rewrite.later);
        this.outgoing.push(placeholder);
      }
      for (const bytes of rewrite.bytes) this.outgoing.push(bytes);
      if (rewrite.resend) {
        // A blocking command: its reply, then the reply to this PING (both marked) say whether it
        // would block; the rest waits for that (the framer stops here).
        this.outgoing.push(encodeCommand(['PING', Buffer.concat([this.options.rewriter.replyMarker(), Buffer.from('p')])]));
        this.stopHold = new Promise<void>((done) => (this.pendingResend = { bytes: rewrite.resend!, wouldBlock: false, done }));
        this.framer.stop();
      }
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
    const ordinal = this.requestsSent++;
    this.replyHooks.push({ ordinal, drop: true, onReply: (reply) => reply !== null && this.onSelectReply(reply.toString('latin1')) });
    this.outgoing.push(encodeCommand(['SELECT', String(this.options.initialDb)]));
    if (this.handshaking) this.writeOutgoing();
  }

  /**
   * While unauthenticated: an AUTH / HELLO ... AUTH stops the framer after it; the rest waits for
   * its reply, which says whether Redis authenticated the connection. True for such a frame.
   */
  private trackAuth(frame: RequestFrame): boolean {
    const attempt = authAttempt(frame);
    if (attempt === null) return false;
    const ordinal = this.requestsSent - 1;
    this.stopHold = new Promise<void>((resolve) => {
      this.replyHooks.push({
        ordinal,
        drop: false,
        onReply: (reply) => {
          // null: Redis runs this client's commands (see readReplies), as which user is not known.
          if (reply === null) {
            if (!this.state.users.includes(attempt.user)) this.state.users.push(attempt.user);
            this.authenticate();
          } else if (authenticatedBy(attempt, reply)) {
            this.state.users = [attempt.user];
            this.authenticate();
          }
          resolve();
        },
      });
    });
    this.framer.stop();
    return true;
  }

  /** RESET of an authenticated client while Redis requires AUTH: unauthenticated from its reply on. */
  private unauthenticatedByReset(): void {
    this.state.authenticated = false;
    this.stopHold = new Promise<void>((done) => (this.resetSync = { tail: '', done }));
    this.framer.stop();
  }

  /** Poisoned (Redis replies the error and closes): counted, and said in the (rate-limited) log. */
  private closeForProtocolError(error: ProtocolError): void {
    this.poison();
    this.options.counters.protocolErrors++;
    const { remoteAddress, remotePort } = this.client;
    this.options.protocolError(remoteAddress === undefined ? 'unix socket' : `${remoteAddress}:${remotePort}`, error.message);
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

  /**
   * What Redis sent. `chunk` may be in the link's reused read buffer (see Reader): it is copied
   * before anything may keep a piece of it; true when the write to the client still references it.
   */
  private fromUpstream(chunk: Buffer): boolean {
    if (this.watchFirstReply) {
      this.watchFirstReply = false;
      if (chunk.toString('latin1', 0, 7) === '-NOAUTH') this.options.recheckAuth();
    }
    const drain = this.drainState;
    if (this.counting || this.replyMarkers !== null || drain !== null) return this.filterReplies(Buffer.from(chunk), drain);
    // Pass-through (hot path): written as it is; kept if the write is queued.
    const client = this.client;
    if (!client.write(chunk)) this.upstream.pause();
    if (this.resetSync !== null) this.watchReset(chunk);
    return client.writableLength > 0;
  }

  /** fromUpstream for a chunk of its own (copied): replies read, markers and drain filtered. */
  private filterReplies(chunk: Buffer, drain: SessionDrain | null): false {
    const raw = chunk;
    if (this.counting) chunk = this.readReplies(chunk);
    if (this.replyMarkers !== null) chunk = this.replyMarkers.filter(chunk);
    if (drain !== null) chunk = drain.filter(chunk);
    if (chunk.length > 0 && !this.client.write(chunk)) this.upstream.pause();
    // Drained: every reply is back; the client's connection ends once they are written.
    if (drain?.state === 'done') {
      // A RESP3 subscriber's marker reply looks like anyone's: it is closed last all the same.
      if (this.state.subscribed) drain.state = 'subscribed';
      else this.upstream.destroy();
    }
    if (this.resetSync !== null) this.watchReset(raw);
    return false;
  }

  /** See `resetSync`. */
  private watchReset(chunk: Buffer): void {
    const sync = this.resetSync!;
    sync.tail = (sync.tail + chunk.toString('latin1', Math.max(0, chunk.length - RESET_REPLY.length))).slice(-RESET_REPLY.length);
    if (sync.tail !== RESET_REPLY) return;
    this.resetSync = null;
    if (this.partialReply !== null) this.client.write(this.partialReply); // not a reply boundary after all
    this.partialReply = null;
    this.counting = true;
    this.requestsSent = 0;
    this.repliesSeen = 0;
    this.replyHooks.length = 0;
    sync.done();
  }

  /** Counts replies, drops those to the proxy's own SELECT, reads AUTHs', returns what the client gets. */
  private readReplies(chunk: Buffer): Buffer {
    const bytes = this.partialReply ? Buffer.concat([this.partialReply, chunk]) : chunk;
    this.partialReply = null;
    const forward: Buffer[] = [];
    let offset = 0;
    while (this.counting) {
      const end = replyEnd(bytes, offset);
      if (end === -1) {
        this.partialReply = bytes.subarray(offset);
        offset = bytes.length;
        // Replies to a client Redis refuses are short lines: this one is not, Redis runs the
        // client's commands (it stopped requiring AUTH). Do not buffer it (nor concatenate every
        // chunk of it): stop counting, as once authenticated.
        if (this.partialReply.length > MAX_REFUSED_REPLY && !this.state.authenticated && this.resetSync === null) {
          forward.push(this.partialReply);
          this.partialReply = null;
          this.options.recheckAuth();
          this.stopCounting();
          this.authenticate();
        }
        break;
      }
      const reply = bytes.subarray(offset, end);
      const hook = this.replyHooks[0];
      if (hook !== undefined && hook.ordinal === this.repliesSeen) {
        this.replyHooks.shift();
        if (!hook.drop) forward.push(reply);
        hook.onReply(reply);
      } else {
        forward.push(reply);
        if (!this.state.authenticated && this.resetSync === null && refusedClientCannotGet(reply)) this.options.recheckAuth();
      }
      this.repliesSeen++;
      offset = end;
      // (Before a RESET's reply counts are not exact: watchReset starts them again.)
      if ((this.state.authenticated || this.resetSync !== null) && !this.selectAfterAuth && this.replyHooks.length === 0) this.counting = false;
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
      if (this.state.authenticated) {
        // Born authenticated by a stale belief (only the handshake SELECT went out yet).
        this.state.authenticated = false;
        this.options.recheckAuth();
      }
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

const RESET_REPLY = '+RESET\r\n';
/** How long Redis may take to refuse a frame over its unauthenticated limits (see overUnauthenticatedLimit). */
const UNAUTHENTICATED_CLOSE_MS = 10_000;
/** Longer than any reply Redis gives a client it refuses (errors, HELLO's map). */
const MAX_REFUSED_REPLY = 64 * 1024;

/**
 * A reply Redis gives a client it refuses (authRequired) only to RESET (+RESET), QUIT (+OK) or an
 * AUTH / HELLO (read by their hooks), never otherwise: it must have stopped requiring AUTH.
 */
function refusedClientCannotGet(reply: Buffer): boolean {
  if (reply[0] === 0x2d) return false; // an error
  const text = reply.length <= RESET_REPLY.length ? reply.toString('latin1') : '';
  return text !== RESET_REPLY && text !== '+OK\r\n';
}
