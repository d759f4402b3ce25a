// Events to endpoint keys, as controller-runtime's handlers do: an endpoint maps to itself (and to
// the endpoints that claim the same host, which a change may free or take); a config or model
// template to the endpoints that use it; an owned object or snapshot to the endpoint its label names.
// Handlers only enqueue: they never throw into the informer, never do I/O, and find what they map
// to through the caches' indexes, never by a scan.
//
// Priorities, as client-go's priority queue has them: an endpoint just created waits for its first
// pass behind the events of endpoints already in flight, so that one whose workloads became
// Available switches at once however many others were created with it.
import { isSnapshot, labels } from '../desired/labels.ts';
import type { KubeObject } from '../kube/resources.ts';
import type { OperatorConfig } from '../options/config.ts';
import type { Caches } from '../reconcile/caches.ts';
import { hostsOf, indexes, keyOf } from '../reconcile/indexes.ts';
import type { Endpoint, SourceHandlers } from './sources.ts';

/** `low`: a first pass, which waits behind everything else. */
export type Priority = 'normal' | 'low';

export function eventHandlers(
  config: OperatorConfig,
  caches: () => Caches | undefined,
  enqueue: (key: string, priority?: Priority) => void,
): SourceHandlers {
  const enqueueEndpoint = (e: Endpoint) => enqueue(keyOf(e.metadata.namespace, e.metadata.name));
  /** Every other endpoint that claims one of these hosts: a change may free or take it. */
  const sharingHosts = (e: Endpoint, hosts: Set<string>) => {
    const seen = new Set<string>();
    for (const host of hosts) {
      for (const other of caches()?.endpoints.byIndex(indexes.host, host) ?? []) {
        if (other.metadata.uid === e.metadata.uid || seen.has(other.metadata.uid!)) continue;
        seen.add(other.metadata.uid!);
        enqueueEndpoint(other);
      }
    }
  };
  const byEndpointLabel = (o: KubeObject) => {
    const endpoint = o.metadata.labels?.[labels.endpoint];
    if (endpoint) enqueue(keyOf(o.metadata.namespace, endpoint));
  };
  const usingConfig = (namespace: string | undefined, config: string) => {
    for (const e of caches()?.endpoints.byIndex(indexes.config, keyOf(namespace, config)) ?? []) enqueueEndpoint(e);
  };
  const onConfig = (o: KubeObject) =>
    isSnapshot(o) ? byEndpointLabel(o) : usingConfig(o.metadata.namespace, o.metadata.name);
  const onModel = (o: KubeObject) => {
    if (isSnapshot(o)) {
      byEndpointLabel(o);
      return;
    }
    for (const c of caches()?.configs.byIndex(indexes.model, keyOf(o.metadata.namespace, o.metadata.name)) ?? [])
      usingConfig(c.metadata.namespace, c.metadata.name);
  };
  const onVolume = (o: KubeObject) => {
    const l = o.metadata.labels ?? {};
    if (l[labels.endpoint] && l[labels.endpointNamespace])
      enqueue(keyOf(l[labels.endpointNamespace], l[labels.endpoint]));
  };
  const endpoint = {
    onAdd: (e: Endpoint) => {
      enqueue(keyOf(e.metadata.namespace, e.metadata.name), 'low');
      sharingHosts(e, new Set(hostsOf(e, config)));
    },
    onUpdate: (e: Endpoint, old: Endpoint) => {
      // A status update wakes the endpoint too: the pass that wrote it may have left the next step
      // (a drain's end, a rollback's clean-up) to the pass that reads it back.
      enqueueEndpoint(e);
      // Who holds a host depends on the claimants' statuses too: the others look again (the index finds them, if any).
      sharingHosts(e, new Set([...hostsOf(old, config), ...hostsOf(e, config)]));
    },
    onDelete: (e: Endpoint) => {
      enqueueEndpoint(e);
      sharingHosts(e, new Set(hostsOf(e, config)));
    },
  };
  const all = <T extends KubeObject>(f: (o: T) => void) => ({ onAdd: f, onUpdate: (o: T) => f(o), onDelete: f });
  return { endpoint, config: all(onConfig), model: all(onModel), owned: all(byEndpointLabel), volume: all(onVolume) };
}
