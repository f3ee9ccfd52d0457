// --workers N: the primary (node:cluster) runs N workers, each a whole proxy on the same ports
// (cluster shares the listening sockets: plain, TLS, Unix socket). They coordinate through Redis
// as separate proxies do (one reaper leader, one shared registry). The primary itself serves
// nothing to clients: it restarts a worker that dies (with a backoff, so that one dying at start
// does not spin), serves /metrics aggregated over every worker (prom-client's AggregatorRegistry)
// and /readyz (ready when every worker is), and on SIGTERM / SIGINT tells every worker to stop
// and exits 0 once they have exited.
//
// Messages between them (IPC): a worker tells the primary it listens; the primary asks a worker
// whether it is ready, and tells it to stop.
import cluster, { type Worker } from 'node:cluster';
import { unlinkSync } from 'node:fs';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { ProxyConfig } from '../config.js';
import type { Log, LogFields } from './logger.js';
import { startOperationsServer, type OperationsServer } from './http.js';
import { REDIS_ANSWER_TIMEOUT_MS } from './metrics.js';

const LISTENING = 'notifylist:listening';
const READY_ASK = 'notifylist:ready?';
const READY_ANSWER = 'notifylist:ready';
const STOP = 'notifylist:stop';

/** Restart delays: doubled for each worker that dies soon after it started, up to the max. */
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 10_000;
/** A worker that ran this long before dying is restarted after the minimum delay again. */
const STABLE_AFTER_MS = 10_000;
/**
 * How long a worker has to answer whether it is ready: longer than it waits for Redis itself (a
 * PING on a connection whose Redis just died takes that long), so that its reason is the answer.
 */
const READY_ANSWER_MS = REDIS_ANSWER_TIMEOUT_MS + 1000;
/** After a stop, workers still there this long after --drain-ms (their own bound) are killed. */
const STOP_MARGIN_MS = 5000;

type Message = { type?: string; id?: number; reason?: string | null; msg?: string; fields?: LogFields };

interface Slot {
  index: number;
  worker: Worker | null;
  startedAt: number;
  listening: boolean;
  delay: number;
  timer: NodeJS.Timeout | null;
}


/**
 * The primary: returns the exit code (1 if the first worker cannot start: it has printed its
 * one start-up line itself, on the shared stderr).
 */
export async function runPrimary(config: ProxyConfig, log: Log, signalled: Promise<void>): Promise<number> {
  // A socket file left by an earlier run goes once, here: a worker removing it would unlink the
  // shared socket the others listen on.
  if (config.unixSocket) {
    try {
      unlinkSync(config.unixSocket.path);
    } catch {
      // none there
    }
  }
  const slots: Slot[] = Array.from({ length: config.workers }, (_, index) => ({ index: index + 1, worker: null, startedAt: 0, listening: false, delay: RESTART_MIN_MS, timer: null }));
  let stopping = false;
  let printedListening = false;
  let asked = 0;
  const answers = new Map<number, (reason: string | null) => void>();
  const aggregator = new AggregatorRegistry();

  let operations: OperationsServer | null = null;
  if (config.metricsPort !== 0) {
    operations = await startOperationsServer(config.metricsBind, config.metricsPort, {
      metrics: async () => ({ contentType: aggregator.contentType, text: await aggregator.clusterMetrics() }),
      notReadyReason: async () => {
        const reasons = await Promise.all(slots.map((slot) => askReady(slot)));
        const reason = reasons.find((r) => r !== null);
        return reason ?? null;
      },
    });
  }

  function askReady(slot: Slot): Promise<string | null> {
    const worker = slot.worker;
    if (worker === null || !slot.listening || !worker.isConnected()) return Promise.resolve(`worker ${slot.index} is not running (restarting)`);
    const id = ++asked;
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(`worker ${slot.index} does not answer`), READY_ANSWER_MS);
      const finish = (reason: string | null): void => {
        clearTimeout(timer);
        answers.delete(id);
        resolve(reason === null ? null : reason.startsWith('worker ') ? reason : `worker ${slot.index}: ${reason}`);
      };
      answers.set(id, finish);
      worker.send({ type: READY_ASK, id });
    });
  }

  /** Forks the slot's worker; resolves true once it listens, false if it exits first. */
  function fork(slot: Slot): Promise<boolean> {
    const worker = cluster.fork({ NOTIFYLIST_WORKER: String(slot.index) });
    slot.worker = worker;
    slot.startedAt = Date.now();
    slot.listening = false;
    return new Promise((resolve) => {
      worker.on('message', (message: Message) => {
        if (message.type === LISTENING && !slot.listening) {
          slot.listening = true;
          // The proxy's listening line once (every worker listens on the same), then each worker.
          if (!printedListening && message.msg !== undefined) log.info('listening', message.msg, message.fields);
          printedListening = true;
          log.info('worker_started', `worker ${slot.index} started (pid ${worker.process.pid})`, { worker: slot.index, workerPid: worker.process.pid });
          resolve(true);
        } else if (message.type === READY_ANSWER && message.id !== undefined) {
          answers.get(message.id)?.(message.reason ?? null);
        }
      });
      worker.on('exit', (code, signal) => {
        if (slot.worker === worker) slot.worker = null;
        resolve(false);
        // (The first worker's failed start ends the primary: runPrimary.)
        if (stopping || !printedListening) return;
        const lived = Date.now() - slot.startedAt;
        slot.delay = lived >= STABLE_AFTER_MS ? RESTART_MIN_MS : Math.min(RESTART_MAX_MS, slot.delay * 2);
        log.warn('worker_exited', `worker ${slot.index} (pid ${worker.process.pid}) exited (${signal ?? `code ${code}`}); restarting it in ${slot.delay} ms`, {
          worker: slot.index,
          workerPid: worker.process.pid,
          exit: signal ?? code,
          restartInMs: slot.delay,
        });
        slot.timer = setTimeout(() => {
          slot.timer = null;
          if (!stopping) void fork(slot);
        }, slot.delay);
      });
    });
  }

  const stopped = signalled.then(() => {
    stopping = true;
  });
  // The first worker alone: a start-up error is its one line and exit 1, not one per worker.
  const first = await Promise.race([fork(slots[0]), stopped.then(() => null)]);
  if (first === false && !stopping) {
    stopping = true;
    await operations?.close();
    return 1;
  }
  if (!stopping) for (const slot of slots.slice(1)) void fork(slot);
  await stopped;
  for (const slot of slots) if (slot.timer) clearTimeout(slot.timer);
  await stopWorkers(slots.map((slot) => slot.worker).filter((worker): worker is Worker => worker !== null), config.drainMs);
  await operations?.close();
  return 0;
}

