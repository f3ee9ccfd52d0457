// --maxclients: how many clients may be connected at once, every listener together, as Redis's
// maxclients. Counted from the TCP connection on (a TLS client in its handshake counts, as in
// Redis). One more gets what Redis sends (src/networking.c, acceptCommonHandler): the error line
// at once, nothing read, then the close; over TLS nothing (no handshake was made), just the close.
import type { Socket } from 'node:net';

export const MAX_CLIENTS_REPLY = '-ERR max number of clients reached\r\n';

export class ClientLimit {
  private connected = 0;

  constructor(private readonly maxClients: number) {}

  /**
   * For each accepted connection, before anything else: true if it may stay (it is then counted
   * until its close); false if it was refused (the error written, or dropped with `tls`).
   */
  admit(client: Socket, tls = false): boolean {
    if (this.connected >= this.maxClients) {
      client.on('error', () => client.destroy());
      if (tls) client.destroy();
      else client.end(MAX_CLIENTS_REPLY, () => client.destroy());
      return false;
    }
    this.connected++;
    client.once('close', () => this.connected--);
    return true;
  }
}
