import { describe, expect, it } from 'vitest';
import type {
  MachineLearningEndpoint,
  MachineLearningEndpointConfigSpec,
  MachineLearningModel,
  MachineLearningModelSpec,
} from '../api/generated.ts';
import { defaultConfig, type OperatorConfig } from '../options/config.ts';
import { parseShadowsConfig, shadowDefaults } from '../agent/config.ts';
import {
  agentConfig,
  agentContainerName,
  agentShadows,
  captureConfigMap,
  copyTokenOf,
  captureConfigMapName,
  rolloutComparisons,
} from './agent.ts';
import { agentAnnotation } from './labels.ts';
import * as desired from './objects.ts';
import { rolloutAsksAgents, planFromSnapshot, planFromTemplates, type VariantPlan, type VersionPlan } from './plan.ts';

const endpoint: MachineLearningEndpoint = {
  metadata: { name: 'titanic', namespace: 'ml', uid: 'uid-1', generation: 1 },
  spec: { config: 'titanic' },
};
const operatorConfig: OperatorConfig = { ...defaultConfig, fetcher: { image: 'ml-operator/controller:1' } };
const ctx = { endpoint, config: operatorConfig };
const model: MachineLearningModelSpec = {
  image: 'acme/titanic:1',
  port: 8080,
  readinessPath: '/ping',
  startupProbe: { path: '/ping' },
};
const base: MachineLearningEndpointConfigSpec = { models: [{ model: 'titanic', instances: 2 }] };
const capture = { destination: 's3://captures/titanic', samplingPercent: 25 };

function plan(cfg: MachineLearningEndpointConfigSpec): VersionPlan {
  const r = planFromTemplates('titanic', 'titanic', cfg, new Map([['titanic', model]]));
  if (!r.ok) throw new Error('unresolved');
  return r.plan;
}

type Container = {
  name: string;
  ports?: { name: string; containerPort: number }[];
  readinessProbe?: { httpGet: { port: string } };
  startupProbe?: { httpGet: { port: string } };
  args?: string[];
  env?: unknown[];
  envFrom?: unknown[];
  volumeMounts?: { name: string; mountPath: string }[];
};
type PodSpec = {
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string }; persistentVolumeClaim?: { claimName: string } }[];
};
const podSpec = (v: VariantPlan) =>
  (desired.deployment(ctx, v, 600).object.spec as { template: { spec: PodSpec } }).template.spec;

