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
  /** Objects besides routes and gateways that carry the route (Traefik's mirroring services), to watch and collect. */
  readonly auxiliaryResource?: Resource;
  /**
   * The auxiliary objects of primary Services, written with their workloads (before any route names
   * them) and kept while the Service is: named by auxiliaryName, labelled with the model instance.
   */
  auxiliary?(ctx: EndpointContext, services: string[], mirrors: RouteMirror[]): Desired[];
  auxiliaryName?(service: string): string;
  /**
   * What the data plane reports about the live route, or undefined when the provider reports
   * nothing (then only time tells when a change has reached every proxy).
   */
  status(ctx: EndpointContext, live: KubeObject): RouteStatus | undefined;
}
