import { describe, expect, it } from 'vitest';
import type { KubeObject } from '../kube/resources.ts';
import { loadLeftMs, loadMs, mirrorBackendRef, traefikMirroring, wrappedService } from './traefik-mirroring.ts';

const at = (iso: string) => new Date(iso);
const mirror = (created: string): KubeObject => ({
  metadata: { name: 'm-aa-mirror', namespace: 'ml', creationTimestamp: created },
});
const deployment = (availableSince?: string): KubeObject => ({
  metadata: { name: 'm-aa', namespace: 'ml' },
  status: availableSince
    ? { conditions: [{ type: 'Available', status: 'True', lastTransitionTime: availableSince }] }
    : {},
});

describe("Traefik's readiness: when a route may name a mirroring TraefikService", () => {
  it('not before the TraefikService exists: the whole load time is left', () => {
    expect(loadLeftMs(undefined, deployment('2026-12-06T00:00:00Z'), at('2026-12-06T00:10:00Z'))).toBe(loadMs);
  });

  it('counts the load time from its creation when the pods were ready before it', () => {
    const created = mirror('2026-12-06T00:00:10Z');
    expect(loadLeftMs(created, deployment('2026-12-06T00:00:00Z'), at('2026-12-06T00:00:11Z'))).toBe(2000);
    expect(loadLeftMs(created, deployment('2026-12-06T00:00:00Z'), at('2026-12-06T00:00:13Z'))).toBe(0);
  });

  it('counts from the Deployment becoming Available when that came later (Traefik learns of ready pods on a reload of its own), a second more for rounding', () => {
    const created = mirror('2026-12-06T00:00:00Z');
    expect(loadLeftMs(created, deployment('2026-12-06T00:00:20Z'), at('2026-12-06T00:00:22Z'))).toBe(2000);
    expect(loadLeftMs(created, deployment('2026-12-06T00:00:20Z'), at('2026-12-06T00:00:24Z'))).toBe(0);
  });

  it('a Deployment not Available (or not known) leaves only the creation to count from', () => {
    expect(loadLeftMs(mirror('2026-12-06T00:00:00Z'), undefined, at('2026-12-06T00:00:01Z'))).toBe(2000);
    expect(loadLeftMs(mirror('2026-12-06T00:00:00Z'), deployment(), at('2026-12-06T00:00:01Z'))).toBe(2000);
  });
});

describe("Traefik's mirroring objects", () => {
  it('wrap a primary Service by name, and the route names them by it', () => {
    expect(traefikMirroring.name('m-aa')).toBe('m-aa-mirror');
    expect(wrappedService(traefikMirroring.name('m-aa'))).toBe('m-aa');
    expect(wrappedService('m-aa')).toBe('');
    expect(mirrorBackendRef('m-aa', 90)).toEqual({
      group: 'traefik.io',
      kind: 'TraefikService',
      name: 'm-aa-mirror',
      weight: 90,
    });
  });

  it('say what to install when the cluster does not serve them', () => {
    expect(traefikMirroring.missing).toMatch(/TraefikService API \(traefik\.io\/v1alpha1\) is not served/);
  });
});
