import { describe, expect, it } from 'vitest';
import { autoscalerResource } from '../desired/autoscaling.ts';
import * as desired from '../desired/objects.ts';
import { resources } from '../kube/resources.ts';
import { routingProvider } from '../routing/providers.ts';
import { Applier } from './apply.ts';
import { namespace, serveFirstVersion, setUp } from './testing/fixtures.ts';

describe('applying', () => {
  it("writes only what differs, and never over an object that is not the endpoint's", async () => {
    const t = setUp();
    await serveFirstVersion(t, {});
    const applier = new Applier({
      client: t.cluster,
      caches: t.cluster.caches,
      provider: routingProvider(t.config),
      autoscalerResource: autoscalerResource(t.config),
    });
    const endpoint = t.cluster.caches.endpoints.get(namespace, 'iris')!;
    const ctx = { endpoint, config: t.config };
    const gateway = routingProvider(t.config).objects(ctx)[0];
    const before = t.cluster.writes.length;
    expect(await applier.ensure(endpoint, gateway)).toBe(true);
    expect(t.cluster.writes.length).toBe(before);

    // A namesake someone else made: reported as a conflict, left as it is.
    const other: desired.Desired = {
      resource: resources.service,
      object: {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: {
          name: 'taken',
          namespace,
          ownerReferences: [{ apiVersion: 'v1', kind: 'X', name: 'x', uid: 'x', controller: true }],
        },
        spec: { ports: [] },
      },
    };
    await t.cluster.create(resources.service, {
      ...other.object,
      metadata: { name: 'taken', namespace },
      spec: { ports: [{ port: 1 }] },
    });
    expect(await applier.ensure(endpoint, other)).toBe(false);
    expect(t.cluster.read(resources.service, namespace, 'taken')).toMatchObject({ spec: { ports: [{ port: 1 }] } });
    expect(applier.describeConflict(other)).toMatch(
      /^Service models\/taken exists and does not belong to this endpoint/,
    );
  });
});
