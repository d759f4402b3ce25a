// The chaos soak's route watcher: it sees every state of a namespace's routes, Services, Deployments
// and endpoints that the API server went through, and checks each one: a route sends traffic only to
// Services with an available replica behind them. Four watches deliver four streams; resource
// versions are one sequence in a cluster (etcd's revision), so the watcher holds each event for a
// while and applies them in resource-version order, evaluating the state after every event. An event
// that comes later than the hold allows (older than one already applied), a watch that expired
// (states lost) or a failed read is an error, and an error fails the soak: the watcher never
// confirms by a later read, and never lets a state it could not see pass for a good one.
import { setTimeout as delay } from 'node:timers/promises';
import * as k8s from '@kubernetes/client-node';

export type WatchedKind = 'endpoint' | 'route' | 'service' | 'deployment';

interface Meta {
  name: string;
  generation?: number;
  uid?: string;
  resourceVersion?: string;
  deletionTimestamp?: string | Date;
  ownerReferences?: { kind: string; name: string; uid: string }[];
}
export interface WatchedObject {
  metadata: Meta;
  spec?: {
    replicas?: number;
    rules?: { backendRefs?: { name: string; weight?: number }[] }[];
    selector?: Record<string, string> | { matchLabels?: Record<string, string> };
    template?: { metadata?: { labels?: Record<string, string> } };
  };
  status?: { availableReplicas?: number };
}

export interface WatchEvent {
  kind: WatchedKind;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: WatchedObject;
  /** When the watcher received it (ms since the epoch). */
  at: number;
}

/** A route that named a Service with no available replica behind it, from the event that began it to the one that ended it. */
export interface Violation {
  route: string;
  service: string;
  why: string;
  from: number;
  fromVersion: number;
  /** Undefined while it lasts. */
  to?: number;
  toVersion?: number;
}

const version = (o: WatchedObject) => Number(o.metadata.resourceVersion);

/** Services a route sends traffic to (backends of weight above zero). */
export function routedServices(route: WatchedObject): string[] {
  return [
    ...new Set(
      (route.spec?.rules ?? []).flatMap((r) =>
        (r.backendRefs ?? []).filter((b) => (b.weight ?? 1) > 0).map((b) => b.name),
      ),
    ),
  ];
}

const selects = (selector: Record<string, string> | undefined, l: Record<string, string> | undefined) =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => l?.[k] === v);

/**
 * The checker itself, fed events in any order of arrival: `drain` applies those held long enough,
 * in resource-version order, and checks the state after each.
 */
export class RouteChecker {
  private readonly holdMs: number;
  private readonly held: WatchEvent[] = [];
  private readonly objects: Record<WatchedKind, Map<string, WatchedObject>> = {
    endpoint: new Map(),
    route: new Map(),
    service: new Map(),
    deployment: new Map(),
  };
  private applied = 0;
  private states = 0;
  private readonly open = new Map<string, Violation>();
  private readonly closed: Violation[] = [];
  private readonly problems: string[] = [];

  constructor(options: { holdMs: number }) {
    this.holdMs = options.holdMs;
  }

  /** The state as a list at `resourceVersion` showed it (the watches start from there). */
  seed(kind: WatchedKind, items: WatchedObject[], resourceVersion: number): void {
    for (const o of items) this.objects[kind].set(o.metadata.name, o);
    this.applied = Math.max(this.applied, resourceVersion);
  }

  push(event: WatchEvent): void {
    this.held.push(event);
  }

  error(message: string): void {
    if (this.problems.length < 20) this.problems.push(message);
  }

