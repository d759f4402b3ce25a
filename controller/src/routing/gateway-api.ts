// The Gateway API provider: one HTTPRoute per endpoint: a rule per variant for requests that name it
// (header x-ml-variant), and the rule that carries the weighted backendRefs (the variants' Services)
// and the shadows' mirrors (the RequestMirror filter, or Traefik's mirroring: traefik-mirroring.ts),
// attached either to one shared Gateway named in the chart
// (what most platform teams run) or to a Gateway of the endpoint's own, of a configured
// GatewayClass. Gateway API implementations report on the route: its Accepted and ResolvedRefs
// conditions, and the generation they processed, which tells when a change has reached the proxy.
import { labels } from '../desired/labels.ts';
import {
  commonLabels,
  gatewayName,
  hostOf,
  namespaced,
  type Desired,
  type EndpointContext,
} from '../desired/objects.ts';
import type { KubeObject, Resource } from '../kube/resources.ts';
import type { OperatorConfig } from '../options/config.ts';
import type { RouteCondition, RouteStatus, RoutingProvider } from './provider.ts';
import { mirrorBackendRef, traefikMirroring, wrappedService } from './traefik-mirroring.ts';
import {
  byService,
  decodeMirrors,
  encodeMirrors,
  encodeVersions,
  routeMirrorsAnnotation,
  routeVersionsAnnotation,
  variantHeader,
  versionWeights,
  type RouteSpec,
} from '../desired/route.ts';

const group = 'gateway.networking.k8s.io';
export const httpRouteResource: Resource = {
  group,
  version: 'v1',
  kind: 'HTTPRoute',
  plural: 'httproutes',
  namespaced: true,
};
export const gatewayApiGatewayResource: Resource = {
  group,
  version: 'v1',
  kind: 'Gateway',
  plural: 'gateways',
  namespaced: true,
};

interface ParentRef {
  group: string;
  kind: string;
  name: string;
  namespace?: string;
  sectionName?: string;
}

interface HTTPRouteStatus {
  parents?: {
    parentRef: Partial<ParentRef>;
    controllerName?: string;
    conditions?: { type: string; status: string; reason?: string; message?: string; observedGeneration?: number }[];
  }[];
}

/** Where the endpoint's routes attach: the shared Gateway, or the endpoint's own, by listener. */
function parentRefs(ctx: EndpointContext, listener: 'http' | 'https'): ParentRef[] {
  const { sharedGateway } = ctx.config.routing.gatewayAPI;
  if (sharedGateway.name) {
    return [
      {
        group,
        kind: 'Gateway',
        name: sharedGateway.name,
        ...(sharedGateway.namespace ? { namespace: sharedGateway.namespace } : {}),
        ...(sharedGateway.sectionName ? { sectionName: sharedGateway.sectionName } : {}),
      },
    ];
  }
  const tls = ctx.config.gateway.tls;
  // With TLS, the route serves on both listeners, unless plain HTTP only redirects.
  const sections = tls.enabled
    ? tls.httpsRedirect
      ? [listener === 'http' ? 'http' : 'https']
      : ['http', 'https']
    : ['http'];
  return sections.map((sectionName) => ({
    group,
    kind: 'Gateway',
    name: gatewayName(ctx.endpoint.metadata.name!),
    sectionName,
  }));
}

function sameParent(ref: Partial<ParentRef>, want: ParentRef, routeNamespace: string): boolean {
  return (
    (ref.group ?? group) === want.group &&
    (ref.kind ?? 'Gateway') === want.kind &&
    ref.name === want.name &&
    (ref.namespace ?? routeNamespace) === (want.namespace ?? routeNamespace) &&
    (ref.sectionName ?? '') === (want.sectionName ?? '')
  );
}

const shared = (ctx: EndpointContext) => ctx.config.routing.gatewayAPI.sharedGateway.name !== '';
const redirects = (ctx: EndpointContext) =>
  !shared(ctx) && ctx.config.gateway.tls.enabled && ctx.config.gateway.tls.httpsRedirect;

