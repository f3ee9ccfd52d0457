// Finds where a RESP2/RESP3 reply ends, without decoding it. The proxy forwards replies as raw
// bytes; it only needs this while it must drop the reply to a command of its own (a SELECT).

/** End offset of the reply starting at `start`, or -1 if it is not complete in `buf`. */
export function replyEnd(buf: Buffer, start: number): number {
  if (start >= buf.length) return -1;
  const lineEnd = buf.indexOf('\r\n', start);
  if (lineEnd === -1) return -1;
  const type = buf[start];
  const afterLine = lineEnd + 2;
  switch (type) {
    case 0x24: // $ bulk string
    case 0x21: // ! bulk error
    case 0x3d: { // = verbatim string
      const length = Number(buf.toString('latin1', start + 1, lineEnd));
      if (length < 0) return afterLine;
      const end = afterLine + length + 2;
      return end <= buf.length ? end : -1;
    }
    case 0x2a: // * array
    case 0x7e: // ~ set
    case 0x3e: // > push
    case 0x25: // % map
    case 0x7c: { // | attribute (precedes the reply it annotates)
      let count = Number(buf.toString('latin1', start + 1, lineEnd));
      if (count < 0) return afterLine;
      if (type === 0x25 || type === 0x7c) count *= 2;
      let offset = afterLine;
      for (let i = 0; i < count; i++) {
        offset = replyEnd(buf, offset);
        if (offset === -1) return -1;
      }
      return type === 0x7c ? replyEnd(buf, offset) : offset;
    }
    default: // + - : , # _ ( and anything line-shaped
      return afterLine;
  }
}