  /** Applies, in resource-version order, every event held for at least the hold (all of them when `all`). */
  drain(now: number, all = false): void {
    // Every event held long enough, and every one older than the newest of those (in hand already,
    // however briefly): a version's predecessors are applied before it.
    const newest = Math.max(...this.held.filter((e) => all || e.at <= now - this.holdMs).map((e) => version(e.object)));
    const due = this.held.filter((e) => version(e.object) <= newest);
    if (due.length === 0) return;
    const keep = this.held.filter((e) => !due.includes(e));
    this.held.length = 0;
    this.held.push(...keep);
    due.sort((a, b) => version(a.object) - version(b.object));
    for (const e of due) {
      const v = version(e.object);
      if (!(v > this.applied)) {
        this.error(
          `${e.kind} ${e.object.metadata.name} ${e.type} at resourceVersion ${v} came after resourceVersion ${this.applied} was applied: a watch lagged more than ${this.holdMs} ms, and the states in between were not seen as they were`,
        );
        continue;
      }
      this.applied = v;
      if (e.type === 'DELETED') this.objects[e.kind].delete(e.object.metadata.name);
      else this.objects[e.kind].set(e.object.metadata.name, e.object);
      this.evaluate(e.at, v);
    }
  }

  /** The state after the event of resource version `v`, received at `at`. */
  private evaluate(at: number, v: number): void {
    this.states++;
    const now = new Map<string, { route: string; service: string; why: string }>();
    for (const route of this.objects.route.values()) {
      if (route.metadata.deletionTimestamp) continue;
      // The route of an endpoint being deleted is checked as any other: the controller removes it
      // before its Services and pods may go (the drain finalizer), never leaving it to the garbage
      // collector in whatever order.
      for (const service of routedServices(route)) {
        const svc = this.objects.service.get(service);
        const selector = svc?.spec?.selector as Record<string, string> | undefined;
        const behind = [...this.objects.deployment.values()].filter((d) =>
          selects(selector, d.spec?.template?.metadata?.labels),
        );
        if (svc && behind.some((d) => (d.status?.availableReplicas ?? 0) >= 1)) continue;
        now.set(`${route.metadata.name}\n${service}`, {
          route: route.metadata.name,
          service,
          why: svc
            ? `its Deployments (${behind.map((d) => `${d.metadata.name} ${d.status?.availableReplicas ?? 0} available`).join(', ') || 'none'}) have no available replica`
            : 'it does not exist',
        });
      }
    }
    for (const [key, x] of this.open) {
      if (now.has(key)) continue;
      this.open.delete(key);
      this.closed.push({ ...x, to: at, toVersion: v });
    }
    for (const [key, x] of now) if (!this.open.has(key)) this.open.set(key, { ...x, from: at, fromVersion: v });
  }

  /** The objects of a kind as of the last event applied. */
  objectsOf(kind: WatchedKind): WatchedObject[] {
    return [...this.objects[kind].values()];
  }

  /** States evaluated (one per event applied). */
  checks(): number {
    return this.states;
  }

  /** Every violation seen, those still open last. */
  violations(): Violation[] {
    return [...this.closed, ...this.open.values()];
  }

  errors(): string[] {
    return [...this.problems];
  }
}

const kinds: { kind: WatchedKind; path: (ns: string) => string }[] = [
  { kind: 'endpoint', path: (ns) => `/apis/ml-operator.dev/v1alpha1/namespaces/${ns}/machinelearningendpoints` },
  { kind: 'route', path: (ns) => `/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/httproutes` },
  { kind: 'service', path: (ns) => `/api/v1/namespaces/${ns}/services` },
  { kind: 'deployment', path: (ns) => `/apis/apps/v1/namespaces/${ns}/deployments` },
];

type List = { metadata?: { resourceVersion?: string }; items: unknown[] };

/**
 * Watches a namespace's endpoints, routes, Services and Deployments from one consistent list (each
 * listed at the same resource version) and feeds a RouteChecker. Watches that end are resumed from
 * the last resource version seen, which loses nothing; one that expired (410) is an error, and that
 * kind is no longer watched.
 */
