import { describe, expect, it } from 'vitest';
import type {
  MachineLearningEndpoint,
  MachineLearningEndpointConfigSpec,
  MachineLearningModelSpec,
} from '../api/generated.ts';
import { planFromTemplates, type VersionPlan } from '../desired/plan.ts';
import { defaultConfig, type OperatorConfig } from '../options/config.ts';
import { gatewayApi } from './gateway-api.ts';
import { istio } from './istio.ts';
import type { RoutingProvider } from './provider.ts';
import type { EndpointContext } from '../desired/objects.ts';
import {
  backends,
  decodeVersions,
  mirrorsOf,
  routeVersionsAnnotation,
  targetsOf,
  versionWeights,
  type RouteSpec,
} from '../desired/route.ts';

const endpoint: MachineLearningEndpoint = {
  metadata: { name: 'titanic', namespace: 'ml', uid: 'uid-1', generation: 1 },
  spec: { config: 'titanic' },
};
const base: OperatorConfig = { ...defaultConfig, fetcher: { image: 'ml-operator/controller:1' } };

/** A provider's route objects for `route` (the first carries the split), without its gateways. */
const routesOf = (provider: RoutingProvider, ctx: EndpointContext, route: RouteSpec) =>
  provider.objects(ctx, route).filter((d) => d.resource === provider.kinds.route);
const model: MachineLearningModelSpec = { image: 'acme/titanic:1', port: 8080 };
const config: MachineLearningEndpointConfigSpec = {
  models: [
    { model: 'titanic', weight: 80 },
    { model: 'titanic-v2', weight: 20 },
  ],
};
const models = new Map([
  ['titanic', model],
  ['titanic-v2', { ...model, image: 'acme/titanic:2' }],
]);

function plan(cfg = config): VersionPlan {
  const r = planFromTemplates('titanic', 'titanic', cfg, models);
  if (!r.ok) throw new Error('unresolved');
  return r.plan;
}
const route = (p = plan()): RouteSpec => ({
  host: 'titanic.ml.models.example.com',
  backends: backends([{ plan: p, percent: 100 }]),
});
const gatewayConfig = (
  gatewayAPI: Partial<OperatorConfig['routing']['gatewayAPI']>,
  gateway = base.gateway,
): OperatorConfig => ({
  ...base,
  gateway,
  routing: { provider: 'gatewayAPI', gatewayAPI: { ...base.routing.gatewayAPI, ...gatewayAPI } },
});
const shared = gatewayConfig({
  sharedGateway: { name: 'ml-gateway', namespace: 'gateway-system', sectionName: 'http' },
});
const perEndpoint = gatewayConfig({ gatewayClassName: 'traefik' });

describe('the route as data', () => {
  it('keeps the variants relative weights inside each version, and sums to exactly 100', () => {
    const old = plan();
    const next = plan({
      models: [
        { model: 'titanic', weight: 1 },
        { model: 'titanic-v2', weight: 1 },
      ],
    });
    const b = backends([
      { plan: old, percent: 75 },
      { plan: next, percent: 25 },
    ]);
    expect(b.map((x) => x.weight)).toEqual([60, 15, 13, 12]);
    expect(b.reduce((s, x) => s + x.weight, 0)).toBe(100);
  });
  it("gives each version exactly its share, whatever its variants' weights: a rollout step is recognised on the live route", () => {
    // Two variants of equal weight in each version, at a 25% canary step: rounding across all four
    // backends gave 38/38/12/12, the canary 24%, below its step, which the next round then took again.
    const old = plan({
      models: [
        { model: 'titanic', weight: 1 },
        { model: 'titanic-v2', weight: 1 },
      ],
    });
    const next = plan({
      models: [
        { model: 'titanic', weight: 1, cpus: '2' },
        { model: 'titanic-v2', weight: 1 },
      ],
    });
    for (const [a, b] of [
      [1, 1],
      [1, 9],
      [3, 7],
      [2, 5],
    ]) {
      for (const percent of [1, 10, 20, 25, 33, 50, 99]) {
        const weighted = (p: typeof old) => ({
          ...p,
          variants: p.variants.map((v, i) => ({ ...v, variant: { ...v.variant, weight: i === 0 ? a : b } })),
        });
        const route = backends([
          { plan: weighted(old), percent: 100 - percent },
          { plan: weighted(next), percent },
        ]);
        expect(Object.fromEntries(versionWeights(route)), `${a}:${b} at ${percent}%`).toEqual({
          [old.version]: 100 - percent,
          [next.version]: percent,
        });
      }
    }
  });

  it('names a Service two versions share once in the route object, with their shares summed, and each version in the annotation', () => {
    const old = plan();
    const next = plan({
      models: [
        { model: 'titanic', weight: 80 },
        { model: 'titanic-v2', weight: 20, cpus: '2' },
      ],
    });
    const shared = old.variants[0].instance;
    expect(next.variants[0].instance).toBe(shared);
    const split: RouteSpec = {
      host: 'titanic.ml.models.example.com',
      backends: backends([
        { plan: old, percent: 50 },
        { plan: next, percent: 50 },
      ]),
    };
    const vs = routesOf(istio, { endpoint, config: base }, split)[0].object as any;
    const hr = routesOf(gatewayApi(perEndpoint), { endpoint, config: perEndpoint }, split)[0].object as any;
    const istioWeights = vs.spec.http.at(-1).route.map((r: any) => [r.destination.host.split('.')[0], r.weight]);
    const gatewayWeights = hr.spec.rules.at(-1).backendRefs.map((b: any) => [b.name, b.weight]);
    for (const weights of [istioWeights, gatewayWeights])
      expect(weights).toEqual([
        [shared, 80],
        [old.variants[1].instance, 10],
        [next.variants[1].instance, 10],
      ]);
    expect(decodeVersions(vs.metadata.annotations?.[routeVersionsAnnotation])).toEqual(
      new Map([
        [old.version, 50],
        [next.version, 50],
      ]),
    );
  });
  it('names the versions it routes to in an annotation of the route object', () => {
    const vs = routesOf(istio, { endpoint, config: base }, route())[0].object;
    expect(decodeVersions(vs.metadata.annotations?.[routeVersionsAnnotation])).toEqual(
      new Map([[plan().version, 100]]),
    );
  });
});

