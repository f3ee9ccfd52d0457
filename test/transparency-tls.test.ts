// The transparency differential (transparency.test.ts) with clients, proxy and both Redis servers
// talking mutual TLS (helpers/transport.ts).
import { useTransport } from './helpers/transport.js';

useTransport('tls');
await import('./transparency.test.js');