/** The provider for one operator config: with a shared Gateway it writes no Gateways, and so watches none. */
export function gatewayApi(config: OperatorConfig): RoutingProvider {
  const mode = config.routing.gatewayAPI.mirroring;
  return {
    name: 'gatewayAPI',
    kinds: {
      route: httpRouteResource,
      gateway: config.routing.gatewayAPI.sharedGateway.name ? undefined : gatewayApiGatewayResource,
      auxiliary: mode === 'TraefikService' ? traefikMirroring : undefined,
    },
    dataPlane: {
      reportsStatus: true,
      mirroringUnavailable:
        mode === 'None'
          ? 'shadow variants run but get no mirror: the chart sets controller.config.routing.gatewayAPI.mirroring to None. Set RequestMirror if your Gateway API implementation supports the RequestMirror filter (Envoy Gateway, Istio, Cilium, NGINX Gateway Fabric), or TraefikService for Traefik'
          : undefined,
    },
    objects: (ctx, route) => [...gateways(ctx), ...(route ? routes(ctx, route, mode) : [])],
    routeName: (ctx) => ctx.endpoint.metadata.name!,
    observe: (ctx, live) => ({ services: referencedServices(live), status: status(ctx, live) }),
  };
}

/** The endpoint's own Gateway, of the configured class (none on a shared Gateway). */
function gateways(ctx: EndpointContext): Desired[] {
  if (shared(ctx)) return [];
  const { endpoint, config } = ctx;
  const hostname = hostOf(ctx);
  const allowedRoutes = { namespaces: { from: 'Same' } };
  const listeners: unknown[] = [{ name: 'http', protocol: 'HTTP', port: config.gateway.port, hostname, allowedRoutes }];
  if (config.gateway.tls.enabled) {
    listeners.push({
      name: 'https',
      protocol: 'HTTPS',
      port: config.gateway.tls.port,
      hostname,
      tls: {
        mode: 'Terminate',
        certificateRefs: [{ group: '', kind: 'Secret', name: config.gateway.tls.credentialName }],
      },
      allowedRoutes,
    });
  }
  return [
    namespaced(
      gatewayApiGatewayResource,
      endpoint,
      gatewayName(endpoint.metadata.name!),
      commonLabels(endpoint, 'gateway', 'ml-endpoint'),
      {
        spec: { gatewayClassName: config.routing.gatewayAPI.gatewayClassName, listeners },
      },
    ),
  ];
}

/** The HTTPRoute with the split and the mirrors, and the one that redirects plain HTTP to HTTPS when asked. */
function routes(
  ctx: EndpointContext,
  route: RouteSpec,
  mode: OperatorConfig['routing']['gatewayAPI']['mirroring'],
): Desired[] {
  const { endpoint } = ctx;
  const primary = [...versionWeights(route.backends)].sort((a, b) => b[1] - a[1])[0]?.[0];
  const routeLabels = {
    ...commonLabels(endpoint, 'routing', 'ml-endpoint'),
    ...(primary ? { [labels.version]: primary } : {}),
  };
  const everything = [{ path: { type: 'PathPrefix', value: '/' } }];
  const mirrors = mode === 'None' ? [] : (route.mirrors ?? []);
  const mirrorsAnnotation = encodeMirrors(mirrors);
  // On Traefik, a primary Service is reached through its mirroring TraefikService (traefik-mirroring.ts),
  // once Traefik has had time to load it.
  const wrapped = (service: string) => mode === 'TraefikService' && (route.loaded?.(service) ?? true);
  const split = namespaced(
    httpRouteResource,
    endpoint,
    endpoint.metadata.name!,
    routeLabels,
    {
      spec: {
        parentRefs: parentRefs(ctx, 'https'),
        hostnames: [route.host],
        rules: [
          // A request that names a variant goes to it: a header match ranks ahead of the plain prefix.
          ...(route.targets ?? []).map((t) => ({
            matches: [
              {
                path: { type: 'PathPrefix', value: '/' },
                headers: [{ type: 'Exact', name: variantHeader, value: t.variant }],
              },
            ],
            backendRefs: [{ group: '', kind: 'Service', name: t.service, port: t.port, weight: 1 }],
          })),
          {
            matches: everything,
            ...(mode === 'RequestMirror' && mirrors.length
              ? {
                  filters: mirrors.map((m) => ({
                    type: 'RequestMirror',
                    requestMirror: {
                      backendRef: { group: '', kind: 'Service', name: m.service, port: m.port },
                      percent: m.percent,
                    },
                  })),
                }
              : {}),
            backendRefs: byService(route.backends).map((b) =>
              wrapped(b.service)
                ? mirrorBackendRef(b.service, b.weight)
                : { group: '', kind: 'Service', name: b.service, port: b.port, weight: b.weight },
            ),
          },
        ],
      },
    },
    {
      [routeVersionsAnnotation]: encodeVersions(route.backends),
      ...(mirrorsAnnotation ? { [routeMirrorsAnnotation]: mirrorsAnnotation } : {}),
    },
  );
  if (!redirects(ctx)) return [split];
  const redirect = namespaced(
    httpRouteResource,
    endpoint,
    `${endpoint.metadata.name}-https-redirect`,
    commonLabels(endpoint, 'routing', 'ml-endpoint'),
    {
      spec: {
        parentRefs: parentRefs(ctx, 'http'),
        hostnames: [route.host],
        rules: [
          {
            matches: everything,
            filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', statusCode: 301 } }],
          },
        ],
      },
    },
  );
  return [split, redirect];
}

