// Events to endpoint keys, as controller-runtime's handlers do: an endpoint maps to itself (and to
// the endpoints that claim the same host, which a change may free or take); a config or model
// template to the endpoints that use it; an owned object or snapshot to the endpoint its label names.
// Handlers only enqueue: they never throw into the informer, and never do I/O.
import { isSnapshot, labels } from '../desired/labels.ts';
import { hostOf } from '../desired/objects.ts';
import type { KubeObject } from '../kube/resources.ts';
import type { OperatorConfig } from '../options.ts';
import type { Caches } from '../reconcile/endpoint.ts';
import type { Endpoint, SourceHandlers } from './sources.ts';

export const endpointKey = (namespace: string | undefined, name: string) => `${namespace}/${name}`;
export function eventHandlers(config: OperatorConfig, caches: () => Caches | undefined, enqueue: (key: string) => void): SourceHandlers {
  const hosts = (e: Endpoint) => [hostOf({ endpoint: e, config }), e.status?.host].filter((h): h is string => !!h);
  /** The endpoint, and every endpoint that claims a host it claims or claimed. */
  const onEndpoint = (e: Endpoint, old?: Endpoint) => {
    enqueue(endpointKey(e.metadata.namespace, e.metadata.name));
    const touched = new Set([...hosts(e), ...(old ? hosts(old) : [])]);
    for (const other of caches()?.endpoints.list() ?? []) {
      if (other.metadata.uid === e.metadata.uid) continue;
      if (hosts(other).some((h) => touched.has(h))) enqueue(endpointKey(other.metadata.namespace, other.metadata.name));
    }
  };
  const byEndpointLabel = (o: KubeObject) => {
    const endpoint = o.metadata.labels?.[labels.endpoint];
    if (endpoint) enqueue(endpointKey(o.metadata.namespace, endpoint));
  };
  const usingConfig = (namespace: string | undefined, configs: Set<string>) => {
    for (const e of caches()?.endpoints.list(namespace) ?? []) if (configs.has(e.spec.config)) enqueue(endpointKey(e.metadata.namespace, e.metadata.name));
  };
  const onConfig = (o: KubeObject & { spec: { models: { model: string }[] } }) => (isSnapshot(o) ? byEndpointLabel(o) : usingConfig(o.metadata.namespace, new Set([o.metadata.name])));
  const onModel = (o: KubeObject) => {
    if (isSnapshot(o)) return byEndpointLabel(o);
    const configs = caches()?.configs.list(o.metadata.namespace) ?? [];
    usingConfig(o.metadata.namespace, new Set(configs.filter((c) => !isSnapshot(c) && c.spec.models.some((v) => v.model === o.metadata.name)).map((c) => c.metadata.name)));
  };
  const onVolume = (o: KubeObject) => {
    const l = o.metadata.labels ?? {};
    if (l[labels.endpoint] && l[labels.endpointNamespace]) enqueue(endpointKey(l[labels.endpointNamespace], l[labels.endpoint]));
  };
  const all = <T extends KubeObject>(f: (o: T, old?: T) => void) => ({ onAdd: (o: T) => f(o), onUpdate: (o: T, old: T) => f(o, old), onDelete: (o: T) => f(o) });
  return { endpoint: all(onEndpoint), config: all(onConfig), model: all(onModel), owned: all(byEndpointLabel), volume: all(onVolume) };
}
