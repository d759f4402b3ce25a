// Shadow variants and variant targeting with real requests through the gateway (Traefik, whose
// shadows are mirrored through TraefikServices): the share of the requests a shadow's pods receive,
// counted on the pods themselves, what the clients get back, a broken or never-ready shadow, and
// requests that name a variant with the x-ml-variant header.
import { describe, expect, inject, it } from 'vitest';
import { binomialInterval } from '../../ci/traffic/load.ts';
import { waitFor } from '../../ci/wait.ts';
import type { MachineLearningEndpoint } from '../../controller/src/api/generated.ts';
import { applyConfig, applyEndpoint, applyModel, inService, waitForEndpoint } from './ml.ts';
import { gatewaySuite, servedModel } from './fixtures.ts';
import { backendsOf, expectServed, load, printReport, share, waitForGateway } from './traffic.ts';

const suite = gatewaySuite('shadows', ['controller.config.routing.gatewayAPI.mirroring=TraefikService']);
const host = (name: string) => suite.host(name);
const model = servedModel('shadows');
const condition = (e: MachineLearningEndpoint, type: string) => e.status?.conditions?.find((c) => c.type === type);

/** Requests each model instance's pods answered (probes aside), by status, as the pod runtime counts them. */
async function podAnswers(): Promise<Map<string, Map<string, number>>> {
  const text = await (await fetch(inject('prometheus').podMetricsUrl)).text();
  const byInstance = new Map<string, Map<string, number>>();
  for (const line of text.split('\n')) {
    const m = line.match(/^local_pod_requests_total\{(.*)\} (\d+)$/);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (labels.namespace !== suite.namespace) continue;
    const codes = byInstance.get(labels.instance) ?? new Map<string, number>();
    codes.set(labels.code, (codes.get(labels.code) ?? 0) + Number(m[2]));
    byInstance.set(labels.instance, codes);
  }
  return byInstance;
}
const total = (answers: Map<string, Map<string, number>>, instance: string) =>
  [...(answers.get(instance)?.values() ?? [])].reduce((a, b) => a + b, 0);

/** The count of answers an instance gave, once it has stopped growing (mirrors finish after the clients' answers). */
async function settledCount(instance: string): Promise<number> {
  let last = -1;
  return waitFor(`the requests mirrored to ${instance} to settle`, 30_000, async () => {
    const now = total(await podAnswers(), instance);
    const settled = now === last ? now : undefined;
    last = now;
    await new Promise((resolve) => setTimeout(resolve, 500));
    return settled;
  });
}

