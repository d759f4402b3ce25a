import { describe, expect, it } from 'vitest';
import { RouteChecker, type WatchedObject, type WatchEvent } from './route-watcher.ts';

let rv = 100;
const endpoint = (name: string, uid: string, deleting = false): WatchedObject => ({
  metadata: { name, uid, resourceVersion: String(++rv), ...(deleting ? { deletionTimestamp: 'now' } : {}) },
});
const route = (name: string, backends: [string, number][], owner?: { name: string; uid: string }): WatchedObject => ({
  metadata: {
    name,
    resourceVersion: String(++rv),
    ...(owner ? { ownerReferences: [{ kind: 'MachineLearningEndpoint', ...owner }] } : {}),
  },
  spec: { rules: [{ backendRefs: backends.map(([n, weight]) => ({ name: n, weight })) }] },
});
const service = (name: string): WatchedObject => ({
  metadata: { name, resourceVersion: String(++rv) },
  spec: { selector: { instance: name } },
});
const deployment = (name: string, available: number): WatchedObject => ({
  metadata: { name, resourceVersion: String(++rv) },
  spec: { template: { metadata: { labels: { instance: name } } } },
  status: { availableReplicas: available },
});
const event = (kind: WatchEvent['kind'], object: WatchedObject, at: number, type: WatchEvent['type'] = 'MODIFIED') => ({
  kind,
  type,
  object,
  at,
});

/** A checker seeded with one endpoint `e` routed 100% to Service v1, whose Deployment has a replica available. */
function serving(): RouteChecker {
  const c = new RouteChecker({ holdMs: 1000 });
  const start = rv;
  c.seed('endpoint', [endpoint('e', 'u1')], start);
  c.seed('service', [service('v1'), service('v2')], start);
  c.seed('deployment', [deployment('v1', 1), deployment('v2', 0)], start);
  c.seed('route', [route('e', [['v1', 100]], { name: 'e', uid: 'u1' })], rv);
  return c;
}

describe('the chaos soak route checker', () => {
  it('catches a route that names a Service with no available replica for 300 ms, with its duration', () => {
    const c = serving();
    c.push(
      event(
        'route',
        route(
          'e',
          [
            ['v1', 50],
            ['v2', 50],
          ],
          { name: 'e', uid: 'u1' },
        ),
        10_000,
      ),
    );
    c.push(event('route', route('e', [['v1', 100]], { name: 'e', uid: 'u1' }), 10_300));
    c.drain(20_000);
    expect(c.errors()).toEqual([]);
    expect(c.checks()).toBe(2);
    expect(c.violations()).toEqual([
      expect.objectContaining({
        route: 'e',
        service: 'v2',
        from: 10_000,
        to: 10_300,
        why: 'its Deployments (v2 0 available) have no available replica',
      }),
    ]);
  });

  it('applies events in resource-version order, whatever order they came in within the hold', () => {
    const c = serving();
    // The Deployment became available (an earlier version) before the route named it, but its watch
    // delivered the event 400 ms after the route's.
    const available = deployment('v2', 1);
    const switched = route('e', [['v2', 100]], { name: 'e', uid: 'u1' });
    c.push(event('route', switched, 10_000));
    c.push(event('deployment', available, 10_400));
    // The route's event is due; the Deployment's, older, is applied before it though held only 700 ms.
    c.drain(11_100);
    expect(c.errors()).toEqual([]);
    expect(c.checks()).toBe(2);
    expect(c.violations()).toEqual([]);
  });

  it('is an error, not a pass, when an event comes later than the hold allows', () => {
    const c = serving();
    const available = deployment('v2', 1);
    const switched = route('e', [['v2', 100]], { name: 'e', uid: 'u1' });
    c.push(event('route', switched, 10_000));
    c.drain(11_000);
    c.push(event('deployment', available, 12_000));
    c.drain(13_000);
    expect(c.errors()).toEqual([
      expect.stringMatching(
        /^deployment v2 MODIFIED at resourceVersion \d+ came after resourceVersion \d+ was applied: a watch lagged more than 1000 ms/,
      ),
    ]);
    // The route was seen naming v2 while v2 had nothing available: that state is a violation, still open.
    expect(c.violations().map((v) => [v.route, v.service, v.to])).toEqual([['e', 'v2', undefined]]);
  });

  it('checks the route of an endpoint being deleted: it must go before what it names', () => {
    // In order: the route goes, then the pods.
    const c = serving();
    c.push(event('endpoint', endpoint('e', 'u1', true), 10_000));
    c.push(event('route', route('e', [['v1', 100]], { name: 'e', uid: 'u1' }), 10_100, 'DELETED'));
    c.push(event('deployment', deployment('v1', 0), 10_200));
    c.drain(20_000);
    expect(c.errors()).toEqual([]);
    expect(c.violations()).toEqual([]);
    // The pods first, the route 400 ms later: a violation, as for a live endpoint.
    const d = serving();
    d.push(event('endpoint', endpoint('e', 'u1', true), 10_000));
    d.push(event('deployment', deployment('v1', 0), 10_100));
    d.push(event('route', route('e', [['v1', 100]], { name: 'e', uid: 'u1' }), 10_500, 'DELETED'));
    d.drain(20_000);
    expect(d.violations().map((v) => [v.route, v.service, v.to! - v.from])).toEqual([['e', 'v1', 400]]);
  });

  it('checks a route of no endpoint', () => {
    const c = serving();
    c.push(event('route', route('orphan', [['v2', 100]]), 10_200, 'ADDED'));
    c.drain(20_000);
    expect(c.violations().map((v) => [v.route, v.service, v.to])).toEqual([['orphan', 'v2', undefined]]);
  });

  it('ends a violation when the Service goes away with its route, and when the Deployment becomes available', () => {
    const c = serving();
    c.push(event('route', route('e', [['v2', 100]], { name: 'e', uid: 'u1' }), 10_000));
    c.push(event('deployment', deployment('v2', 1), 10_250));
    c.drain(20_000);
    expect(c.violations().map((v) => [v.service, v.to! - v.from])).toEqual([['v2', 250]]);
  });
});
