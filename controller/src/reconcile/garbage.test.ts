import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { autoscalerResource } from '../desired/autoscaling.ts';
import { labels } from '../desired/labels.ts';
import { resources } from '../kube/resources.ts';
import { routingProvider } from '../routing/providers.ts';
import { Applier } from './apply.ts';
import { collectGarbage } from './garbage.ts';
import { HostPathStorage } from './hostpath.ts';
import { StatusWriter } from './status-writer.ts';
import { namespace, serveFirstVersion, setUp } from './testing/fixtures.ts';

describe('garbage collection', () => {
  it("deletes the endpoint's objects of what the decision no longer keeps, and nothing else", async () => {
    const t = setUp();
    await serveFirstVersion(t, {});
    const served = t.endpoint().status!;
    const instance = served.traffic![0].service;
    // Someone else's Deployment, labelled as if it were the endpoint's: never touched.
    await t.cluster.create(resources.deployment, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'theirs', namespace, labels: { [labels.endpoint]: 'iris', [labels.modelInstance]: 'theirs' } },
      spec: {},
    });
    const provider = routingProvider(t.config);
    const applier = new Applier({
      client: t.cluster,
      caches: t.cluster.caches,
      provider,
      autoscalerResource: autoscalerResource(t.config),
    });
    const status = new StatusWriter({ client: t.cluster, caches: t.cluster.caches, events: t.recorder, now: t.now });
    const deps = {
      client: t.cluster,
      caches: t.cluster.caches,
      config: t.config,
      provider,
      autoscalerResource: autoscalerResource(t.config),
      status,
      hostPath: new HostPathStorage({
        client: t.cluster,
        caches: t.cluster.caches,
        config: t.config,
        logger: pino({ level: 'silent' }),
        applier,
      }),
    };
    const endpoint = t.cluster.caches.endpoints.get(namespace, 'iris')!;

    // Everything kept: nothing deleted.
    const keep = {
      keepInstances: new Set([instance]),
      keepVersions: new Set([served.endpointConfigVersion!]),
      keepAutoscalers: new Set<string>(),
      keepBudgets: new Set<string>(),
    };
    await collectGarbage(deps, endpoint, keep);
    expect(t.cluster.writes.filter((w) => w.verb === 'delete')).toEqual([]);

    // The version let go: its workloads and snapshots go; someone else's object stays.
    await collectGarbage(deps, endpoint, { ...keep, keepInstances: new Set(), keepVersions: new Set() });
    const deleted = t.cluster.writes
      .filter((w) => w.verb === 'delete')
      .map((w) => `${w.plural}/${w.name}`)
      .sort();
    expect(deleted).toEqual([
      `deployments/${instance}`,
      `machinelearningendpointconfigs/iris-${served.endpointConfigVersion}`,
      `machinelearningmodels/${instance}`,
      `services/${instance}`,
    ]);
    expect(t.cluster.read(resources.deployment, namespace, 'theirs')).toBeDefined();
  });
});
