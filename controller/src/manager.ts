// How the controller gets there: informers on the three kinds and on everything it owns, events
// mapped to endpoint keys, one work queue, the reconciler, leader election, health and metrics.
import { randomBytes } from 'node:crypto';
import type { MachineLearningEndpoint, MachineLearningEndpointConfig, MachineLearningModel } from './api/generated.ts';
import { labels, managedBySelector } from './desired/labels.ts';
import type { ClusterAccess } from './kube/access.ts';
import { KubeClient } from './kube/client.ts';
import { Informer } from './kube/informer.ts';
import { resources, type KubeObject, type Resource } from './kube/resources.ts';
import type { Logger } from './log.ts';
import type { Options } from './options.ts';
import { EndpointReconciler, type Caches, type Store } from './reconcile/endpoint.ts';
import { routingProvider } from './routing/providers.ts';
import { EventRecorder } from './runtime/events.ts';
import { startHealthServer } from './runtime/health.ts';
import { LeaderElector } from './runtime/leader.ts';
import { Metrics } from './runtime/metrics.ts';
import { WorkQueue } from './runtime/queue.ts';

type Endpoint = MachineLearningEndpoint & KubeObject;
type Config = MachineLearningEndpointConfig & KubeObject;
type Model = MachineLearningModel & KubeObject;

/** One informer per watched namespace (or one for all), read through one store. */
class Watched<T extends KubeObject> implements Store<T> {
  readonly informers: Informer<T>[];
  private readonly byNamespace = new Map<string, Informer<T>>();

  constructor(make: (namespace: string | undefined) => Informer<T>, namespaces: string[] | undefined) {
    if (namespaces === undefined) {
      this.informers = [make(undefined)];
    } else {
      this.informers = namespaces.map((ns) => {
        const informer = make(ns);
        this.byNamespace.set(ns, informer);
        return informer;
      });
    }
  }

  private informerFor(namespace: string | undefined): Informer<T> | undefined {
    return this.byNamespace.size === 0 ? this.informers[0] : namespace === undefined ? undefined : this.byNamespace.get(namespace);
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.informerFor(namespace)?.get(namespace, name);
  }

  list(namespace?: string): T[] {
    if (namespace === undefined) return this.informers.flatMap((i) => i.list());
    return this.informerFor(namespace)?.list(namespace) ?? [];
  }
}

const key = (namespace: string | undefined, name: string) => `${namespace}/${name}`;
const isSnapshot = (o: KubeObject) => o.metadata.labels?.[labels.snapshot] === 'true';

export interface RunningController {
  /** Resolves once this replica leads and its caches are synced (or never, for a standby). */
  readonly leading: Promise<void>;
  readonly healthPort: number;
  readonly metricsPort: number;
  stop(): Promise<void>;
}

