// The transparency differential (transparency.test.ts) with clients, proxy and both Redis servers
// talking over Unix sockets (helpers/transport.ts).
import { useTransport } from './helpers/transport.js';

useTransport('unix');
await import('./transparency.test.js');
