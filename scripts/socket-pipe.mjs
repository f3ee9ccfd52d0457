#!/usr/bin/env node
// A bare TCP pipe: every client connection gets its own upstream connection, bytes copied both ways.
// The baseline for scripts/redis-suite.sh: what a transparent middle hop does to Redis's test suite.
// Usage: node scripts/socket-pipe.mjs --port <listen port> --upstream <host:port>
import net from 'node:net';
import { keepLastReplies } from '../dist/proxy/last-replies.js';

const args = process.argv.slice(2);
const flag = (name) => {
  const index = args.indexOf(name);
  if (index < 0 || index + 1 >= args.length) {
    process.stderr.write(`socket-pipe: missing ${name}\nusage: socket-pipe.mjs --port <port> --upstream <host:port>\n`);
    process.exit(1);
  }
  return args[index + 1];
};
const port = Number(flag('--port'));
const [upstreamHost, upstreamPort] = flag('--upstream').split(':');

const server = net.createServer((client) => {
  const upstream = net.connect({ host: upstreamHost, port: Number(upstreamPort) });
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  client.pipe(upstream);
  upstream.pipe(client);
  // Redis closed (QUIT, CLIENT KILL, protocol error): the client still gets every reply, then the close.
  upstream.on('close', () => client.destroySoon());
  upstream.on('error', () => undefined); // 'close' follows
  keepLastReplies(upstream, (chunk) => client.write(chunk));
  client.on('close', () => upstream.destroy());
  client.on('error', () => client.destroy());
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`socket-pipe listening on 127.0.0.1:${server.address().port}, upstream ${upstreamHost}:${upstreamPort}\n`);
});
const stop = () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 1000).unref();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
