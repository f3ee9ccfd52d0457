// /healthz and /readyz. Healthy: the process runs (the HTTP server answers at all). Ready: the
// proxy can do its job right now, i.e. Redis answers, the registry is loaded (and kept current
// by its change subscription), and the function library is loaded if anything is registered.
import type { ControlPlane } from '../notify/control-plane.js';
import { upstreamAnswers } from './metrics.js';

/** null when ready, else why not (one line, for the 503 body). */
export async function notReadyReason(controlPlane: ControlPlane): Promise<string | null> {
  if (!(await upstreamAnswers(controlPlane.control))) return `Redis at ${controlPlane.upstreamName} does not answer`;
  if (!controlPlane.registryIsCurrent()) return 'the registry is not loaded (its change subscription is down or it is being read again)';
  if (!controlPlane.registry.empty && !controlPlane.libraryIsLoaded) return 'registrations exist but the function library is not loaded';
  return null;
}