/**
 * SIGTERM / SIGINT of the primary, passed on: every worker is told to stop as if it had got the
 * signal itself (a message, not a signal: a worker that also got the signal directly, from a
 * terminal's Ctrl-C or systemd's whole control group, must not take it as a second one, which
 * ends a proxy at once). Resolves once every worker has exited (killed STOP_MARGIN_MS after --drain-ms).
 */
async function stopWorkers(workers: Worker[], drainMs: number): Promise<void> {
  await Promise.all(
    workers.map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.isDead()) return resolve();
          const deadline = setTimeout(() => worker.process.kill('SIGKILL'), drainMs + STOP_MARGIN_MS);
          worker.once('exit', () => {
            clearTimeout(deadline);
            resolve();
          });
          if (worker.isConnected()) worker.send({ type: STOP });
          else worker.process.kill('SIGTERM');
        }),
    ),
  );
}

export interface WorkerSide {
  /** The proxy is running: it answers readiness and serves its metrics to the primary. */
  started(proxy: { metrics: Registry; notReadyReason(): Promise<string | null> }, listening: { msg: string; fields: LogFields }): void;
}

/**
 * In a worker: the primary's messages. `stop` is what the worker's own first SIGTERM does; a
 * primary that goes away (killed) stops the worker too, rather than leave it orphaned.
 */
export function workerSide(stop: () => void): WorkerSide {
  // Answers the primary's requests for metrics (none until the proxy runs).
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([]);
  let notReady: () => Promise<string | null> = async () => 'starting';
  process.on('message', (message: Message) => {
    if (message.type === STOP) stop();
    else if (message.type === READY_ASK) {
      void notReady()
        .catch((error: Error) => error.message)
        .then((reason) => process.send?.({ type: READY_ANSWER, id: message.id, reason }));
    }
  });
  process.on('disconnect', stop);
  return {
    started(proxy, listening) {
      AggregatorRegistry.setRegistries([proxy.metrics]);
      notReady = () => proxy.notReadyReason();
      process.send?.({ type: LISTENING, msg: listening.msg, fields: listening.fields });
    },
  };
}

/** This process is a worker of a --workers primary. */
export const isWorker = (): boolean => cluster.isWorker;
/** A worker's index (1..N), for its log lines. */
export const workerIndex = (): number => Number(process.env.NOTIFYLIST_WORKER);
export const isPrimaryOfWorkers = (config: ProxyConfig): boolean => config.workers > 1 && cluster.isPrimary;