describe('the Istio provider', () => {
  it('routes one HTTP route to every variant, weights summing to 100, through the Gateway', () => {
    const vs = routesOf(istio, { endpoint, config: base }, route())[0].object as any;
    expect(vs.metadata.name).toBe('titanic');
    expect(vs.spec.hosts).toEqual(['titanic.ml.models.example.com']);
    expect(vs.spec.gateways).toEqual(['titanic-gw']);
    expect(vs.spec.http).toHaveLength(1);
    expect(vs.spec.http[0].route.map((r: any) => r.weight)).toEqual([80, 20]);
    expect(vs.spec.http[0].route[0].destination.host).toMatch(/^titanic-[0-9a-f]{10}\.ml\.svc\.cluster\.local$/);
    expect(vs.metadata.ownerReferences[0]).toMatchObject({
      kind: 'MachineLearningEndpoint',
      uid: 'uid-1',
      controller: true,
    });
    expect(istio.observe({ endpoint, config: base }, vs).services).toEqual(route().backends.map((b) => b.service));
  });
  it('selects the ingress gateway and serves the host over HTTP, and HTTPS when TLS is on', () => {
    const plain = istio.objects({ endpoint, config: base })[0].object as any;
    expect(plain.spec.selector).toEqual({ istio: 'ingressgateway' });
    expect(plain.spec.servers).toEqual([
      { port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['titanic.ml.models.example.com'] },
    ]);
    const tls = { ...base.gateway.tls, enabled: true, credentialName: 'cert', httpsRedirect: true };
    const secure = istio.objects({ endpoint, config: { ...base, gateway: { ...base.gateway, tls } } })[0].object as any;
    expect(secure.spec.servers[0].tls).toEqual({ httpsRedirect: true });
    expect(secure.spec.servers[1]).toMatchObject({
      port: { number: 443, protocol: 'HTTPS' },
      tls: { mode: 'SIMPLE', credentialName: 'cert' },
    });
  });
  it('reports nothing back: time alone tells when a change reached the proxies', () => {
    expect(
      istio.observe({ endpoint, config: base }, routesOf(istio, { endpoint, config: base }, route())[0].object).status,
    ).toBeUndefined();
  });
});

