// What the rollout logic needs from a routing provider, whichever data plane it drives (as Argo
// Rollouts' trafficrouting interface): the objects that carry the endpoint's host, the route object
// written from a RouteSpec, and what the data plane says of the route it has. Providers are thin
// writers of a route computed once as data; they never decide which version serves.
import type { Desired, EndpointContext } from '../desired/objects.ts';
import type { KubeObject, Resource } from '../kube/resources.ts';
import type { RouteMirror, RouteSpec } from '../desired/route.ts';

export type ProviderName = 'istio' | 'gatewayAPI';

/** A condition the data plane reports on the route (Gateway API's Accepted and ResolvedRefs). */
export interface RouteCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

export interface RouteStatus {
  /** The data plane has processed the route's latest generation (for providers that report it). */
  observed: boolean;
  conditions: RouteCondition[];
}

export interface RoutingProvider {
  readonly name: ProviderName;
  /** The route kind, and the gateway kind when the provider writes per-endpoint gateways. */
  readonly routeResource: Resource;
  readonly gatewayResource?: Resource;
  /** Whether the data plane reports on routes (then a route is not serving until it has). */
  readonly reportsStatus: boolean;
  /** Gateways of the endpoint's host (none when routes attach to a shared gateway). */
  gateways(ctx: EndpointContext): Desired[];
  /** The endpoint's route objects (the first is the one that carries the traffic split). */
  routes(ctx: EndpointContext, route: RouteSpec): Desired[];
  /** Name of the object that carries the split. */
  routeName(ctx: EndpointContext): string;
  /** Services the live route sends traffic (or mirrors) to: what must never be deleted. */
  referencedServices(live: KubeObject): string[];
  /** Why this provider gives shadows no mirror at all, if so (the chart turned mirroring off). */
  mirroringUnavailable(): string | undefined;
  /** Objects besides routes and gateways that carry the route (Traefik's mirroring, traefik-mirroring.ts), to write, watch and collect. */
  readonly auxiliary?: AuxiliaryObjects;
  /**
   * What the data plane reports about the live route, or undefined when the provider reports
   * nothing (then only time tells when a change has reached every proxy).
   */
  status(ctx: EndpointContext, live: KubeObject): RouteStatus | undefined;
}

/**
 * Objects a provider writes beside the route, one per primary Service: written with its workloads
 * (before any route names them) and kept while the Service is, labelled with the model instance.
 */
export interface AuxiliaryObjects {
  readonly resource: Resource;
  /** Name of a primary Service's object. */
  name(service: string): string;
  /** The objects of primary Services, carrying the shadows' mirrors. */
  objects(ctx: EndpointContext, services: string[], mirrors: RouteMirror[]): Desired[];
  /**
   * How long until the data plane has loaded a Service's object, from it and the Service's
   * Deployment as the caches hold them (0 or less: loaded, and a route may name it).
   */
  loadLeftMs(object: KubeObject | undefined, deployment: KubeObject | undefined, now: Date): number;
  /** What shadows lack, and what to install, when the cluster does not serve the objects' API. */
  readonly missing: string;
}