describe('the model agent', () => {
  it('is part of the model version: a config that gains dataCapture rolls out new instances, one without keeps its own', () => {
    const without = plan(base);
    const withCapture = plan({ ...base, dataCapture: capture });
    expect(withCapture.variants[0].instance).not.toBe(without.variants[0].instance);
    expect(plan({ ...base, dataCapture: undefined }).variants[0].instance).toBe(without.variants[0].instance);
    expect(podSpec(without.variants[0]).containers.map((c) => c.name)).toEqual(['server']);
  });

  it('keeps the instances when only the sampling, the destination in the same store or enabled change: no pod restarts', () => {
    const before = plan({ ...base, dataCapture: capture });
    for (const change of [
      { samplingPercent: 50 },
      { enabled: false },
      { destination: 's3://other/prefix' },
      { captureOptions: ['Input' as const] },
    ]) {
      const after = plan({ ...base, dataCapture: { ...capture, ...change } });
      expect(after.variants[0].instance).toBe(before.variants[0].instance);
      expect(desired.deployment(ctx, after.variants[0], 600).object).toEqual(
        desired.deployment(ctx, before.variants[0], 600).object,
      );
    }
  });

  it('takes the port named http, which the Service targets, and the server keeps its probes on its renamed port', () => {
    const spec = podSpec(plan({ ...base, dataCapture: capture }).variants[0]);
    const [server, agent] = spec.containers;
    expect(agent.name).toBe(agentContainerName);
    expect(server.ports).toEqual([{ name: 'model', containerPort: 8080, protocol: 'TCP' }]);
    expect(server.readinessProbe!.httpGet.port).toBe('model');
    expect(server.startupProbe!.httpGet.port).toBe('model');
    expect(agent.ports!.map((p) => [p.name, p.containerPort])).toEqual([
      ['http', 18080],
      ['agent-admin', 9090],
    ]);
    expect(agent.args).toContain('--model=http://127.0.0.1:8080');
    expect(agent.args).toContain('--model-ready-path=/ping');
    expect(agent.readinessProbe!.httpGet.port).toBe('agent-admin');
    expect(spec.volumes).toContainEqual(
      expect.objectContaining({
        configMap: expect.objectContaining({ name: captureConfigMapName('titanic'), optional: true }),
      }),
    );
    expect(
      (
        desired.service(ctx, plan({ ...base, dataCapture: capture }).variants[0]).object.spec as {
          ports: { targetPort: string }[];
        }
      ).ports[0].targetPort,
    ).toBe('http');
  });

  it('gets the identity of its pod and the credentials Secret, as the fetcher gets the artifact one', () => {
    const agent = podSpec(
      plan({ ...base, dataCapture: { ...capture, credentialsSecret: 'capture-creds' } }).variants[0],
    ).containers[1];
    expect(agent.envFrom).toEqual([{ secretRef: { name: 'capture-creds' } }]);
    expect(agent.env).toContainEqual({ name: 'ML_ENDPOINT', value: 'titanic' });
    expect(agent.env).toContainEqual({
      name: 'ML_POD_NAME',
      valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } },
    });
  });

  it('mounts the claim of a pvc:// destination and writes there as a file:// destination', () => {
    const p = plan({ ...base, dataCapture: { destination: 'pvc://captures/titanic/records' } });
    const spec = podSpec(p.variants[0]);
    expect(spec.volumes).toContainEqual({ name: 'capture', persistentVolumeClaim: { claimName: 'captures' } });
    expect(spec.containers[1].volumeMounts).toContainEqual({
      name: 'capture',
      mountPath: '/var/run/ml-operator/capture/captures',
    });
    expect(agentConfig({ destination: 'pvc://captures/titanic/records' }).capture.destination).toBe(
      'file:///var/run/ml-operator/capture/captures/titanic/records',
    );
    // Another claim is another pod spec: a new version.
    expect(plan({ ...base, dataCapture: { destination: 'pvc://other/x' } }).variants[0].instance).not.toBe(
      p.variants[0].instance,
    );
  });

  it('is recorded on the snapshot, so that a version rebuilt from its snapshots keeps its agent and its image', () => {
    const p = plan({ ...base, dataCapture: capture });
    const snapshot = desired.modelInstance(ctx, p.variants[0]).object as MachineLearningModel;
    expect(JSON.parse(snapshot.metadata.annotations![agentAnnotation])).toEqual({ image: 'ml-operator/controller:1' });
    const configSnapshot = {
      ...desired.configInstance(ctx, p).object,
      status: desired.configInstanceStatus(p),
    } as never;
    const rebuilt = planFromSnapshot(configSnapshot, new Map([[p.variants[0].instance, snapshot]]));
    expect(rebuilt!.variants[0].agent).toEqual({ image: 'ml-operator/controller:1' });
    const upgraded = { ...ctx, config: { ...operatorConfig, fetcher: { image: 'ml-operator/controller:2' } } };
    expect(
      (desired.deployment(upgraded, rebuilt!.variants[0], 600).object.spec as { template: { spec: PodSpec } }).template
        .spec.containers[1],
    ).toMatchObject({ image: 'ml-operator/controller:1' });
  });

  it("writes the agents' settings with every default filled in, and off when there are none", () => {
    const cm = captureConfigMap(endpoint, capture).object as unknown as {
      metadata: { name: string };
      data: Record<string, string>;
    };
    expect(cm.metadata.name).toBe('titanic-data-capture');
    expect(JSON.parse(cm.data['config.json'])).toEqual({
      capture: {
        enabled: true,
        samplingPercent: 25,
        captureOptions: ['Input', 'Output'],
        destination: 's3://captures/titanic',
        textContentTypes: ['application/json', 'text/csv'],
        maxRecordBytes: 1048576,
        rotation: { maxBytes: 16777216, maxSeconds: 60 },
      },
      // The endpoint's, from its uid: every agent of it has the same, another endpoint's agents another.
      copyToken: copyTokenOf(endpoint),
    });
    expect(copyTokenOf(endpoint)).toMatch(/^[0-9a-f]{10}$/);
    const other = { ...endpoint, metadata: { ...endpoint.metadata, uid: 'another-uid' } };
    expect(copyTokenOf(other)).not.toBe(copyTokenOf(endpoint));
    expect(agentConfig(undefined).capture.enabled).toBe(false);
  });
});