export async function startController(options: Options, kc: ClusterAccess, logger: Logger): Promise<RunningController> {
  const metrics = new Metrics();
  const client = new KubeClient(kc, { fieldManager: 'ml-operator', onWrite: (verb, r) => metrics.apiWrites.inc({ verb, resource: r.plural }) });
  const events = new EventRecorder(client, { component: 'ml-operator', host: options.identity, logger });
  const namespaces = options.watchNamespaces.length ? options.watchNamespaces : undefined;
  const queue = new WorkQueue({ concurrency: options.concurrency, logger, onDepth: (d) => metrics.workqueueDepth.set(d) });
  const provider = routingProvider(options.config);

  let synced = false;
  let caches: (Caches & { all: Watched<KubeObject>[] }) | undefined;
  const enqueue = (k: string) => {
    metrics.workqueueAdds.inc();
    queue.add(k);
  };

  function buildCaches(): Caches & { all: Watched<KubeObject>[] } {
    const endpoints: Watched<Endpoint> = watch<Endpoint>(resources.endpoint, undefined, (o) => enqueue(key(o.metadata.namespace, o.metadata.name)));
    const configs: Watched<Config> = watch<Config>(resources.endpointConfig, undefined, (o) => {
      if (isSnapshot(o)) return byEndpointLabel(o);
      for (const e of endpoints.list(o.metadata.namespace)) if (e.spec.config === o.metadata.name) enqueue(key(e.metadata.namespace, e.metadata.name));
    });
    const models = watch<Model>(resources.model, undefined, (o) => {
      if (isSnapshot(o)) return byEndpointLabel(o);
      const usedBy = new Set(configs.list(o.metadata.namespace).filter((c) => !isSnapshot(c) && c.spec.models.some((v) => v.model === o.metadata.name)).map((c) => c.metadata.name));
      for (const e of endpoints.list(o.metadata.namespace)) if (usedBy.has(e.spec.config)) enqueue(key(e.metadata.namespace, e.metadata.name));
    });
    const owned = (r: Resource) => watch<KubeObject>(r, managedBySelector, byEndpointLabel);
    const built = {
      endpoints,
      configs,
      models,
      deployments: owned(resources.deployment),
      services: owned(resources.service),
      claims: owned(resources.persistentVolumeClaim),
      gateways: provider.gatewayResource ? owned(provider.gatewayResource) : undefined,
      routes: owned(provider.routeResource),
      volumes:
        options.config.storage.mode === 'hostPath'
          ? new Watched<KubeObject>(
              () =>
                new Informer<KubeObject>(client, resources.persistentVolume, { labelSelector: managedBySelector, logger }, {
                  onAdd: volumeEvent,
                  onUpdate: volumeEvent,
                  onDelete: volumeEvent,
                }),
              undefined,
            )
          : undefined,
    };
    return { ...built, all: Object.values(built).filter((w): w is Watched<KubeObject> => w instanceof Watched) as Watched<KubeObject>[] };
  }

  function byEndpointLabel(o: KubeObject): void {
    const endpoint = o.metadata.labels?.[labels.endpoint];
    if (endpoint) enqueue(key(o.metadata.namespace, endpoint));
  }
  function volumeEvent(o: KubeObject): void {
    const l = o.metadata.labels ?? {};
    if (l[labels.endpoint] && l[labels.endpointNamespace]) enqueue(key(l[labels.endpointNamespace], l[labels.endpoint]));
  }
  function watch<T extends KubeObject>(r: Resource, labelSelector: string | undefined, onEvent: (o: T) => void): Watched<T> {
    const handlers = { onAdd: onEvent, onUpdate: (o: T) => onEvent(o), onDelete: onEvent };
    return new Watched<T>((namespace) => new Informer<T>(client, r, { namespace, labelSelector, logger }, handlers), namespaces);
  }

  const reconciler = (c: Caches) => new EndpointReconciler({ client, caches: c, config: options.config, events, logger });

  let resolveLeading!: () => void;
  const leading = new Promise<void>((resolve) => (resolveLeading = resolve));
  const abort = new AbortController();

  async function startWorking(): Promise<void> {
    metrics.leader.set(1);
    caches = buildCaches();
    for (const w of caches.all) for (const i of w.informers) i.start();
    const started = Date.now();
    await Promise.all(caches.all.flatMap((w) => w.informers.map((i) => i.waitForSync(abort.signal))));
    synced = true;
    logger.info({ ms: Date.now() - started, namespaces: namespaces ?? 'all' }, 'caches synced; reconciling');
    const r = reconciler(caches);
    queue.start(async (k) => {
      const log = logger.child({ endpoint: k, reconcileId: randomBytes(4).toString('hex') });
      const timer = metrics.reconcileDuration.startTimer();
      try {
        const result = await r.reconcile(k);
        metrics.reconcileTotal.inc({ result: result?.requeueAfterMs !== undefined ? 'requeue' : 'success' });
        log.debug({ requeueAfterMs: result?.requeueAfterMs }, 'reconciled');
        return result;
      } catch (err) {
        metrics.reconcileTotal.inc({ result: 'error' });
        metrics.reconcileErrors.inc();
        log.error({ err }, 'reconcile failed; retrying with backoff');
        const [namespace, name] = k.split('/');
        const endpoint = caches?.endpoints.get(namespace, name);
        if (endpoint) {
          events.record({ ...endpoint, apiVersion: 'ml-operator.dev/v1alpha1', kind: resources.endpoint.kind }, 'Warning', 'ReconcileError', (err as Error).message);
        }
        throw err;
      } finally {
        timer();
      }
    });
    resolveLeading();
  }

  const health = await startHealthServer({
    port: options.healthPort,
    metricsPort: options.metricsPort,
    metrics,
    ready: () => (elector && !elector.isLeader() ? true : synced),
    logger,
  });

  logger.info({ healthPort: health.port, metricsPort: health.metricsPort ?? health.port }, 'serving /healthz, /readyz and /metrics');

  let elector: LeaderElector | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      abort.abort();
      for (const w of caches?.all ?? []) for (const i of w.informers) i.stop();
      await queue.shutdown(20_000);
      if (elector?.isLeader()) await elector.release();
      metrics.leader.set(0);
      await health.close();
      logger.info('stopped');
    })();
    return stopping;
  };

  if (options.leaderElect) {
    elector = new LeaderElector(client, { namespace: options.leaderElectionNamespace, name: options.leaderElectionId, identity: options.identity, logger });
    void elector.run({
      onStartedLeading: () => {
        logger.info({ identity: options.identity, lease: `${options.leaderElectionNamespace}/${options.leaderElectionId}` }, 'became leader');
        void startWorking().catch((err) => logger.error({ err }, 'failed to start the controllers'));
      },
      onStoppedLeading: () => {
        // Another replica may already act: stop at once rather than write as a stale leader.
        logger.error({ identity: options.identity }, 'lost the leader lease; exiting so a fresh process can stand by');
        metrics.leader.set(0);
        process.exit(1);
      },
    });
  } else {
    await startWorking();
  }
  return { leading, healthPort: health.port, metricsPort: health.metricsPort ?? health.port, stop };
}