function referencedServices(live: KubeObject): string[] {
  const spec = (live.spec ?? {}) as {
    rules?: {
      backendRefs?: { name?: string; kind?: string }[];
      filters?: { requestMirror?: { backendRef?: { name?: string } } }[];
    }[];
  };
  const services = (spec.rules ?? []).flatMap((r) => [
    ...(r.backendRefs ?? []).map((b) =>
      (b.kind ?? 'Service') === 'Service'
        ? (b.name ?? '')
        : b.kind === 'TraefikService'
          ? wrappedService(b.name ?? '')
          : '',
    ),
    ...(r.filters ?? []).map((f) => f.requestMirror?.backendRef?.name ?? ''),
  ]);
  return [...services, ...decodeMirrors(live.metadata.annotations?.[routeMirrorsAnnotation])].filter(Boolean);
}

/** What the Gateways the route attaches to report on it: Accepted and ResolvedRefs, from each parent. */
function status(ctx: EndpointContext, live: KubeObject): RouteStatus {
  const status = (live.status ?? {}) as HTTPRouteStatus;
  const namespace = live.metadata.namespace ?? '';
  const generation = live.metadata.generation ?? 0;
  const wanted = parentRefs(ctx, 'https');
  const parents = wanted.map((ref) => ({
    ref,
    status: status.parents?.find((p) => sameParent(p.parentRef, ref, namespace)),
  }));
  const describe = (ref: ParentRef) =>
    `Gateway ${ref.namespace ?? namespace}/${ref.name}${ref.sectionName ? ` (listener ${ref.sectionName})` : ''}`;
  const observed = parents.every((p) =>
    p.status?.conditions?.some((c) => c.type === 'Accepted' && (c.observedGeneration ?? 0) >= generation),
  );
  const conditions: RouteCondition[] = ['Accepted', 'ResolvedRefs'].map((type) => {
    for (const p of parents) {
      const c = p.status?.conditions?.find((x) => x.type === type);
      if (!c)
        return {
          type,
          status: 'Unknown',
          reason: 'Pending',
          message: `${describe(p.ref)} has not reported on HTTPRoute ${namespace}/${live.metadata.name} yet: is a Gateway API implementation running for it?`,
        };
      if (c.status !== 'True')
        return {
          type,
          status: c.status === 'False' ? 'False' : 'Unknown',
          reason: c.reason ?? 'Unknown',
          message: `${describe(p.ref)}: ${c.message ?? c.reason ?? ''}`.trim(),
        };
    }
    return {
      type,
      status: 'True',
      reason: type,
      message: `HTTPRoute ${namespace}/${live.metadata.name}: ${type} by ${parents.map((p) => describe(p.ref)).join(', ')}`,
    };
  });
  return { observed, conditions };
}
