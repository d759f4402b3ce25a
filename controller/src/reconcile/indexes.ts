// The cache indexes (client-go's Indexers): every lookup a reconcile or an event handler makes by
// something other than namespace and name. Without them each one scans a whole namespace, and with a
// thousand endpoints a reconcile (and every event) costs as much as all of them together.
import type { MachineLearningEndpointConfig } from '../api/generated.ts';
import { isSnapshot, labels } from '../desired/labels.ts';
import { hostOf } from '../desired/objects.ts';
import type { Indexers } from '../kube/informer.ts';
import type { KubeObject } from '../kube/resources.ts';
import type { OperatorConfig } from '../options/config.ts';
import type { Endpoint } from './caches.ts';

export const indexes = {
  /** Objects of one endpoint, by its label: `namespace/endpoint` (cluster-scoped ones: by the endpoint-namespace label). */
  endpoint: 'endpoint',
  /** Endpoints by the config template they name: `namespace/config`. */
  config: 'config',
  /** Endpoints by every host they claim (the one they want and the one their status records). */
  host: 'host',
  /** Config templates by every model template they name: `namespace/model`. */
  model: 'model',
} as const;

export const keyOf = (namespace: string | undefined, name: string) => `${namespace ?? ''}/${name}`;

/** The hosts an endpoint claims: the one it wants, and the one it served until now. */
export function hostsOf(e: Endpoint, config: OperatorConfig): string[] {
  const wanted = hostOf({ endpoint: e, config });
  return e.status?.host && e.status.host !== wanted ? [wanted, e.status.host] : [wanted];
}

function byEndpointLabel(o: KubeObject): string[] {
  const l = o.metadata.labels;
  const endpoint = l?.[labels.endpoint];
  if (!endpoint) return [];
  return [keyOf(o.metadata.namespace ?? l[labels.endpointNamespace], endpoint)];
}

export const ownedIndexers: Indexers<KubeObject> = { [indexes.endpoint]: byEndpointLabel };

export const endpointIndexers = (config: OperatorConfig): Indexers<Endpoint> => ({
  [indexes.config]: (e) => [keyOf(e.metadata.namespace, e.spec.config)],
  [indexes.host]: (e) => hostsOf(e, config),
});

export const configIndexers: Indexers<MachineLearningEndpointConfig & KubeObject> = {
  [indexes.endpoint]: (c) => (isSnapshot(c) ? byEndpointLabel(c) : []),
  [indexes.model]: (c) =>
    isSnapshot(c) ? [] : [...new Set((c.spec?.models ?? []).map((v) => keyOf(c.metadata.namespace, v.model)))],
};

export const modelIndexers: Indexers<KubeObject> = {
  [indexes.endpoint]: (m) => (isSnapshot(m) ? byEndpointLabel(m) : []),
};
