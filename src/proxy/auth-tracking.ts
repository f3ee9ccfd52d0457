// Whether a client's AUTH or HELLO ... AUTH authenticated its connection, from the request and
// Redis's reply to it (src/acl.c authCommand, ACLAuthenticateUser; src/networking.c helloCommand,
// clientSetName). A failed attempt never unauthenticates: Redis only ever sets the flag.
import { string2ll, type RequestFrame } from '../resp/request-framer.js';

/** A request that may authenticate the connection. */
export interface AuthAttempt {
  kind: 'auth' | 'hello';
  /** The ACL user it authenticates as, if it succeeds (AUTH <password> is the default user's). */
  user: string;
}

/** AUTH <password> / AUTH <user> <password>, or a HELLO with an AUTH option; otherwise null. */
export function authAttempt(frame: RequestFrame): AuthAttempt | null {
  if (frame.argc === 0) return null;
  // Other argument counts are arity or syntax errors: nothing is authenticated.
  if (frame.argIs(0, 'auth')) {
    if (frame.argc === 2) return { kind: 'auth', user: 'default' };
    return frame.argc === 3 ? { kind: 'auth', user: frame.argLatin1(1) } : null;
  }
  if (frame.argIs(0, 'hello')) return helloAttempt(frame);
  return null;
}

/**
 * HELLO [protover [AUTH user pass] [SETNAME name] ...]: Redis runs the options in order and stops
 * at the first one that fails. An attempt only if an AUTH option comes before the first option it
 * refuses without authenticating (a syntax error or an invalid SETNAME).
 */
function helloAttempt(frame: RequestFrame): AuthAttempt | null {
  const argc = frame.argc;
  let next = 1;
  if (argc >= 2) {
    const version = frame.arg(1);
    const ver = string2ll(version, 0, version.length);
    if (ver !== 2 && ver !== 3) return null; // refused before any option
    next = 2;
  }
  let user: string | null = null;
  for (let j = next; j < argc; j++) {
    const more = argc - 1 - j;
    if (frame.argIs(j, 'auth') && more >= 2) {
      user = frame.argLatin1(j + 1); // the last one that runs decides
      j += 2;
    } else if (frame.argIs(j, 'setname') && more >= 1) {
      if (!validClientName(frame.arg(j + 1))) break;
      j++;
    } else {
      break;
    }
  }
  return user !== null ? { kind: 'hello', user } : null;
}

/** clientSetName: empty, or bytes '!'..'~' only. */
function validClientName(name: Buffer): boolean {
  for (const c of name) if (c < 0x21 || c > 0x7e) return false;
  return true;
}

/** Is the connection authenticated after this attempt and Redis's reply (one whole reply)? */
export function authenticatedBy(attempt: AuthAttempt, reply: Buffer): boolean {
  // AUTH's +OK, HELLO's map (RESP3) or array (RESP2): HELLO checks the flag before it replies.
  if (reply[0] !== 0x2d) return true;
  if (attempt.kind === 'auth') return false;
  // WRONGPASS: the first AUTH option failed (or a later one: then an earlier one succeeded, which
  // cannot be told from the reply; such a HELLO is taken as failed). A syntax error or an invalid
  // SETNAME: Redis stopped there (helloAttempt), after every AUTH option before it succeeded.
  const text = reply.toString('latin1', 0, Math.min(reply.length, 40));
  return text.startsWith('-ERR Syntax error in HELLO option') || text.startsWith('-ERR Client names cannot contain');
}

/** RESET: the connection returns to the default user's state (authenticated only if it needs no password). */
export function isReset(frame: RequestFrame): boolean {
  return frame.argc > 0 && frame.argLength(0) === 5 && frame.argIs(0, 'reset');
}
