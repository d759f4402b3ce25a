// Read-your-writes for the endpoint statuses this controller writes. A status write reaches the
// informer's cache only when the watch delivers it; a reconcile that runs before then (another
// object woke it) must decide from the status it wrote, not from the older one the cache still
// shows, or it undoes what the write recorded (a rollout step, its history, a rollback).
//
// A write is remembered with the resourceVersion it produced. A cached object older than that is
// overlaid with the written status; one at or past it has the write (or something newer) and is
// the truth. Resource versions of one resource compare as integers (KEP-5504, a guarantee of the
// API since Kubernetes 1.35 and the form etcd-backed servers have always given); for a server
// whose versions are not integers, only the versions the remembered writes were based on count as
// older. The memory is soft: lost with a restart, when the cache is re-listed at the newest state.
import type { MachineLearningEndpoint, MachineLearningEndpointStatus } from '../api/generated.ts';

const canonicalInteger = /^[1-9][0-9]*$/;

/** -1, 0 or 1 as resourceVersion a is older than, equal to or newer than b; undefined when they do not compare. */
export function compareResourceVersions(a: string, b: string): -1 | 0 | 1 | undefined {
  if (!canonicalInteger.test(a) || !canonicalInteger.test(b)) return undefined;
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a === b ? 0 : a < b ? -1 : 1;
}

interface Written {
  /** The resourceVersion the last write produced. */
  produced: string;
  /** Versions known to be older than it: those the writes were based on, and those earlier writes produced. */
  older: Set<string>;
  status: MachineLearningEndpointStatus;
}

export class WrittenStatuses {
  private readonly written = new Map<string, Written>();

  /** The endpoint as the cache shows it, with the status this controller wrote last if the cache does not have that write yet. */
  view<T extends MachineLearningEndpoint>(key: string, cached: T): T {
    const w = this.written.get(key);
    const rv = cached.metadata.resourceVersion;
    if (!w || rv === undefined) return cached;
    const order = compareResourceVersions(rv, w.produced);
    const older = order === undefined ? w.older.has(rv) : order < 0;
    if (older) return { ...cached, status: w.status };
    this.written.delete(key);
    return cached;
  }

  /** Records a status write: based on the object at `basedOn`, it produced `produced`. */
  remember(
    key: string,
    basedOn: string | undefined,
    produced: string | undefined,
    status: MachineLearningEndpointStatus,
  ): void {
    if (produced === undefined) {
      this.written.delete(key);
      return;
    }
    const before = this.written.get(key);
    const older = new Set(before ? [...before.older, before.produced] : []);
    if (basedOn !== undefined) older.add(basedOn);
    this.written.set(key, { produced, older, status });
  }

  forget(key: string): void {
    this.written.delete(key);
  }
}
