// The Istio provider: one Gateway per endpoint (selector, port and TLS from the chart) and one
// VirtualService whose single HTTP route carries the weighted destinations. Istio reports nothing
// back on these objects by default, so a switch is known to have reached the proxies only by time.
import { commonLabels, gatewayName, hostOf, namespaced } from '../desired/objects.ts';
import { labels } from '../desired/labels.ts';
import { resources } from '../kube/resources.ts';
import type { RoutingProvider } from './provider.ts';
import { encodeVersions, routeVersionsAnnotation, versionWeights, type RouteSpec } from './route.ts';

interface VirtualServiceSpec {
  http?: { route?: { destination?: { host?: string } }[] }[];
}

function primaryVersion(route: RouteSpec): string | undefined {
  return [...versionWeights(route.backends)].sort((a, b) => b[1] - a[1])[0]?.[0];
}

export const istio: RoutingProvider = {
  name: 'istio',
  routeResource: resources.virtualService,
  gatewayResource: resources.gateway,
  reportsStatus: false,

  gateways(ctx) {
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
      servers.push({ port: { number: tls.port, name: 'https', protocol: 'HTTPS' }, hosts: [host], tls: { mode: 'SIMPLE', credentialName: tls.credentialName } });
    }
    return [
      namespaced(resources.gateway, endpoint, gatewayName(endpoint.metadata.name!), commonLabels(endpoint, 'gateway', 'ml-endpoint'), {
        spec: { selector: config.gateway.selector, servers },
      }),
    ];
  },

  routeName: (ctx) => ctx.endpoint.metadata.name!,

  routes(ctx, route) {
    const { endpoint } = ctx;
    const namespace = endpoint.metadata.namespace;
    const primary = primaryVersion(route);
    return [namespaced(resources.virtualService, endpoint, endpoint.metadata.name!, { ...commonLabels(endpoint, 'routing', 'ml-endpoint'), ...(primary ? { [labels.version]: primary } : {}) }, {
      spec: {
        hosts: [route.host],
        gateways: [gatewayName(endpoint.metadata.name!)],
        http: [
          {
            name: 'variants',
            route: route.backends.map((b) => ({ destination: { host: `${b.service}.${namespace}.svc.cluster.local`, port: { number: b.port } }, weight: b.weight })),
          },
        ],
      },
    }, { [routeVersionsAnnotation]: encodeVersions(route.backends) })];
  },

  referencedServices(live) {
    const spec = (live.spec ?? {}) as VirtualServiceSpec;
    return (spec.http ?? []).flatMap((h) => (h.route ?? []).map((r) => r.destination?.host?.split('.')[0] ?? '')).filter(Boolean);
  },

  status: () => undefined,
};
