// The chaos soak's route watcher: does any route, at any moment, send traffic to a Service with no
// ready pod behind it? It watches routes, Services, pods and endpoints (list, then one watch each,
// with bookmarks), keeps every event, and replays them in resourceVersion order: each state the
// watches delivered is evaluated as it was, never confirmed by a later read (which sees a state
// that may have healed, and hides a violation shorter than the read). The four kinds share one
// etcd, whose revisions order every write; resourceVersions are compared as those numbers, and one
// that is not a number is an error. A violation is kept with when it began and ended. An error of
// a watch (it expired, it broke, the replay does not end where a fresh list is) fails the run:
// a gap in what was watched is a gap in what was checked.
import * as k8s from '@kubernetes/client-node';
import { setTimeout as delay } from 'node:timers/promises';

export type Kind = 'route' | 'service' | 'pod' | 'endpoint';
export const kinds: readonly Kind[] = ['route', 'service', 'pod', 'endpoint'];

/** What the check needs of an object, and nothing more (the soak keeps every event). */
export interface Slim {
  name: string;
  uid: string;
  rv: bigint;
  deleting: boolean;
  /** Routes: Services sent a share of the traffic (weight above 0), and the endpoint that owns it. */
  backends?: string[];
  owner?: { name: string; uid: string };
  /** Services: the selector. Pods: the labels, and Ready. */
  selector?: Record<string, string>;
  labels?: Record<string, string>;
  ready?: boolean;
}

export interface WatchEvent {
  kind: Kind;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Slim;
  /** When the watcher received it (ms since the epoch). */
  at: number;
}

export interface Snapshot {
  rv: bigint;
  items: Slim[];
  at: number;
}

export interface Violation {
  route: string;
  service: string;
  /** Why, at the state that began it. */
  why: string;
  fromRv: bigint;
  /** undefined: still there at the last state watched. */
  toRv?: bigint;
  from: number;
  to: number;
  durationMs: number;
}

export interface Evaluation {
  /** States evaluated (one per event that could change the verdict). */
  states: number;
  violations: Violation[];
}

export function parseRv(rv: string | undefined, what: string): bigint {
  if (!rv || !/^[0-9]+$/.test(rv)) throw new Error(`${what}: resourceVersion ${JSON.stringify(rv)} is not an etcd revision; the watcher cannot order states by it`);
  return BigInt(rv);
}

export function slim(kind: Kind, o: k8s.KubernetesObject & { spec?: unknown; status?: unknown }): Slim {
  const m = o.metadata!;
  const base: Slim = { name: m.name!, uid: m.uid ?? '', rv: parseRv(m.resourceVersion, `${kind} ${m.name}`), deleting: !!m.deletionTimestamp };
  if (kind === 'route') {
    const spec = o.spec as { rules?: { backendRefs?: { kind?: string; name: string; weight?: number }[] }[] } | undefined;
    const refs = (spec?.rules ?? []).flatMap((r) => r.backendRefs ?? []).filter((b) => (b.kind ?? 'Service') === 'Service' && (b.weight ?? 1) > 0);
    const owner = m.ownerReferences?.find((r) => r.kind === 'MachineLearningEndpoint');
    return { ...base, backends: [...new Set(refs.map((b) => b.name))], owner: owner && { name: owner.name, uid: owner.uid } };
  }
  if (kind === 'service') return { ...base, selector: (o.spec as k8s.V1ServiceSpec | undefined)?.selector ?? {} };
  if (kind === 'pod') {
    const ready = (o.status as k8s.V1PodStatus | undefined)?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    return { ...base, labels: m.labels ?? {}, ready };
  }
  return base;
}

