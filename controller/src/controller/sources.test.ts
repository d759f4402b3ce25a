import { describe, expect, it } from 'vitest';
import { resources, type KubeObject } from '../kube/resources.ts';
import { loadLeftMs, loadMs } from '../routing/traefik-mirroring.ts';
import { transformFor } from './sources.ts';

describe('cache transforms', () => {
  it('keep what the controller reads of a Deployment: its spec and the counts of its status', () => {
    const live: KubeObject = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: {
        name: 'd',
        namespace: 'n',
        labels: { a: 'b' },
        annotations: { keep: 'x', 'kubectl.kubernetes.io/last-applied-configuration': '{"big":true}' },
      },
      spec: { replicas: 2, template: { spec: { containers: [{ name: 'c', image: 'i' }] } } },
      status: {
        replicas: 2,
        readyReplicas: 1,
        updatedReplicas: 2,
        availableReplicas: 1,
        observedGeneration: 3,
        conditions: [{ type: 'Available', status: 'False', message: 'long' }],
      },
    };
    const cached = transformFor(resources.deployment)(structuredClone(live));
    expect(cached.spec).toEqual(live.spec);
    expect(cached.metadata.annotations).toEqual({ keep: 'x' });
    expect(cached.status).toEqual({
      replicas: 2,
      readyReplicas: 1,
      updatedReplicas: 2,
      availableReplicas: 1,
      observedGeneration: 3,
    });
  });

  it("keep when a Deployment became Available: Traefik's mirror readiness counts from it", () => {
    // A TraefikService made a minute ago, whose Deployment's pods became ready just now: Traefik
    // learns of them on its next reload, so a route must not name the mirror for a while yet.
    const now = new Date('2026-12-06T10:00:00Z');
    const live: KubeObject = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'm-1', namespace: 'n' },
      spec: { replicas: 1 },
      status: {
        replicas: 1,
        readyReplicas: 1,
        updatedReplicas: 1,
        availableReplicas: 1,
        observedGeneration: 1,
        conditions: [
          {
            type: 'Progressing',
            status: 'True',
            reason: 'NewReplicaSetAvailable',
            lastTransitionTime: '2026-12-06T09:58:00Z',
            message: 'ReplicaSet "m-1-5d9" has successfully progressed.',
          },
          {
            type: 'Available',
            status: 'True',
            reason: 'MinimumReplicasAvailable',
            lastTransitionTime: '2026-12-06T10:00:00Z',
            lastUpdateTime: '2026-12-06T10:00:00Z',
            message: 'Deployment has minimum availability.',
          },
        ],
      },
    };
    const mirror: KubeObject = {
      apiVersion: 'traefik.io/v1alpha1',
      kind: 'TraefikService',
      metadata: { name: 'm-1-mirror', namespace: 'n', creationTimestamp: '2026-12-06T09:59:00Z' },
    };
    const cached = transformFor(resources.deployment)(structuredClone(live));
    expect(loadLeftMs(mirror, cached, now)).toBe(loadLeftMs(mirror, live, now));
    expect(loadLeftMs(mirror, cached, now)).toBe(loadMs + 1000);
    expect((cached.status as { conditions: unknown[] }).conditions).toEqual([
      { type: 'Available', status: 'True', lastTransitionTime: '2026-12-06T10:00:00Z' },
    ]);
  });

  it('keep where a pod runs and how it ended, and every other object whole', () => {
    const pod = transformFor(resources.pod)({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', labels: { x: 'y' } },
      spec: { nodeName: 'n1', containers: [{ name: 'c' }] },
      status: { phase: 'Succeeded', podIP: '1.2.3.4' },
    });
    expect(pod).toEqual({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', labels: { x: 'y' } },
      spec: { nodeName: 'n1' },
      status: { phase: 'Succeeded' },
    });
    const service: KubeObject = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 's' },
      spec: { ports: [{ port: 80 }] },
      status: { loadBalancer: {} },
    };
    expect(transformFor(resources.service)(structuredClone(service))).toEqual(service);
  });
});
