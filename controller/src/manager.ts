// The manager: wires the controller's parts together (controller-runtime's Manager). Sources
// (controller/sources.ts) fill the caches and call the event handlers (controller/handlers.ts),
// which enqueue endpoint keys; the loop (controller/loop.ts) runs the reconciler over the queue.
// Around it: leader election, health and metrics, and a graceful stop.
import type { ClusterAccess } from './kube/access.ts';
import { KubeClient } from './kube/client.ts';
import { resources, type Resource } from './kube/resources.ts';
import { autoscalerResource } from './desired/autoscaling.ts';
import type { Logger } from './log.ts';
import type { Options } from './options/flags.ts';
import { eventHandlers } from './controller/handlers.ts';
import { startLoop } from './controller/loop.ts';
import { buildSources, type Sources } from './controller/sources.ts';
import { EndpointReconciler } from './reconcile/endpoint.ts';
import { keyOf } from './reconcile/indexes.ts';
import { routingProvider } from './routing/providers.ts';
import { EventRecorder } from './runtime/events.ts';
import { startHealthServer } from './runtime/health.ts';
import { LeaderElector } from './runtime/leader.ts';
import { Metrics } from './runtime/metrics.ts';
import { prometheusClient } from './probes/prometheus.ts';
import { WorkQueue } from './runtime/queue.ts';

export interface RunningController {
  /** Resolves once this replica leads and its caches are synced (or never, for a standby). */
  readonly leading: Promise<void>;
  readonly healthPort: number;
  readonly metricsPort: number;
  stop(): Promise<void>;
}

export async function startController(options: Options, kc: ClusterAccess, logger: Logger): Promise<RunningController> {
  const metrics = new Metrics();
  const client = new KubeClient(kc, {
    fieldManager: 'ml-operator',
    onWrite: (verb, r, subresource) =>
      metrics.apiWrites.inc({ verb, resource: subresource ? `${r.plural}/${subresource}` : r.plural }),
    rateLimit: { qps: options.kubeApiQps, burst: options.kubeApiBurst },
    onThrottled: (what, retryAfterSeconds) => {
      metrics.apiThrottled.inc();
      logger.debug({ request: what, retryAfterSeconds }, 'the API server asked to retry later');
    },
    // With leader election, only the leader writes; the Lease is how a replica becomes one.
    mayWrite: (r) => !options.leaderElect || leadingNow || r === resources.lease,
  });
  let leadingNow = false;
  /** startWorking() was called: caches and the loop are (being) set up, once per process. */
  let working = false;
  const events = new EventRecorder(client, { component: 'ml-operator', host: options.identity, logger });
  const namespaces = options.watchNamespaces.length ? options.watchNamespaces : undefined;
  const queue = new WorkQueue({
    concurrency: options.concurrency,
    logger,
    onDepth: (d) => metrics.workqueueDepth.set(d),
  });
  const provider = routingProvider(options.config);

  let synced = false;
  let sources: Sources | undefined;
  const enqueue = (k: string, priority?: 'normal' | 'low') => {
    metrics.workqueueAdds.inc();
    queue.add(k, priority);
  };

  let resolveLeading!: () => void;
  const leading = new Promise<void>((resolve) => (resolveLeading = resolve));
  const abort = new AbortController();

  async function startWorking(): Promise<void> {
    metrics.leader.set(1);
    const handlers = eventHandlers(options.config, () => sources, enqueue);
    // Optional APIs (KEDA's ScaledObjects, Traefik's TraefikServices): without them the controller
    // still serves everything else, and the endpoints that need them say what to install.
    const optional = async (r: Resource | undefined, what: string) => {
      if (!r) return undefined;
      if (await client.served(r)) return r;
      logger.error(
        { resource: `${r.plural}.${r.group}/${r.version}` },
        `${what} is not served by this cluster: endpoints that need it report it in their status until it is installed (then restart the controller)`,
      );
      return undefined;
    };
    const autoscalers = await optional(
      autoscalerResource(options.config),
      options.config.autoscaling.engine === 'keda' ? "KEDA's ScaledObject API" : 'the HorizontalPodAutoscaler API',
    );
    const auxiliary = await optional(provider.kinds.auxiliary?.resource, "Traefik's TraefikService API");
    sources = buildSources({
      client,
      logger,
      config: options.config,
      namespaces,
      provider,
      autoscalerResource: autoscalers,
      auxiliaryResource: auxiliary,
      hostPath: options.config.storage.mode === 'hostPath',
      handlers,
    });
    for (const i of sources.informers) i.start();
    const started = Date.now();
    await Promise.all(sources.informers.map((i) => i.waitForSync(abort.signal)));
    synced = true;
    logger.info({ ms: Date.now() - started, namespaces: namespaces ?? 'all' }, 'caches synced; reconciling');
    const prometheus = options.config.prometheus.url ? prometheusClient(options.config.prometheus.url) : undefined;
    const reconciler = new EndpointReconciler({
      client,
      caches: sources,
      config: options.config,
      events,
      logger,
      metrics,
      prometheus,
      missing: { autoscalers: !autoscalers, auxiliary: !!provider.kinds.auxiliary && !auxiliary },
    });
    startLoop({ queue, reconciler, caches: sources, metrics, events, logger });
    resolveLeading();
  }

  const health = await startHealthServer({
    port: options.healthPort,
    metricsPort: options.metricsPort,
    metrics,
    ready: () => (elector && !elector.isLeader() ? true : synced),
    logger,
  });

  logger.info(
    { healthPort: health.port, metricsPort: health.metricsPort ?? health.port },
    'serving /healthz, /readyz and /metrics',
  );

  let elector: LeaderElector | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      abort.abort();
      for (const i of sources?.informers ?? []) i.stop();
      await queue.shutdown(20_000);
      if (elector?.isLeader()) await elector.release();
      metrics.leader.set(0);
      await health.close();
      logger.info('stopped');
    })();
    return stopping;
  };

  if (options.leaderElect) {
    // One term per LeaderElector. A replica that loses the lease (another took it, or it could not
    // renew in time, say while the API server was down) stops writing at once, holds its queue and
    // stands by with warm caches; when it leads again it resumes with every endpoint queued.
    const elect = () => {
      elector = new LeaderElector(client, {
        namespace: options.leaderElectionNamespace,
        name: options.leaderElectionId,
        identity: options.identity,
        logger,
      });
      void elector.run({
        onStartedLeading: () => {
          leadingNow = true;
          metrics.leader.set(1);
          logger.info(
            { identity: options.identity, lease: `${options.leaderElectionNamespace}/${options.leaderElectionId}` },
            'became leader',
          );
          if (!working) {
            working = true;
            void startWorking().catch((err: unknown) => logger.error({ err }, 'failed to start the controllers'));
            return;
          }
          for (const e of sources?.endpoints.list() ?? []) enqueue(keyOf(e.metadata.namespace, e.metadata.name));
          queue.resume();
        },
        onStoppedLeading: () => {
          leadingNow = false;
          queue.hold();
          metrics.leader.set(0);
          logger.error(
            { identity: options.identity },
            'lost the leader lease; writes stopped, standing by until this replica leads again',
          );
          if (!abort.signal.aborted) elect();
        },
      });
    };
    elect();
  } else {
    leadingNow = true;
    working = true;
    await startWorking();
  }
  return { leading, healthPort: health.port, metricsPort: health.metricsPort ?? health.port, stop };
}
