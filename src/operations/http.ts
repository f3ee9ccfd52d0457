// The operations endpoint (--metrics-port, --metrics-bind): GET /metrics (Prometheus text
// format), /healthz (200 while the process runs) and /readyz (200 when ready, else 503 with the
// reason). Anything else is 404. node:http itself refuses malformed requests (400) and bounds
// headers; nothing here reads a request body.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface OperationsEndpoints {
  /** The metrics text and its content type. */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** null when ready, else why not. */
  notReadyReason(): Promise<string | null>;
}

export interface OperationsServer {
  port: number;
  close(): Promise<void>;
}

function reply(response: ServerResponse, status: number, text: string, contentType = 'text/plain; charset=utf-8'): void {
  response.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  response.end(text);
}

async function handle(endpoints: OperationsEndpoints, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const path = (request.url ?? '').split('?')[0];
  if (request.method !== 'GET') return reply(response, 404, 'not found\n');
  switch (path) {
    case '/metrics': {
      const { contentType, text } = await endpoints.metrics();
      return reply(response, 200, text, contentType);
    }
    case '/healthz':
      return reply(response, 200, 'ok\n');
    case '/readyz': {
      const reason = await endpoints.notReadyReason();
      return reason === null ? reply(response, 200, 'ready\n') : reply(response, 503, `not ready: ${reason}\n`);
    }
    default:
      return reply(response, 404, 'not found\n');
  }
}

/** Listens on bind:port (0: any free port); rejects if it cannot (port in use, ...). */
export function startOperationsServer(bind: string, port: number, endpoints: OperationsEndpoints): Promise<OperationsServer> {
  const server: Server = createServer((request, response) => {
    handle(endpoints, request, response).catch((error: Error) => {
      if (!response.headersSent) reply(response, 500, `error: ${error.message}\n`);
      else response.destroy();
    });
  });
  // Scrapers keep connections alive; close() must not wait for them.
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, bind, () => {
      server.off('error', reject);
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address ? address.port : port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
