// Redis's protected mode, applied by the proxy. Redis refuses TCP clients from anywhere but the
// loopback addresses while protected-mode is yes and the default user has nopass
// (networking.c, clientAcceptHandler). Behind the proxy every session comes from the proxy's own
// address, so Redis would let everyone in: the proxy refuses such clients itself, with Redis's
// bytes, before it reads anything from them or connects upstream for them.
//
// What Redis's state is: CONFIG GET protected-mode and ACL GETUSER default on the control
// connection when the control user may run them; else protected-mode is taken to be yes (Redis's
// default) and nopass is inferred from whether a new unauthenticated connection must AUTH (a
// disabled default user with nopass looks like "must AUTH" there, though Redis refuses remote
// clients for it). Read at start (with a non-loopback --bind) and again when a non-loopback
// client connects and the last reading is older than MAX_AGE_MS: nothing periodic, nothing at
// all while only loopback clients connect.
import type { Redis } from 'ioredis';
import { StartupError } from '../notify/control-plane.js';
import type { Log } from '../operations/logger.js';

/** Redis 7.0.15's refusal, byte for byte (networking.c, clientAcceptHandler). */
export const DENIED =
  '-DENIED Redis is running in protected mode because protected ' +
  'mode is enabled and no password is set for the default user. ' +
  'In this mode connections are only accepted from the loopback interface. ' +
  'If you want to connect from external computers to Redis you ' +
  'may adopt one of the following solutions: ' +
  "1) Just disable protected mode sending the command " +
  "'CONFIG SET protected-mode no' from the loopback interface " +
  'by connecting to Redis from the same host the server is ' +
  'running, however MAKE SURE Redis is not publicly accessible ' +
  'from internet if you do so. Use CONFIG REWRITE to make this ' +
  'change permanent. ' +
  '2) Alternatively you can just disable the protected mode by ' +
  'editing the Redis configuration file, and setting the protected ' +
  "mode option to 'no', and then restarting the server. " +
  '3) If you started the server manually just for testing, restart ' +
  "it with the '--protected-mode no' option. " +
  '4) Setup a an authentication password for the default user. ' +
  'NOTE: You only need to do one of the above things in order for ' +
  'the server to start accepting connections from the outside.\r\n';

/** A reading of Redis's state is used for new clients for this long (the documented bound). */
export const MAX_AGE_MS = 1000;
/** A reading that takes longer than this is given up; the last one stays in force. */
const READ_TIMEOUT_MS = 2000;

/**
 * Redis's islocalClient for a TCP peer: exactly 127.0.0.1 or ::1 (not the rest of 127/8).
 * IPv4 peers of a dual-stack listener show as ::ffff:a.b.c.d; Redis, whose IPv6 sockets are
 * v6-only, sees those as IPv4.
 */
export function isLocalAddress(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

/** A listen address only loopback peers can reach (then nothing is read at start). */
export function isLoopbackBind(host: string): boolean {
  return /^127\.|^::1$|^localhost$/i.test(host);
}

interface RedisState {
  protectedMode: boolean;
  defaultNopass: boolean;
}

const refuses = (state: RedisState): boolean => state.protectedMode && state.defaultNopass;

export class ProtectedMode {
  private state: RedisState | null = null;
  private readAt = 0;
  private reading: Promise<void> | null = null;
  /** Cleared when Redis refuses the command (NOPERM, renamed): not asked again (a NOPERM lands in ACL LOG). */
  private mayConfigGet = true;
  private mayAclGetuser = true;
  private logged = false;

  constructor(
    private readonly control: Redis,
    /** Does a new unauthenticated connection have to AUTH? (the control plane's probe) */
    private readonly authRequired: () => Promise<boolean>,
    private readonly log: Log,
  ) {}

  /** Reads Redis's state now (start-up); fails only if Redis does not answer. */
  async start(): Promise<void> {
    try {
      this.state = await this.read();
    } catch (error) {
      throw new StartupError(`cannot read Redis's protected mode: ${(error as Error).message}`);
    }
    this.readAt = Date.now();
  }

  /**
   * Must a non-loopback client be refused? Answered at once from a recent reading, else after
   * reading again (the client waits, unread). Never rejects.
   */
  refusesRemote(): boolean | Promise<boolean> {
    if (this.state !== null && Date.now() - this.readAt <= MAX_AGE_MS) return refuses(this.state);
    this.reading ??= this.readAgain().finally(() => {
      this.reading = null;
    });
    // Never read (Redis unreachable since): refuse, as Redis's defaults would.
    return this.reading.then(() => (this.state === null ? true : refuses(this.state)));
  }

  private async readAgain(): Promise<void> {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), READ_TIMEOUT_MS);
    });
    try {
      this.state = await Promise.race([this.read(), timeout]);
    } catch {
      // Redis unreachable or silent: the last reading stays, and sessions fail upstream anyway.
    } finally {
      clearTimeout(timer);
      // Also after a failure: asked again at most once per MAX_AGE_MS.
      this.readAt = started;
    }
  }

  private async read(): Promise<RedisState> {
    const notes: string[] = [];
    const [protectedMode, defaultNopass] = await Promise.all([this.readProtectedMode(notes), this.readDefaultNopass(notes)]);
    if (notes.length > 0 && !this.logged) {
      this.logged = true;
      this.log.warn('protected_mode', `protected mode: ${notes.join('; ')}`);
    }
    return { protectedMode, defaultNopass };
  }

  private async readProtectedMode(notes: string[]): Promise<boolean> {
    if (this.mayConfigGet) {
      try {
        const reply = (await this.control.config('GET', 'protected-mode')) as string[];
        return reply[1] !== 'no';
      } catch (error) {
        this.mayConfigGet = refusedOnly(error);
        notes.push(`cannot read Redis's protected-mode (CONFIG GET: ${(error as Error).message}): assuming yes, Redis's default`);
      }
    }
    return true;
  }

  private async readDefaultNopass(notes: string[]): Promise<boolean> {
    if (this.mayAclGetuser) {
      try {
        const reply = (await this.control.call('ACL', 'GETUSER', 'default')) as unknown[];
        const flags = reply[reply.indexOf('flags') + 1] as string[];
        return flags.includes('nopass');
      } catch (error) {
        this.mayAclGetuser = refusedOnly(error);
        notes.push(
          `cannot read the default user (ACL GETUSER: ${(error as Error).message}): taking it to have nopass when new connections need no AUTH ` +
            '(a disabled default user with nopass counts as one with a password)',
        );
      }
    }
    return !(await this.authRequired());
  }
}

/**
 * For an error of a reading: false if Redis refused the command (NOPERM, a renamed command),
 * which is not asked again; rethrows anything else (not connected: a start-up error).
 */
function refusedOnly(error: unknown): false {
  if ((error as Error).name === 'ReplyError') return false;
  throw error;
}
