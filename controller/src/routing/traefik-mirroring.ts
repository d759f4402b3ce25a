// Traefik's mirroring, a module of its own beside the Gateway API provider that uses it: Traefik has
// no RequestMirror filter, so each primary Service is reached through a TraefikService of kind
// mirroring that sends it every request and copies a share of them to the shadows. Traefik takes the
// HTTPRoute and the TraefikServices it names from two providers, each on its own reload: a route must
// never name one that Traefik has not loaded yet, nor lose one it still names. So each primary
// Service gets its TraefikService with its workloads, long before a route names it, and keeps it
// until the Service goes; the shadows' mirrors change inside it. Its readiness (loadLeftMs) says
// when a route may name it.
import { commonLabels, namespaced } from '../desired/common.ts';
import { labels } from '../desired/labels.ts';
import { servicePort } from '../desired/ports.ts';
import type { KubeObject, Resource } from '../kube/resources.ts';
import type { AuxiliaryObjects } from './provider.ts';

export const traefikGroup = 'traefik.io';
export const traefikServiceResource: Resource = {
  group: traefikGroup,
  version: 'v1alpha1',
  kind: 'TraefikService',
  plural: 'traefikservices',
  namespaced: true,
};

/** The TraefikService that sends a primary Service its requests and mirrors a share of them to the shadows. */
export const mirrorServiceName = (service: string) => `${service}-mirror`;

/** The primary Service a mirroring TraefikService wraps ('' when the name is not one of them). */
export const wrappedService = (name: string) => (name.endsWith('-mirror') ? name.slice(0, -'-mirror'.length) : '');

/** An HTTPRoute backendRef to a primary Service's mirroring TraefikService. */
export const mirrorBackendRef = (service: string, weight: number) => ({
  group: traefikGroup,
  kind: 'TraefikService',
  name: mirrorServiceName(service),
  weight,
});

/** How long Traefik may take to load a TraefikService or a change of its servers (it reloads at most every 2 s). */
export const loadMs = 3000;

type Conditions = { conditions?: { type: string; status: string; lastTransitionTime?: string }[] };

/**
 * How long until Traefik has loaded a primary Service's TraefikService with its ready pods (0 or
 * less: loaded). Traefik loads a TraefikService when it is created, with no server while the pods
 * are not ready, and learns of them on a later reload of its own: a route that names it sooner gets
 * 503s for the moments between. So the load time counts from the later of its creation and the
 * Deployment's Available transition.
 */
export function loadLeftMs(mirror: KubeObject | undefined, deployment: KubeObject | undefined, now: Date): number {
  const created = mirror?.metadata.creationTimestamp;
  if (!created) return loadMs;
  // Transition times are in whole seconds: a second more covers the rounding.
  const available = ((deployment?.status ?? {}) as Conditions).conditions?.find(
    (c) => c.type === 'Available' && c.status === 'True',
  );
  const readySince = available?.lastTransitionTime ? Date.parse(available.lastTransitionTime) + 1000 : 0;
  return Math.max(Date.parse(created), readySince) + loadMs - now.getTime();
}

export const traefikMirroring: AuxiliaryObjects = {
  resource: traefikServiceResource,
  name: mirrorServiceName,
  objects: (ctx, services, mirrors) =>
    services.map((service) =>
      namespaced(
        traefikServiceResource,
        ctx.endpoint,
        mirrorServiceName(service),
        { ...commonLabels(ctx.endpoint, 'routing', 'ml-endpoint'), [labels.modelInstance]: service },
        {
          spec: {
            mirroring: {
              name: service,
              port: servicePort,
              mirrors: mirrors.map((m) => ({ name: m.service, port: m.port, percent: m.percent })),
            },
          },
        },
      ),
    ),
  loadLeftMs,
  missing:
    "shadow variants run but get no mirror: Traefik's TraefikService API (traefik.io/v1alpha1) is not served by this cluster; install Traefik's CRDs and enable its kubernetesCRD provider, then restart the controller",
};
