// The controller loop: one work queue of endpoint keys, each reconciled with a logger that carries
// the key and a reconcile id, counted in the metrics, and reported as an Event when it fails (the
// queue retries it with backoff).
import { randomBytes } from 'node:crypto';
import { FencedError } from '../kube/client.ts';
import { resources } from '../kube/resources.ts';
import type { Logger } from '../log.ts';
import type { Caches } from '../reconcile/caches.ts';
import type { EndpointReconciler } from '../reconcile/endpoint.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { WorkQueue } from '../runtime/queue.ts';

export function startLoop(o: {
  queue: WorkQueue;
  reconciler: EndpointReconciler;
  caches: Caches;
  metrics: Metrics;
  events: EventRecorder;
  logger: Logger;
}): void {
  const { queue, reconciler, caches, metrics, events, logger } = o;
  queue.start(async (key) => {
    const log = logger.child({ endpoint: key, reconcileId: randomBytes(4).toString('hex') });
    const timer = metrics.reconcileDuration.startTimer();
    try {
      const result = await reconciler.reconcile(key);
      metrics.reconcileTotal.inc({ result: result?.requeueAfterMs !== undefined ? 'requeue' : 'success' });
      log.debug({ requeueAfterMs: result?.requeueAfterMs }, 'reconciled');
      return result;
    } catch (err) {
      if (err instanceof FencedError) {
        // Leadership went while this reconcile ran: not a failure of the endpoint, so no backoff and
        // no retry. The queue is held, and every endpoint is queued again when this replica leads again.
        log.info({ reason: err.message }, 'reconcile stopped: this replica no longer leads');
        metrics.reconcileTotal.inc({ result: 'fenced' });
        return undefined;
      }
      metrics.reconcileTotal.inc({ result: 'error' });
      metrics.reconcileErrors.inc();
      log.error({ err }, 'reconcile failed; retrying with backoff');
      const [namespace, name] = key.split('/');
      const endpoint = caches.endpoints.get(namespace, name);
      if (endpoint) {
        events.record(
          { ...endpoint, apiVersion: 'ml-operator.dev/v1alpha1', kind: resources.endpoint.kind },
          'Warning',
          'ReconcileError',
          (err as Error).message,
        );
      }
      throw err;
    } finally {
      timer();
    }
  });
}
