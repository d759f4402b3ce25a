import { describe, expect, it } from 'vitest';
import { evaluate, parseRv, type Kind, type Slim, type Snapshot, type WatchEvent } from './route-watcher.ts';

// An endpoint e0 serving version a; version b is created and, 300 ms before any pod of it is ready,
// the route names it.
const endpoint: Slim = { name: 'e0', uid: 'u0', rv: 5n, deleting: false };
const route = (rv: bigint, backends: string[], deleting = false): Slim => ({ name: 'e0', uid: 'r0', rv, deleting, backends, owner: { name: 'e0', uid: 'u0' } });
const service = (name: string, rv: bigint): Slim => ({ name, uid: name, rv, deleting: false, selector: { 'ml-operator.dev/model-instance': name } });
const pod = (name: string, instance: string, rv: bigint, ready: boolean, deleting = false): Slim => ({
  name, uid: name, rv, deleting, ready, labels: { 'ml-operator.dev/model-instance': instance, 'ml-operator.dev/endpoint': 'e0' },
});
const snapshots = (items: Partial<Record<Kind, Slim[]>>, rv = 10n): Record<Kind, Snapshot> =>
  Object.fromEntries((['route', 'service', 'pod', 'endpoint'] as const).map((k) => [k, { rv, items: items[k] ?? [], at: 0 }])) as Record<Kind, Snapshot>;
const start = snapshots({ endpoint: [endpoint], route: [route(7n, ['a'])], service: [service('a', 6n)], pod: [pod('a-1', 'a', 8n, true)] });
const ev = (kind: Kind, type: WatchEvent['type'], object: Slim, at: number): WatchEvent => ({ kind, type, object, at });
const faulty: WatchEvent[] = [
  ev('service', 'ADDED', service('b', 11n), 100),
  ev('pod', 'ADDED', pod('b-1', 'b', 12n, false), 110),
  ev('route', 'MODIFIED', route(13n, ['b']), 1000),
  ev('route', 'MODIFIED', route(14n, ['a']), 1300),
  ev('pod', 'MODIFIED', pod('b-1', 'b', 15n, true), 2500),
  ev('route', 'MODIFIED', route(16n, ['b']), 2600),
];

describe('the chaos soak route watcher, on recorded states', () => {
  it('catches a route naming a Service with no ready pod for 300 ms, with its duration', () => {
    const { violations, states } = evaluate(start, faulty);
    expect(states).toBe(1 + faulty.length);
    expect(violations).toEqual([{ route: 'e0', service: 'b', why: 'Service b selects no ready pod', fromRv: 13n, toRv: 14n, from: 1000, to: 1300, durationMs: 300 }]);
  });

  it('a check of the state read after the fact (what confirming by a re-read sees) finds nothing: the weakness the replay removes', () => {
    const after = snapshots({ endpoint: [endpoint], route: [route(16n, ['b'])], service: [service('a', 6n), service('b', 11n)], pod: [pod('a-1', 'a', 8n, true), pod('b-1', 'b', 15n, true)] }, 16n);
    expect(evaluate(after, []).violations).toEqual([]);
  });

  it('orders states by resourceVersion, not by arrival: a pod Ready before the switch, delivered after it, is no violation', () => {
    const events = [
      ev('service', 'ADDED', service('b', 11n), 100),
      ev('pod', 'ADDED', pod('b-1', 'b', 12n, false), 110),
      ev('route', 'MODIFIED', route(14n, ['b']), 1000),
      ev('pod', 'MODIFIED', pod('b-1', 'b', 13n, true), 1050),
    ];
    expect(evaluate(start, events).violations).toEqual([]);
  });

  it('counts a pod going away (terminating) under a route that still names its Service, until the route moves', () => {
    const events = [ev('pod', 'MODIFIED', pod('a-1', 'a', 11n, true, true), 500), ev('route', 'MODIFIED', route(12n, ['c']), 700)];
    const [v, w] = evaluate(start, events).violations;
    expect(v).toMatchObject({ service: 'a', durationMs: 200, why: 'Service a selects no ready pod' });
    expect(w).toMatchObject({ service: 'c', why: 'Service c does not exist' });
    expect(w.toRv, 'still open at the last state').toBeUndefined();
  });

  it('leaves a deleted endpoint\'s route to the garbage collector, and checks the route of a namesake created after', () => {
    const events = [
      ev('endpoint', 'DELETED', { ...endpoint, rv: 11n }, 100),
      ev('pod', 'MODIFIED', pod('a-1', 'a', 12n, true, true), 150),
      ev('endpoint', 'ADDED', { ...endpoint, uid: 'u1', rv: 13n }, 200),
      ev('route', 'MODIFIED', { ...route(14n, ['a']), owner: { name: 'e0', uid: 'u1' } }, 300),
    ];
    expect(evaluate(start, events).violations).toMatchObject([{ fromRv: 14n, service: 'a' }]);
  });

  it('refuses a resourceVersion that is not an etcd revision: states could not be ordered', () => {
    expect(() => parseRv('abc', 'route e0')).toThrow(/not an etcd revision/);
  });
});