describe("the agents' shadows", () => {
  const twoModels = (shadow: Record<string, unknown>): VersionPlan => {
    const r = planFromTemplates(
      'titanic',
      'titanic',
      { models: [{ model: 'titanic' }, { model: 'candidate', shadow: { percent: 30, ...shadow } }] },
      new Map([
        ['titanic', model],
        ['candidate', { ...model, image: 'acme/titanic:2' }],
      ]),
    );
    if (!r.ok) throw new Error('unresolved');
    return r.plan;
  };

  it('lists each shadow the serving agents mirror to: its Service, its comparison with defaults filled in, and which model versions mirror', () => {
    const p = twoModels({ compare: { path: '$.predictions[*]', kind: 'numbers', relativeTolerance: 0.01 } });
    const [primary, shadow] = p.variants;
    const mirrors = [{ version: p.version, variant: 'candidate', service: shadow.instance, port: 80, percent: 30 }];
    const shadows = agentShadows('ml', p, mirrors);
    expect(shadows).toEqual([
      {
        name: 'candidate',
        url: `http://${shadow.instance}.ml.svc:80`,
        percent: 30,
        compare: { path: '$.predictions[*]', kind: 'numbers', absoluteTolerance: 0, relativeTolerance: 0.01 },
        sources: [primary.version],
      },
    ]);
    // What the agent reads, and what it makes of it.
    const text = (captureConfigMap(endpoint, undefined, shadows).object as unknown as { data: Record<string, string> })
      .data;
    const config = JSON.parse(text['config.json']) as ReturnType<typeof agentConfig>;
    expect(config.capture.enabled).toBe(false);
    expect(parseShadowsConfig(text['config.json'])).toEqual([
      {
        ...shadows[0],
        url: `http://${shadow.instance}.ml.svc`,
        timeoutMs: shadowDefaults.timeoutMs,
        maxInFlight: shadowDefaults.maxInFlight,
        reference: 'own',
      },
    ]);
  });

  it('lists a shadow that cannot take copies yet at 0% (its figures stay), none of the gateway, and none without a serving version', () => {
    const p = twoModels({ mirror: 'Agent' });
    expect(agentShadows('ml', p, [])).toMatchObject([{ name: 'candidate', percent: 0 }]);
    expect(agentShadows('ml', twoModels({}), [])).toEqual([]);
    expect(agentShadows('ml', undefined, [])).toEqual([]);
    expect(agentConfig(undefined, [])).not.toHaveProperty('shadows');
  });
});

