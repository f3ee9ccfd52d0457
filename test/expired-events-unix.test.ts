// The expired-events scenarios (expired-events.test.ts, the earlier module's seed scenario among
// them) with clients, proxies and Redis talking over Unix sockets (helpers/transport.ts).
import { useTransport } from './helpers/transport.js';

useTransport('unix');
await import('./expired-events.test.js');
