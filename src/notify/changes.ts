// Messages on the change channel (binary strings, latin1: one char per byte). The library
// publishes `set` and `del` when a registration is committed and `reload` when whole registries
// moved (SWAPDB); proxies publish `announce` before a registration is committed and `ack` once
// they have applied an announcement. Anything else (e.g. a hand-made PUBLISH) means "reload".
//   set <pairs>              announce <nonce> <pairs>        pairs: (<plen>:<llen>:<pattern><list>)*
//   del <pattern>            ack <nonce> <proxy id> <tag>    reload
// Users who register may publish here too (the library publishes as them): what they could make
// up costs lookups or a reload, except acknowledgements, which end a registration's wait for every
// proxy. So an ack carries the acknowledging proxy's id and a tag made with the secret over both:
// made-up acks are ignored and a repeated one counts once.

export interface Registration {
  pattern: string;
  list: string;
}

export type ChangeMessage =
  | { kind: 'set'; registrations: Registration[] }
  | { kind: 'del'; pattern: string }
  | { kind: 'announce'; nonce: string; registrations: Registration[] }
  | { kind: 'ack'; nonce: string; proxy: string; tag: string }
  | { kind: 'reload' };

const RELOAD: ChangeMessage = { kind: 'reload' };

export function encodeRegistrations(registrations: Registration[]): string {
  let text = '';
  for (const { pattern, list } of registrations) text += `${pattern.length}:${list.length}:${pattern}${list}`;
  return text;
}

function decodeRegistrations(text: string, from: number): Registration[] | null {
  const registrations: Registration[] = [];
  let at = from;
  while (at < text.length) {
    const header = /^(\d+):(\d+):/.exec(text.slice(at, at + 24));
    if (!header) return null;
    const patternStart = at + header[0].length;
    const listStart = patternStart + Number(header[1]);
    const end = listStart + Number(header[2]);
    if (end > text.length) return null;
    registrations.push({ pattern: text.slice(patternStart, listStart), list: text.slice(listStart, end) });
    at = end;
  }
  return registrations;
}

/** Every proxy reloads every database's registry (also what the library sends after SWAPDB). */
export const RELOAD_MESSAGE = 'reload';

export function announceMessage(nonce: string, registrations: Registration[]): string {
  return `announce ${nonce} ${encodeRegistrations(registrations)}`;
}

export function ackMessage(nonce: string, proxy: string, tag: string): string {
  return `ack ${nonce} ${proxy} ${tag}`;
}

export function parseChange(text: string): ChangeMessage {
  if (text.startsWith('set ')) {
    const registrations = decodeRegistrations(text, 4);
    return registrations ? { kind: 'set', registrations } : RELOAD;
  }
  if (text.startsWith('del ')) return { kind: 'del', pattern: text.slice(4) };
  if (text.startsWith('ack ')) {
    const [nonce, proxy, tag] = text.slice(4).split(' ');
    return { kind: 'ack', nonce, proxy: proxy ?? '', tag: tag ?? '' };
  }
  if (text.startsWith('announce ')) {
    const space = text.indexOf(' ', 9);
    if (space === -1) return RELOAD;
    const registrations = decodeRegistrations(text, space + 1);
    return registrations ? { kind: 'announce', nonce: text.slice(9, space), registrations } : RELOAD;
  }
  return RELOAD;
}
