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
  /** The kinds it writes: the caches, the watches and the collection of the controller follow them. */
  readonly kinds: {
    /** The route kind (its first object carries the traffic split). */
    route: Resource;
    /** The gateway kind, when the provider writes per-endpoint gateways. */
    gateway?: Resource;
    /** Objects besides routes and gateways that carry the route (Traefik's mirroring, traefik-mirroring.ts), to write, watch and collect. */
    auxiliary?: AuxiliaryObjects;
  };
  /**
   * What its data plane does: whether it reports on routes (then a route is not serving until it
   * has), and why it gives shadows no mirror at all, if so (the chart turned mirroring off).
   */
  readonly dataPlane: { reportsStatus: boolean; mirroringUnavailable?: string };
  /**
   * The endpoint's objects: its gateways (none when routes attach to a shared gateway), then, given
   * a route, its route objects, the first of which carries the split.
   */
  objects(ctx: EndpointContext, route?: RouteSpec): Desired[];
  /** Name of the object that carries the split. */
  routeName(ctx: EndpointContext): string;
  /**
   * What the live route says: the Services it sends traffic (or mirrors) to, which must never be
   * deleted, and what the data plane reports about it (undefined when the provider reports nothing:
   * then only time tells when a change has reached every proxy).
   */
  observe(ctx: EndpointContext, live: KubeObject): { services: string[]; status?: RouteStatus };
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
