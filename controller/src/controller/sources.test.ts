import { describe, expect, it } from 'vitest';
import { resources, type KubeObject } from '../kube/resources.ts';
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
