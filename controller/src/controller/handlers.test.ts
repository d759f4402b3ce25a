import { describe, expect, it } from 'vitest';
import type { KubeObject } from '../kube/resources.ts';
import { defaultConfig } from '../options/config.ts';
import type { Caches, Store } from '../reconcile/caches.ts';
import type { Indexers } from '../kube/informer.ts';
import { eventHandlers } from './handlers.ts';
import { configIndexers, endpointIndexers } from '../reconcile/indexes.ts';
import type { Config, Endpoint, Model } from './sources.ts';

function store<T extends KubeObject>(items: T[], indexers: Indexers<T> = {}): Store<T> {
  return {
    get: (ns, name) => items.find((o) => o.metadata.namespace === ns && o.metadata.name === name),
    list: (ns) => items.filter((o) => ns === undefined || o.metadata.namespace === ns),
    byIndex: (index, value) => items.filter((o) => indexers[index](o).includes(value)),
  };
}
const endpoint = (ns: string, name: string, config: string, host?: string): Endpoint => ({
  metadata: { name, namespace: ns, uid: `${ns}-${name}` },
  spec: { config, ...(host ? { host } : {}) },
});
const endpoints = [
  endpoint('a', 'e1', 'c1', 'api.example.com'),
  endpoint('b', 'e2', 'c2', 'api.example.com'),
  endpoint('a', 'e3', 'c2'),
  endpoint('a', 'e4', 'c3'),
];
const configs: Config[] = [
  { metadata: { name: 'c2', namespace: 'a' }, spec: { models: [{ model: 'm' }] } },
  { metadata: { name: 'c3', namespace: 'a' }, spec: { models: [{ model: 'other' }] } },
];
const caches = {
  endpoints: store(endpoints, endpointIndexers(defaultConfig)),
  configs: store(configs, configIndexers),
  models: store<Model>([]),
} as unknown as Caches;

function keysFor(fire: (h: ReturnType<typeof eventHandlers>) => void): string[] {
  const keys: string[] = [];
  fire(
    eventHandlers(
      defaultConfig,
      () => caches,
      (k) => keys.push(k),
    ),
  );
  return keys.sort();
}

describe('event handlers', () => {
  it('map an endpoint to itself and to every endpoint that claims a host it claims', () => {
    const respecified = { ...endpoints[0], metadata: { ...endpoints[0].metadata, generation: 2 } };
    expect(keysFor((h) => h.endpoint.onUpdate!(respecified, endpoints[0]))).toEqual(['a/e1', 'b/e2']);
    // A host it gave up frees the endpoints waiting for it.
    const moved = { ...respecified, spec: { ...endpoints[0].spec, host: 'new.example.com' } };
    expect(keysFor((h) => h.endpoint.onUpdate!(moved, endpoints[0]))).toEqual(['a/e1', 'b/e2']);
    expect(keysFor((h) => h.endpoint.onAdd!(endpoints[3]))).toEqual(['a/e4']);
  });
  it('put a new endpoint behind the queue, and anything about one in flight ahead of it', () => {
    const calls: [string, string | undefined][] = [];
    const h = eventHandlers(
      defaultConfig,
      () => caches,
      (k, p) => calls.push([k, p]),
    );
    h.endpoint.onAdd!(endpoints[3]);
    expect(calls).toEqual([['a/e4', 'low']]);
    calls.length = 0;
    // A status change of a host's claimant may hand the host over: the other claimants look again.
    h.endpoint.onUpdate!({ ...endpoints[0], status: { state: 'InService' } }, endpoints[0]);
    expect(calls).toEqual([
      ['a/e1', undefined],
      ['b/e2', undefined],
    ]);
    calls.length = 0;
    h.owned.onUpdate!(
      { metadata: { name: 'x', namespace: 'a', labels: { 'ml-operator.dev/endpoint': 'e4' } } },
      { metadata: { name: 'x', namespace: 'a' } },
    );
    expect(calls).toEqual([['a/e4', undefined]]);
  });
  it('map a model template to the endpoints whose config names it, in its namespace', () => {
    expect(
      keysFor((h) => h.model.onAdd!({ metadata: { name: 'm', namespace: 'a' }, spec: { image: 'acme/m:1' } })),
    ).toEqual(['a/e3']);
  });
  it('map a config template to the endpoints that use it, and a snapshot or owned object to its endpoint label', () => {
    expect(keysFor((h) => h.config.onDelete!(configs[0]))).toEqual(['a/e3']);
    expect(
      keysFor((h) =>
        h.owned.onAdd!({ metadata: { name: 'x', namespace: 'a', labels: { 'ml-operator.dev/endpoint': 'e4' } } }),
      ),
    ).toEqual(['a/e4']);
  });
});