describe("an agreement check's comparisons", () => {
  const models = new Map<string, MachineLearningModelSpec>([
    ['titanic', model],
    ['titanic-v2', { ...model, image: 'acme/titanic:2' }],
    ['small', { ...model, image: 'acme/small:1' }],
  ]);
  const version = (cfg: MachineLearningEndpointConfigSpec, compared: boolean): VersionPlan => {
    const r = planFromTemplates('titanic', 'titanic', cfg, models, compared);
    if (!r.ok) throw new Error('unresolved');
    return r.plan;
  };
  const agree = { name: 'agree', builtin: 'agreement' as const, min: 0.9, compare: { path: '$.predictions[*]' } };

  it('gives the versions of an endpoint whose rollout has one a model agent: a new version of them, rolled out once', () => {
    expect(rolloutAsksAgents({ strategy: 'Canary', analysis: { checks: [agree] } })).toBe(true);
    expect(rolloutAsksAgents({ strategy: 'Linear', analysis: { checks: [agree] } })).toBe(true);
    // BlueGreen has no step to gate (the API server refuses the check there).
    expect(rolloutAsksAgents({ analysis: { checks: [agree] } })).toBe(false);
    expect(rolloutAsksAgents({ analysis: { checks: [{ name: 'e', builtin: 'errorRate', max: 0.01 }] } })).toBe(false);
    // An errorRate or latencyP99 from the agents asks them too; from the data plane it does not.
    const fromAgents = { name: 'e', builtin: 'errorRate' as const, source: 'Agents' as const, max: 0.01 };
    expect(rolloutAsksAgents({ strategy: 'Canary', analysis: { checks: [fromAgents] } })).toBe(true);
    expect(
      rolloutAsksAgents({
        strategy: 'Linear',
        analysis: { checks: [{ ...fromAgents, builtin: 'latencyP99', max: 50 }] },
      }),
    ).toBe(true);
    expect(
      rolloutAsksAgents({ strategy: 'Canary', analysis: { checks: [{ ...fromAgents, source: 'DataPlane' }] } }),
    ).toBe(false);
    expect(rolloutAsksAgents(undefined)).toBe(false);
    const without = version(base, false);
    const compared = version(base, true);
    expect(without.variants[0].agent).toBeUndefined();
    expect(compared.variants[0].agent).toEqual({});
    expect(compared.variants[0].instance).not.toBe(without.variants[0].instance);
    expect(podSpec(compared.variants[0]).containers.map((c) => c.name)).toEqual(['server', agentContainerName]);
  });

  it("sends each new instance's copies to the serving variant of its model, else the heaviest, the serving answer the reference", () => {
    const serving = version({ models: [{ model: 'titanic', weight: 3 }, { model: 'small' }] }, false);
    const target = version({ models: [{ model: 'titanic-v2', weight: 3 }, { model: 'small' }] }, true);
    const [titanic, small] = serving.variants;
    const [v2, smallNew] = target.variants;
    const comparisons = rolloutComparisons(
      'ml',
      target,
      serving,
      [agree, { name: 'errors', builtin: 'errorRate', max: 0.01 }],
      { version: target.version, plan: '0123456789abcdef', phase: 'Progressing' },
    );
    expect(comparisons).toEqual([
      {
        name: `rollout:agree:01234567:${titanic.instance}`,
        url: `http://${titanic.instance}.ml.svc:80`,
        percent: 100,
        compare: { path: '$.predictions[*]', kind: 'labels', absoluteTolerance: 0, relativeTolerance: 0 },
        sources: [v2.version],
        reference: 'copy',
      },
      {
        name: `rollout:agree:01234567:${small.instance}`,
        url: `http://${small.instance}.ml.svc:80`,
        percent: 100,
        compare: { path: '$.predictions[*]', kind: 'labels', absoluteTolerance: 0, relativeTolerance: 0 },
        sources: [smallNew.version],
        reference: 'copy',
      },
    ]);
    // What the agents read.
    expect(parseShadowsConfig(JSON.stringify(agentConfig(undefined, comparisons))).map((c) => c.reference)).toEqual([
      'copy',
      'copy',
    ]);
  });

  it('compares only while this attempt of the rollout is under way: not without a serving version, an agreement check, or once it ended', () => {
    const serving = version(base, false);
    const target = version({ models: [{ model: 'titanic-v2' }] }, true);
    const underWay = { version: target.version, plan: '0123456789abcdef', phase: 'Progressing' };
    expect(rolloutComparisons('ml', target, undefined, [agree], underWay)).toEqual([]);
    expect(rolloutComparisons('ml', target, target, [agree], underWay)).toEqual([]);
    expect(rolloutComparisons('ml', target, serving, [], underWay)).toEqual([]);
    expect(rolloutComparisons('ml', target, serving, [agree], undefined)).toEqual([]);
    expect(rolloutComparisons('ml', target, serving, [agree], { ...underWay, version: serving.version })).toEqual([]);
    for (const phase of ['RolledBack', 'Aborted', 'Failed', 'Promoted'])
      expect(rolloutComparisons('ml', target, serving, [agree], { ...underWay, phase })).toEqual([]);
    expect(rolloutComparisons('ml', target, serving, [agree], { ...underWay, phase: 'Paused' })).toHaveLength(1);
    // Another attempt (or other steps): another name, so that its agents start from no tally.
    const [first] = rolloutComparisons('ml', target, serving, [agree], underWay);
    const [second] = rolloutComparisons('ml', target, serving, [agree], { ...underWay, plan: 'fedcba9876543210' });
    expect(first.name).not.toBe(second.name);
  });
});