describe('shadow variants (mirrored through TraefikServices)', () => {
  it('receive 25% of 2,000 requests, within the 99.9% binomial interval, while the clients get only the primary answers', async () => {
    await applyModel(suite.namespace, 'main', model('acme/main:1'));
    await applyModel(suite.namespace, 'shadow', model('acme/shadow:1'));
    await applyConfig(suite.namespace, 'mirror', {
      models: [{ model: 'main' }, { model: 'shadow', shadow: { percent: 25 } }],
    });
    await applyEndpoint(suite.namespace, 'mirror', { config: 'mirror', rollout: { drainSeconds: 5 } });
    const e = await waitForEndpoint(
      suite.namespace,
      'mirror',
      'InService, its shadow mirrored',
      (x) => inService(x) && condition(x, 'ShadowsMirrored')?.status === 'True',
      90_000,
    );
    await waitForGateway(host('mirror'));
    expect(e.status!.traffic!.map((t) => [t.variant, t.weight])).toEqual([['main', 100]]);
    expect(e.status!.shadows).toEqual([
      expect.objectContaining({ variant: 'shadow', percent: 25, mirrored: true, readyReplicas: 1, replicas: 1 }),
    ]);
    const primary = e.status!.traffic![0].service;
    const shadow = e.status!.shadows![0].service;

    const before = await settledCount(shadow);
    const run = load(host('mirror'), { requests: 2000, rate: 100, concurrency: 128, maxDurationMs: 60_000 });
    const r = await run.done;
    printReport('2,000 requests to an endpoint with a 25% shadow', r);
    const mirrored = (await settledCount(shadow)) - before;
    const [lo, hi] = binomialInterval(0.25, r.sent);
    process.stdout.write(
      `[shadows] the shadow's pods received ${mirrored} of ${r.sent} requests (${((mirrored / r.sent) * 100).toFixed(2)}%), interval ${(lo * 100).toFixed(2)}..${(hi * 100).toFixed(2)}%\n`,
    );
    // Every answer is the primary's: a shadow's never reaches a client.
    expectServed(run, { backends: [primary], namespace: suite.namespace });
    expect(mirrored / r.sent).toBeGreaterThanOrEqual(lo);
    expect(mirrored / r.sent).toBeLessThanOrEqual(hi);
  });

  it('a shadow that answers only errors causes 0 failed client requests', async () => {
    const previous = (await waitForEndpoint(suite.namespace, 'mirror', 'InService', inService)).status!.shadows![0]
      .service;
    await applyModel(suite.namespace, 'shadow', model('acme/shadow:2', { DEMO_ERROR_RATE: '1' }));
    const e = await waitForEndpoint(
      suite.namespace,
      'mirror',
      'the broken shadow mirrored',
      (x) => inService(x) && x.status?.shadows?.[0]?.service !== previous && x.status?.shadows?.[0]?.mirrored === true,
      90_000,
    );
    await waitForGateway(host('mirror'));
    const broken = e.status!.shadows![0].service;
    const errorsBefore = (await podAnswers()).get(broken)?.get('500') ?? 0;
    const run = load(host('mirror'), { requests: 1000, rate: 100, concurrency: 128, maxDurationMs: 60_000 });
    const r = await run.done;
    printReport('1,000 requests while the shadow answers 500', r);
    await settledCount(broken);
    const errors = ((await podAnswers()).get(broken)?.get('500') ?? 0) - errorsBefore;
    process.stdout.write(
      `[shadows] the broken shadow answered ${errors} mirrored requests with 500; the clients saw ${r.failed} failures\n`,
    );
    expect(errors).toBeGreaterThan(100);
    expectServed(run, { backends: backendsOf(e), namespace: suite.namespace });
  });

  it('a shadow that never gets ready holds up no switch of the primary, and gets no mirror', async () => {
    const before = await waitForEndpoint(suite.namespace, 'mirror', 'InService', inService);
    await applyModel(suite.namespace, 'shadow', model('acme/shadow:3', { DEMO_READY: 'false' }));
    await applyModel(suite.namespace, 'main', model('acme/main:2'));
    const e = await waitForEndpoint(
      suite.namespace,
      'mirror',
      'switched with the shadow not ready',
      (x) =>
        inService(x) &&
        x.status!.endpointConfigVersion !== before.status!.endpointConfigVersion &&
        x.status!.traffic![0].service !== before.status!.traffic![0].service,
      90_000,
    );
    expect(e.status!.shadows![0]).toMatchObject({ mirrored: false, readyReplicas: 0 });
    expect(condition(e, 'ShadowsMirrored')).toMatchObject({ status: 'False', reason: 'ShadowNotReady' });
    expect(condition(e, 'Ready')).toMatchObject({ status: 'True' });
    const primary = e.status!.traffic![0].service;
    await waitFor('the gateway to send everything to the new primary', 30_000, async () => {
      const probe = await load(host('mirror'), { requests: 20, concurrency: 4, maxDurationMs: 5000 }).done;
      return Object.keys(probe.byInstance).join() === primary ? true : undefined;
    });
    const run = load(host('mirror'), { requests: 300, rate: 100, concurrency: 128, maxDurationMs: 30_000 });
    await run.done;
    expectServed(run, { backends: [primary], namespace: suite.namespace });
  });
});

describe('variant targeting (x-ml-variant)', () => {
  it('sends 1,000 requests that name the 10% variant all to it, while the split holds without the header', async () => {
    await applyModel(suite.namespace, 'champion', model('acme/champion:1'));
    await applyModel(suite.namespace, 'challenger', model('acme/challenger:1'));
    await applyConfig(suite.namespace, 'targeted', {
      models: [
        { model: 'champion', weight: 90 },
        { model: 'challenger', weight: 10 },
      ],
    });
    await applyEndpoint(suite.namespace, 'targeted', { config: 'targeted' });
    const e = await waitForEndpoint(suite.namespace, 'targeted', 'InService', inService, 90_000);
    await waitForGateway(host('targeted'));
    const challenger = e.status!.traffic!.find((t) => t.variant === 'challenger')!.service;
    const named = load(host('targeted'), {
      requests: 1000,
      rate: 100,
      concurrency: 128,
      maxDurationMs: 60_000,
      headers: { 'x-ml-variant': 'challenger' },
    });
    const rn = await named.done;
    printReport('1,000 requests with x-ml-variant: challenger', rn);
    expectServed(named, { backends: [challenger], namespace: suite.namespace });
    expect(rn.sent).toBe(1000);
    const unknown = load(host('targeted'), {
      requests: 200,
      rate: 100,
      concurrency: 128,
      maxDurationMs: 30_000,
      headers: { 'x-ml-variant': 'nobody' },
    });
    await unknown.done;
    expectServed(unknown, { backends: backendsOf(e), namespace: suite.namespace });
    const plain = load(host('targeted'), { requests: 2000, rate: 100, concurrency: 128, maxDurationMs: 60_000 });
    const rp = await plain.done;
    printReport('2,000 requests without the header', rp);
    const s = share(plain.samples, challenger, 0.1);
    process.stdout.write(
      `[targeting] without the header: challenger ${(s.observed * 100).toFixed(2)}% of ${s.n}, interval ${(s.interval[0] * 100).toFixed(2)}..${(s.interval[1] * 100).toFixed(2)}%\n`,
    );
    expectServed(plain, { backends: backendsOf(e), namespace: suite.namespace });
    expect(s.observed).toBeGreaterThanOrEqual(s.interval[0]);
    expect(s.observed).toBeLessThanOrEqual(s.interval[1]);
  });
});
