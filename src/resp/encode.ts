// RESP encoding helpers for requests. Strings are binary (latin1) strings: one char, one byte.

const CRLF = Buffer.from('\r\n', 'latin1');

/** `$<length>\r\n` */
export function bulkHeader(length: number): Buffer {
  return Buffer.from(`$${length}\r\n`, 'latin1');
}

/** `*<count>\r\n` */
export function arrayHeader(count: number): Buffer {
  return Buffer.from(`*${count}\r\n`, 'latin1');
}

/** One bulk string: header, bytes, CRLF. */
export function encodeBulk(value: Buffer | string): Buffer {
  const data = typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
  return Buffer.concat([bulkHeader(data.length), data, CRLF]);
}

/** A RESP multibulk request (array of bulk strings), as a client sends it. */
export function encodeCommand(args: readonly (Buffer | string)[]): Buffer {
  let size = 0;
  const headers: string[] = new Array(args.length);
  const lengths: number[] = new Array(args.length);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const n = typeof a === 'string' ? a.length : a.length;
    lengths[i] = n;
    headers[i] = `$${n}\r\n`;
    size += headers[i].length + n + 2;
  }
  const head = `*${args.length}\r\n`;
  size += head.length;
  const out = Buffer.allocUnsafe(size);
  let p = out.write(head, 0, 'latin1');
  for (let i = 0; i < args.length; i++) {
    p += out.write(headers[i], p, 'latin1');
    const a = args[i];
    if (typeof a === 'string') p += out.write(a, p, 'latin1');
    else p += a.copy(out, p);
    out[p++] = 13;
    out[p++] = 10;
  }
  return out;
}

/** `*<count>\r\n` as a binary (latin1) string. */
export function multibulkHeader(count: number): string {
  return `*${count}\r\n`;
}

/** `$<len>\r\n<value>\r\n` as a binary (latin1) string; `value` is a binary string. */
export function bulkString(value: string): string {
  return `$${value.length}\r\n${value}\r\n`;
}