const selects = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** A pod that takes traffic: Ready and not going away (the EndpointSlice drops a terminating pod's address). */
const serving = (p: Slim) => !!p.ready && !p.deleting;

/** Whether an event can change the verdict: a pod's status updates that leave it as it was cannot. */
function matters(e: WatchEvent, before: Slim | undefined): boolean {
  if (e.kind !== 'pod' || !before || e.type === 'DELETED') return true;
  return serving(before) !== serving(e.object) || JSON.stringify(before.labels) !== JSON.stringify(e.object.labels);
}

/**
 * Replays the watched events in resourceVersion order from the snapshots the watches began at, and
 * evaluates every state from the latest snapshot on: each route of a live endpoint must send traffic
 * only to Services that exist and select a ready pod. A route going away with its endpoint (deleted,
 * or replaced by a namesake) is the garbage collector's, in any order with its Services: not checked.
 */
export function evaluate(snapshots: Record<Kind, Snapshot>, events: readonly WatchEvent[]): Evaluation {
  const stores = Object.fromEntries(kinds.map((k) => [k, new Map(snapshots[k].items.map((o) => [o.name, o]))])) as Record<Kind, Map<string, Slim>>;
  const start = kinds.map((k) => snapshots[k].rv).reduce((a, b) => (a > b ? a : b));
  const ordered = [...events].sort((a, b) => (a.object.rv < b.object.rv ? -1 : a.object.rv > b.object.rv ? 1 : 0));
  const open = new Map<string, Violation>();
  const violations: Violation[] = [];
  let states = 0;
  const check = (rv: bigint, at: number) => {
    states++;
    const now = new Set<string>();
    const pods = [...stores.pod.values()].filter(serving);
    for (const r of stores.route.values()) {
      if (r.deleting || !r.owner) continue;
      const endpoint = stores.endpoint.get(r.owner.name);
      if (!endpoint || endpoint.deleting || endpoint.uid !== r.owner.uid) continue;
      for (const s of r.backends ?? []) {
        const svc = stores.service.get(s);
        if (svc && pods.some((p) => selects(svc.selector, p.labels))) continue;
        const key = `${r.name}\u0000${s}`;
        now.add(key);
        if (!open.has(key)) {
          const why = svc ? `Service ${s} selects no ready pod` : `Service ${s} does not exist`;
          open.set(key, { route: r.name, service: s, why, fromRv: rv, from: at, to: at, durationMs: 0 });
        }
      }
    }
    for (const [key, v] of open) {
      if (now.has(key)) continue;
      violations.push({ ...v, toRv: rv, to: at, durationMs: at - v.from });
      open.delete(key);
    }
  };
  let last = { rv: start, at: Math.max(...kinds.map((k) => snapshots[k].at)) };
  check(last.rv, last.at);
  for (const e of ordered) {
    if (e.object.rv <= snapshots[e.kind].rv) continue;
    const store = stores[e.kind];
    const before = store.get(e.object.name);
    if (e.type === 'DELETED') store.delete(e.object.name);
    else store.set(e.object.name, e.object);
    last = { rv: e.object.rv, at: Math.max(last.at, e.at) };
    if (e.object.rv > start && matters(e, before)) check(e.object.rv, last.at);
  }
  for (const v of open.values()) violations.push({ ...v, to: last.at, durationMs: last.at - v.from });
  return { states, violations: violations.sort((a, b) => (a.fromRv < b.fromRv ? -1 : 1)) };
}

export interface RouteWatcher {
  /** Pods the soak saw being deleted, with their endpoint, to explain a failure. */
  podDeletions(): { at: number; endpoint: string; what: string }[];
  /** Stops watching once every watch has caught up with a fresh list, and evaluates every state. */
  finish(): Promise<Evaluation & { events: number; errors: string[] }>;
}

const paths = (namespace: string): Record<Kind, string> => ({
  route: `/apis/gateway.networking.k8s.io/v1/namespaces/${namespace}/httproutes`,
  service: `/api/v1/namespaces/${namespace}/services`,
  pod: `/api/v1/namespaces/${namespace}/pods`,
  endpoint: `/apis/ml-operator.dev/v1alpha1/namespaces/${namespace}/machinelearningendpoints`,
});

type List = { metadata?: { resourceVersion?: string }; items: k8s.KubernetesObject[] };

export async function startRouteWatcher(kc: k8s.KubeConfig, namespace: string): Promise<RouteWatcher> {
  const path = paths(namespace);
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const lists: Record<Kind, () => Promise<List>> = {
    route: () => custom.listNamespacedCustomObject({ group: 'gateway.networking.k8s.io', version: 'v1', namespace, plural: 'httproutes' }) as Promise<List>,
    service: () => core.listNamespacedService({ namespace }) as Promise<List>,
    pod: () => core.listNamespacedPod({ namespace }) as Promise<List>,
    endpoint: () => custom.listNamespacedCustomObject({ group: 'ml-operator.dev', version: 'v1alpha1', namespace, plural: 'machinelearningendpoints' }) as Promise<List>,
  };
  const list = async (kind: Kind): Promise<Snapshot> => {
    const body = await lists[kind]().catch((err: Error) => {
      throw new Error(`route watcher: listing ${kind}s in ${namespace}: ${err.message}`);
    });
    return { rv: parseRv(body.metadata?.resourceVersion, `the list of ${kind}s`), items: body.items.map((o) => slim(kind, o)), at: Date.now() };
  };
  const watch = new k8s.Watch(kc);
  const events: WatchEvent[] = [];
  const errors: string[] = [];
  const deletions: { at: number; endpoint: string; what: string }[] = [];
  const seenDeleting = new Set<string>();
  const snapshots = {} as Record<Kind, Snapshot>;
  const lastRv = {} as Record<Kind, bigint>;
  const aborts = new Map<Kind, AbortController>();
  let stopped = false;

  const follow = async (kind: Kind): Promise<void> => {
    const from = lastRv[kind];
    const onEvent = (type: string, obj: k8s.KubernetesObject & { code?: number; message?: string }) => {
      try {
        if (type === 'ERROR') throw new Error(`HTTP ${obj.code}: ${obj.message}`);
        const rv = parseRv(obj.metadata?.resourceVersion, `a ${type} event of the ${kind}s`);
        lastRv[kind] = rv;
        if (type === 'BOOKMARK') return;
        const object = slim(kind, obj);
        events.push({ kind, type: type as WatchEvent['type'], object, at: Date.now() });
        if (kind === 'pod' && object.deleting && !seenDeleting.has(object.uid)) {
          seenDeleting.add(object.uid);
          deletions.push({ at: Date.now(), endpoint: object.labels?.['ml-operator.dev/endpoint'] ?? '', what: `pod ${object.name} deleted` });
        }
      } catch (err) {
        errors.push(`watch of ${kind}s in ${namespace}: ${(err as Error).message}`);
      }
    };
    const onDone = (err: unknown) => {
      if (stopped) return;
      // A watch the API server ended in time goes on from where it was; any other end is a gap.
      if (err) errors.push(`watch of ${kind}s in ${namespace} from resourceVersion ${lastRv[kind]} broke: ${(err as Error).message ?? err}`);
      else void follow(kind);
    };
    try {
      aborts.set(kind, await watch.watch(path[kind], { resourceVersion: String(from), allowWatchBookmarks: true }, onEvent, onDone));
    } catch (err) {
      errors.push(`watch of ${kind}s in ${namespace} could not start: ${(err as Error).message}`);
    }
  };
  for (const kind of kinds) {
    snapshots[kind] = await list(kind);
    lastRv[kind] = snapshots[kind].rv;
    await follow(kind);
  }

  /** The replayed store of a kind ends where a fresh list is: same objects, same resourceVersions. */
  const caughtUp = (kind: Kind, fresh: Snapshot): boolean => {
    const store = new Map(snapshots[kind].items.map((o) => [o.name, o.rv]));
    for (const e of events) {
      if (e.kind !== kind || e.object.rv <= snapshots[kind].rv) continue;
      if (e.type === 'DELETED') store.delete(e.object.name);
      else store.set(e.object.name, e.object.rv);
    }
    return store.size === fresh.items.length && fresh.items.every((o) => store.get(o.name) === o.rv);
  };

  return {
    podDeletions: () => [...deletions],
    async finish() {
      for (const kind of kinds) {
        const deadline = Date.now() + 30_000;
        let fresh = await list(kind);
        while (!caughtUp(kind, fresh) && Date.now() < deadline) {
          await delay(200);
          if (lastRv[kind] >= fresh.rv) fresh = await list(kind);
        }
        if (!caughtUp(kind, fresh)) errors.push(`watch of ${kind}s in ${namespace}: its events do not end where a list at resourceVersion ${fresh.rv} is, 30 s later`);
      }
      stopped = true;
      for (const a of aborts.values()) a.abort();
      return { ...evaluate(snapshots, events), events: events.length, errors: [...errors] };
    },
  };
}
