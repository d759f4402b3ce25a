// The Istio provider: one Gateway per endpoint (selector, port and TLS from the chart) and one
// VirtualService: a route per variant for requests that name it (header x-ml-variant), then the route
// that carries the weighted destinations and the shadows' mirrors. Istio reports nothing
// back on these objects by default, so a switch is known to have reached the proxies only by time.
import {
  commonLabels,
  gatewayName,
  hostOf,
  namespaced,
  type Desired,
  type EndpointContext,
} from '../desired/objects.ts';
import { labels } from '../desired/labels.ts';
import { resources, type KubeObject } from '../kube/resources.ts';
import type { RoutingProvider } from './provider.ts';
import {
  byService,
  encodeMirrors,
  encodeVersions,
  routeMirrorsAnnotation,
  routeVersionsAnnotation,
  variantHeader,
  versionWeights,
  type RouteSpec,
} from '../desired/route.ts';

interface VirtualServiceSpec {
  http?: { route?: { destination?: { host?: string } }[]; mirrors?: { destination?: { host?: string } }[] }[];
}

function primaryVersion(route: RouteSpec): string | undefined {
  return [...versionWeights(route.backends)].sort((a, b) => b[1] - a[1])[0]?.[0];
}

/** The endpoint's Istio Gateway: its host on the ingress gateway's ports. */
function gateways(ctx: EndpointContext): Desired[] {
  const { endpoint, config } = ctx;
  const host = hostOf(ctx);
  const { tls } = config.gateway;
  const servers: unknown[] = [
    {
      port: { number: config.gateway.port, name: 'http', protocol: 'HTTP' },
      hosts: [host],
      ...(tls.enabled && tls.httpsRedirect ? { tls: { httpsRedirect: true } } : {}),
    },
  ];
  if (tls.enabled) {
    servers.push({
      port: { number: tls.port, name: 'https', protocol: 'HTTPS' },
      hosts: [host],
      tls: { mode: 'SIMPLE', credentialName: tls.credentialName },
    });
  }
  return [
    namespaced(
      resources.gateway,
      endpoint,
      gatewayName(endpoint.metadata.name!),
      commonLabels(endpoint, 'gateway', 'ml-endpoint'),
      {
        spec: { selector: config.gateway.selector, servers },
      },
    ),
  ];
}

/** The VirtualService: a route a variant for requests that name it, then the weighted split and the mirrors. */
function routes(ctx: EndpointContext, route: RouteSpec): Desired[] {
  const { endpoint } = ctx;
  const namespace = endpoint.metadata.namespace;
  const primary = primaryVersion(route);
  const destination = (service: string, port: number) => ({
    host: `${service}.${namespace}.svc.cluster.local`,
    port: { number: port },
  });
  const mirrors = route.mirrors ?? [];
  const mirrorsAnnotation = encodeMirrors(mirrors);
  return [
    namespaced(
      resources.virtualService,
      endpoint,
      endpoint.metadata.name!,
      { ...commonLabels(endpoint, 'routing', 'ml-endpoint'), ...(primary ? { [labels.version]: primary } : {}) },
      {
        spec: {
          hosts: [route.host],
          gateways: [gatewayName(endpoint.metadata.name!)],
          http: [
            // A request that names a variant goes to it, ahead of the weighted split.
            ...(route.targets ?? []).map((t) => ({
              name: `variant-${t.variant}`,
              match: [{ headers: { [variantHeader]: { exact: t.variant } } }],
              route: [{ destination: destination(t.service, t.port), weight: 100 }],
            })),
            {
              name: 'variants',
              route: byService(route.backends).map((b) => ({
                destination: destination(b.service, b.port),
                weight: b.weight,
              })),
              ...(mirrors.length
                ? {
                    mirrors: mirrors.map((m) => ({
                      destination: destination(m.service, m.port),
                      percentage: { value: m.percent },
                    })),
                  }
                : {}),
            },
          ],
        },
      },
      {
        [routeVersionsAnnotation]: encodeVersions(route.backends),
        ...(mirrorsAnnotation ? { [routeMirrorsAnnotation]: mirrorsAnnotation } : {}),
      },
    ),
  ];
}

function referencedServices(live: KubeObject): string[] {
  const spec = (live.spec ?? {}) as VirtualServiceSpec;
  return (spec.http ?? [])
    .flatMap((h) => [...(h.route ?? []), ...(h.mirrors ?? [])].map((r) => r.destination?.host?.split('.')[0] ?? ''))
    .filter(Boolean);
}

export const istio: RoutingProvider = {
  name: 'istio',
  kinds: { route: resources.virtualService, gateway: resources.gateway },
  // Istio keeps no status on a VirtualService; its mirrors are its own (`mirrors`).
  dataPlane: { reportsStatus: false },
  objects: (ctx, route) => [...gateways(ctx), ...(route ? routes(ctx, route) : [])],
  routeName: (ctx) => ctx.endpoint.metadata.name!,
  observe: (_ctx, live) => ({ services: referencedServices(live) }),
};