describe('the Gateway API provider', () => {
  it('attaches one HTTPRoute with weighted Service backendRefs to the shared Gateway, and writes no Gateway', () => {
    const ctx = { endpoint, config: shared };
    expect(gatewayApi(ctx.config).objects(ctx)).toEqual([]);
    expect(gatewayApi(ctx.config).kinds.gateway).toBeUndefined();
    const [hr] = routesOf(gatewayApi(ctx.config), ctx, route());
    const r = hr.object as any;
    expect(hr.resource).toMatchObject({ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' });
    expect(r.spec.parentRefs).toEqual([
      {
        group: 'gateway.networking.k8s.io',
        kind: 'Gateway',
        name: 'ml-gateway',
        namespace: 'gateway-system',
        sectionName: 'http',
      },
    ]);
    expect(r.spec.hostnames).toEqual(['titanic.ml.models.example.com']);
    expect(r.spec.rules).toHaveLength(1);
    expect(r.spec.rules[0].backendRefs.map((b: any) => [b.kind, b.port, b.weight])).toEqual([
      ['Service', 80, 80],
      ['Service', 80, 20],
    ]);
    expect(gatewayApi(shared).observe({ endpoint, config: shared }, r).services).toEqual(
      route().backends.map((b) => b.service),
    );
  });
  it('gives each endpoint a Gateway of the configured class when no shared Gateway is named', () => {
    const ctx = { endpoint, config: perEndpoint };
    const gw = gatewayApi(ctx.config).objects(ctx)[0].object as any;
    expect(gw.metadata.name).toBe('titanic-gw');
    expect(gw.spec).toEqual({
      gatewayClassName: 'traefik',
      listeners: [
        {
          name: 'http',
          protocol: 'HTTP',
          port: 80,
          hostname: 'titanic.ml.models.example.com',
          allowedRoutes: { namespaces: { from: 'Same' } },
        },
      ],
    });
    const r = routesOf(gatewayApi(ctx.config), ctx, route())[0].object as any;
    expect(r.spec.parentRefs).toEqual([
      { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'titanic-gw', sectionName: 'http' },
    ]);
  });
  it('with TLS and a redirect, serves on HTTPS and redirects plain HTTP with a second route', () => {
    const tls = { ...base.gateway.tls, enabled: true, credentialName: 'cert', httpsRedirect: true };
    const ctx = { endpoint, config: gatewayConfig({ gatewayClassName: 'traefik' }, { ...base.gateway, tls }) };
    const gw = gatewayApi(ctx.config).objects(ctx)[0].object as any;
    expect(gw.spec.listeners[1]).toMatchObject({
      name: 'https',
      protocol: 'HTTPS',
      port: 443,
      tls: { mode: 'Terminate', certificateRefs: [{ kind: 'Secret', name: 'cert' }] },
    });
    const [split, redirect] = routesOf(gatewayApi(ctx.config), ctx, route()).map((d) => d.object as any);
    expect(split.spec.parentRefs.map((p: any) => p.sectionName)).toEqual(['https']);
    expect(redirect.spec.parentRefs.map((p: any) => p.sectionName)).toEqual(['http']);
    expect(redirect.spec.rules[0].filters).toEqual([
      { type: 'RequestRedirect', requestRedirect: { scheme: 'https', statusCode: 301 } },
    ]);
  });
  it("reflects the route's Accepted and ResolvedRefs conditions, and whether the gateway saw the latest generation", () => {
    const ctx = { endpoint, config: shared };
    const r = routesOf(gatewayApi(ctx.config), ctx, route())[0].object as any;
    const live = { ...r, metadata: { ...r.metadata, generation: 3 } };
    expect(gatewayApi(ctx.config).observe(ctx, live).status).toEqual({
      observed: false,
      conditions: [
        expect.objectContaining({ type: 'Accepted', status: 'Unknown', reason: 'Pending' }),
        expect.objectContaining({ type: 'ResolvedRefs', status: 'Unknown', reason: 'Pending' }),
      ],
    });
    const parentRef = {
      group: 'gateway.networking.k8s.io',
      kind: 'Gateway',
      name: 'ml-gateway',
      namespace: 'gateway-system',
      sectionName: 'http',
    };
    const reported = (generation: number, resolved: string) => ({
      ...live,
      status: {
        parents: [
          {
            parentRef,
            controllerName: 'traefik.io/gateway-controller',
            conditions: [
              { type: 'Accepted', status: 'True', reason: 'Accepted', message: '', observedGeneration: generation },
              {
                type: 'ResolvedRefs',
                status: resolved,
                reason: resolved === 'True' ? 'ResolvedRefs' : 'BackendNotFound',
                message: 'service "x" not found',
                observedGeneration: generation,
              },
            ],
          },
        ],
      },
    });
    expect(gatewayApi(ctx.config).observe(ctx, reported(2, 'True')).status!.observed).toBe(false);
    const fine = gatewayApi(ctx.config).observe(ctx, reported(3, 'True')).status!;
    expect(fine.observed).toBe(true);
    expect(fine.conditions.map((c) => c.status)).toEqual(['True', 'True']);
    const broken = gatewayApi(ctx.config).observe(ctx, reported(3, 'False')).status!;
    expect(broken.conditions[1]).toMatchObject({
      status: 'False',
      reason: 'BackendNotFound',
      message: 'Gateway gateway-system/ml-gateway (listener http): service "x" not found',
    });
  });
});

describe('shadows and variant targeting', () => {
  const withShadow: MachineLearningEndpointConfigSpec = {
    models: [
      { model: 'titanic', weight: 90 },
      { model: 'titanic-v2', shadow: { percent: 25 } },
    ],
  };
  const p = () => plan(withShadow);
  const full = (): RouteSpec => ({ ...route(p()), mirrors: mirrorsOf(p(), () => true), targets: targetsOf(p()) });
  const shadowService = () => p().variants[1].instance;

  it('leaves shadows out of the split: the primary variants share all of it', () => {
    expect(backends([{ plan: p(), percent: 100 }]).map((b) => [b.variant, b.weight])).toEqual([['titanic', 100]]);
    expect(mirrorsOf(p(), () => true)).toEqual([
      { version: p().version, variant: 'titanic-v2', service: shadowService(), port: 80, percent: 25 },
    ]);
    expect(mirrorsOf(p(), () => false)).toEqual([]);
  });

  it('Istio: a route per variant for x-ml-variant ahead of the split, and the mirror with its percentage', () => {
    const vs = routesOf(istio, { endpoint, config: base }, full())[0].object as any;
    expect(vs.spec.http.map((h: any) => h.name)).toEqual(['variant-titanic', 'variants']);
    expect(vs.spec.http[0].match).toEqual([{ headers: { 'x-ml-variant': { exact: 'titanic' } } }]);
    expect(vs.spec.http[1].mirrors).toEqual([
      {
        destination: { host: `${shadowService()}.ml.svc.cluster.local`, port: { number: 80 } },
        percentage: { value: 25 },
      },
    ]);
    expect(istio.observe({ endpoint, config: base }, vs).services).toContain(shadowService());
  });

  it('Gateway API: header rules, and the RequestMirror filter with percent when the chart says so', () => {
    const config = {
      ...shared,
      routing: { ...shared.routing, gatewayAPI: { ...shared.routing.gatewayAPI, mirroring: 'RequestMirror' as const } },
    };
    const [hr] = routesOf(gatewayApi(config), { endpoint, config }, full());
    const rules = (hr.object.spec as any).rules;
    expect(rules[0].matches).toEqual([
      {
        path: { type: 'PathPrefix', value: '/' },
        headers: [{ type: 'Exact', name: 'x-ml-variant', value: 'titanic' }],
      },
    ]);
    expect(rules[1].filters).toEqual([
      {
        type: 'RequestMirror',
        requestMirror: { backendRef: { group: '', kind: 'Service', name: shadowService(), port: 80 }, percent: 25 },
      },
    ]);
    expect(gatewayApi(config).observe({ endpoint, config }, hr.object).services).toContain(shadowService());
  });

  it('Gateway API on Traefik: a mirroring TraefikService around each primary Service once loaded, the split still in the HTTPRoute', () => {
    const config = {
      ...shared,
      routing: {
        ...shared.routing,
        gatewayAPI: { ...shared.routing.gatewayAPI, mirroring: 'TraefikService' as const },
      },
    };
    const provider = gatewayApi(config);
    const primary = p().variants[0].instance;
    const [wrapper] = provider.kinds.auxiliary!.objects({ endpoint, config }, [primary], full().mirrors!);
    expect(wrapper.object.metadata.name).toBe(`${primary}-mirror`);
    expect(wrapper.object.spec).toEqual({
      mirroring: { name: primary, port: 80, mirrors: [{ name: shadowService(), port: 80, percent: 25 }] },
    });
    const objects = routesOf(provider, { endpoint, config }, full());
    expect(objects.map((o) => o.resource.kind)).toEqual(['HTTPRoute']);
    const rules = (objects[0].object.spec as any).rules;
    expect(rules.at(-1).backendRefs).toEqual([
      { group: 'traefik.io', kind: 'TraefikService', name: `${primary}-mirror`, weight: 100 },
    ]);
    expect(provider.observe({ endpoint, config }, objects[0].object).services.sort()).toEqual(
      [primary, primary, shadowService()].sort(),
    );
    // Until Traefik has had time to load a TraefikService, the route names the Service itself.
    const early = routesOf(provider, { endpoint, config }, { ...full(), loaded: () => false });
    expect((early[0].object.spec as any).rules.at(-1).backendRefs).toEqual([
      { group: '', kind: 'Service', name: primary, port: 80, weight: 100 },
    ]);
  });

  it('Gateway API with mirroring None: no mirror, and it says why', () => {
    const objects = routesOf(gatewayApi(shared), { endpoint, config: shared }, full());
    expect(objects).toHaveLength(1);
    expect((objects[0].object.spec as any).rules.at(-1).filters).toBeUndefined();
    expect(gatewayApi(shared).dataPlane.mirroringUnavailable).toMatch(/mirroring to None/);
  });
});

describe('auxiliary objects', () => {
  it('exist only where the data plane needs them (Traefik mirroring)', () => {
    for (const provider of [istio, gatewayApi(shared), gatewayApi(perEndpoint)]) {
      expect(provider.kinds.auxiliary).toBeUndefined();
    }
  });
});