export async function watchRoutes(
  admin: k8s.KubeConfig,
  namespace: string,
  options: { holdMs?: number } = {},
): Promise<{ checker: RouteChecker; stop: () => RouteChecker }> {
  const checker = new RouteChecker({ holdMs: options.holdMs ?? 2000 });
  const watch = new k8s.Watch(admin);
  const custom = admin.makeApiClient(k8s.CustomObjectsApi);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const apps = admin.makeApiClient(k8s.AppsV1Api);
  const lists: Record<WatchedKind, (q: { resourceVersion?: string; resourceVersionMatch?: string }) => Promise<List>> =
    {
      endpoint: (q) =>
        custom.listNamespacedCustomObject({
          group: 'ml-operator.dev',
          version: 'v1alpha1',
          namespace,
          plural: 'machinelearningendpoints',
          ...q,
        }) as Promise<List>,
      route: (q) =>
        custom.listNamespacedCustomObject({
          group: 'gateway.networking.k8s.io',
          version: 'v1',
          namespace,
          plural: 'httproutes',
          ...q,
        }) as Promise<List>,
      service: (q) => core.listNamespacedService({ namespace, ...q }),
      deployment: (q) => apps.listNamespacedDeployment({ namespace, ...q }),
    };
  // The API server may ask to come back (429 with Retry-After while a resource's storage initialises,
  // as right after its CRD is established): a list is tried again, within 30 s.
  for (const [kind, list] of Object.entries(lists) as [WatchedKind, (typeof lists)[WatchedKind]][]) {
    lists[kind] = async (q) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await list(q);
        } catch (err) {
          const code = (err as { code?: number }).code;
          if (attempt >= 30 || !(code === 429 || (code !== undefined && code >= 500))) throw err;
          await delay(1000);
        }
      }
    };
  }
  // The first list fixes the resource version; the others are read exactly at it.
  const first = await lists[kinds[0].kind]({});
  const at = first.metadata!.resourceVersion!;
  checker.seed(kinds[0].kind, first.items as WatchedObject[], Number(at));
  for (const k of kinds.slice(1)) {
    const l = await lists[k.kind]({ resourceVersion: at, resourceVersionMatch: 'Exact' });
    checker.seed(k.kind, l.items as WatchedObject[], Number(at));
  }
  let stopped = false;
  const expired = new Set<WatchedKind>();
  const aborts = new Map<WatchedKind, AbortController>();
  const start = (k: (typeof kinds)[number], from: string) => {
    let last = from;
    void watch
      .watch(
        k.path(namespace),
        { resourceVersion: last, allowWatchBookmarks: true },
        (type: string, object: WatchedObject & { code?: number; message?: string }) => {
          if (type === 'BOOKMARK') {
            last = object.metadata.resourceVersion ?? last;
            return;
          }
          if (type === 'ERROR') {
            expired.add(k.kind);
            checker.error(
              `the watch of ${k.kind}s failed at resourceVersion ${last}: ${object.code} ${object.message}; states after it were not seen`,
            );
            return;
          }
          last = object.metadata.resourceVersion ?? last;
          checker.push({ kind: k.kind, type: type as WatchEvent['type'], object, at: Date.now() });
        },
        (err: unknown) => {
          if (stopped || expired.has(k.kind)) return;
          // A watch the server closed (its timeout) or a connection that dropped: resume where it was.
          setTimeout(() => !stopped && start(k, last), err ? 500 : 0);
        },
      )
      .then((abort) => aborts.set(k.kind, abort))
      .catch((err: unknown) => {
        if (stopped) return;
        checker.error(`the watch of ${k.kind}s could not start: ${(err as Error).message}`);
        setTimeout(() => !stopped && start(k, last), 500);
      });
  };
  for (const k of kinds) start(k, at);
  const timer = setInterval(() => checker.drain(Date.now()), 100);
  return {
    checker,
    stop() {
      stopped = true;
      clearInterval(timer);
      for (const a of aborts.values()) a.abort();
      checker.drain(Date.now(), true);
      return checker;
    },
  };
}
