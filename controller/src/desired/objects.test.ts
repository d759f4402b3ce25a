import { describe, expect, it } from 'vitest';
import type {
  MachineLearningEndpoint,
  MachineLearningEndpointConfigSpec,
  MachineLearningModelSpec,
} from '../api/generated.ts';
import { defaultConfig, type OperatorConfig } from '../options/config.ts';
import { labels } from './labels.ts';
import * as desired from './objects.ts';
import { legacyPodDefaults, parsePodDefaults, planFromSnapshot, planFromTemplates, type VersionPlan } from './plan.ts';

const endpoint: MachineLearningEndpoint = {
  metadata: { name: 'titanic', namespace: 'ml', uid: 'uid-1', generation: 1 },
  spec: { config: 'titanic' },
};
const operatorConfig: OperatorConfig = { ...defaultConfig, fetcher: { image: 'ml-operator/controller:1' } };
const model: MachineLearningModelSpec = {
  image: 'acme/titanic:1',
  artifact: 'https://models.example.com/titanic.tar.gz',
  port: 8080,
  readinessPath: '/ping',
};
const config: MachineLearningEndpointConfigSpec = {
  models: [
    { model: 'titanic', weight: 80, instances: 2, cpus: '1', memory: '2Gi' },
    { model: 'titanic-v2', weight: 20, instances: 1, cpus: '500m', memory: '1Gi', gpus: 1 },
  ],
};
const models = new Map([
  ['titanic', model],
  ['titanic-v2', { ...model, image: 'acme/titanic:2' }],
]);

function plan(cfg = config, ms = models, name = 'titanic'): VersionPlan {
  const r = planFromTemplates(name, 'titanic', cfg, ms);
  if (!r.ok) throw new Error('unresolved');
  return r.plan;
}

describe('versions', () => {
  it('stay the same for models when only weights or instances change, so nothing is redeployed', () => {
    const before = plan();
    const after = plan({
      models: [
        { ...config.models[0], weight: 50, instances: 5 },
        { ...config.models[1], weight: 50 },
      ],
    });
    expect(after.variants.map((v) => v.instance)).toEqual(before.variants.map((v) => v.instance));
    expect(after.version).not.toBe(before.version);
  });
  it('change for a model whose image or resources change, and only for it', () => {
    const before = plan();
    const image = plan(config, new Map([...models, ['titanic', { ...model, image: 'acme/titanic:1.1' }]]));
    expect(image.variants[0].instance).not.toBe(before.variants[0].instance);
    expect(image.variants[1].instance).toBe(before.variants[1].instance);
    const cpus = plan({ models: [{ ...config.models[0], cpus: '2' }, config.models[1]] });
    expect(cpus.variants[0].version).not.toBe(before.variants[0].version);
  });
  it('differ between endpoints that share a config, so each has its own instances', () => {
    expect(plan(config, models, 'a').variants[0].instance).not.toBe(plan(config, models, 'b').variants[0].instance);
  });
  it('name instances <template>-<version>', () => {
    const p = plan();
    expect(p.instance).toBe(`titanic-${p.version}`);
    expect(p.variants[1].instance).toBe(`titanic-v2-${p.variants[1].version}`);
  });
  it('report the models that are missing', () => {
    expect(planFromTemplates('e', 'c', config, new Map([['titanic', model]]))).toEqual({
      ok: false,
      reason: 'ModelNotFound',
      missing: ['titanic-v2'],
    });
  });
  it('are rebuilt identically from the snapshots', () => {
    const p = plan();
    const ctx = { endpoint, config: operatorConfig };
    const configInstance = {
      ...(desired.configInstance(ctx, p).object as never as { metadata: never; spec: never }),
      status: desired.configInstanceStatus(p),
    };
    const modelInstances = new Map(p.variants.map((v) => [v.instance, desired.modelInstance(ctx, v).object as never]));
    // The snapshots also pin the fetcher image and the operator's pod defaults each instance runs with.
    expect(planFromSnapshot(configInstance as never, modelInstances)).toEqual({
      ...p,
      variants: p.variants.map((v) => ({
        ...v,
        fetcherImage: 'ml-operator/controller:1',
        podDefaults: desired.currentPodDefaults(operatorConfig),
      })),
    });
  });
});

describe('the Deployment of a variant', () => {
  const ctx = { endpoint, config: operatorConfig };
  const p = plan();
  const d = desired.deployment(ctx, p.variants[1], 600).object as any;
  const pod = d.spec.template.spec;
  const server = pod.containers[0];

  it('runs the fetcher image its instance was pinned to, and records it on the model snapshot', () => {
    const pinned = { ...p.variants[1], fetcherImage: 'ml-operator/controller:0.9' };
    const init = (desired.deployment(ctx, pinned, 600).object as any).spec.template.spec.initContainers[0];
    expect(init).toMatchObject({ name: 'fetch-artifact', image: 'ml-operator/controller:0.9' });
    expect(pod.initContainers[0].image).toBe('ml-operator/controller:1');
    expect(desired.modelInstance(ctx, pinned).object.metadata.annotations?.['ml-operator.dev/fetcher-image']).toBe(
      'ml-operator/controller:0.9',
    );
    expect(
      desired.modelInstance(ctx, p.variants[1]).object.metadata.annotations?.['ml-operator.dev/fetcher-image'],
    ).toBe('ml-operator/controller:1');
  });

  it("keeps a fetcher pinned from 0.1.0 on 0.1.0's command line (URI TARGET, no flags), and records that on the snapshot", () => {
    const legacy = { ...p.variants[1], fetcherImage: 'ml-operator/controller:0.1.0', fetcherFlags: false };
    const init = (desired.deployment(ctx, legacy, 600).object as any).spec.template.spec.initContainers[0];
    expect(init).toMatchObject({
      image: 'ml-operator/controller:0.1.0',
      args: ['https://models.example.com/titanic.tar.gz', '/opt/ml/model'],
    });
    const snapshot = desired.modelInstance(ctx, legacy).object;
    expect(snapshot.metadata.annotations).toMatchObject({
      'ml-operator.dev/fetcher-image': 'ml-operator/controller:0.1.0',
      'ml-operator.dev/fetcher-flags': 'none',
    });
    expect(
      desired.modelInstance(ctx, p.variants[1]).object.metadata.annotations?.['ml-operator.dev/fetcher-flags'],
    ).toBeUndefined();
    // Rebuilt from that snapshot, the plan still runs the 0.1.0 fetcher without flags.
    const configInstance = {
      ...(desired.configInstance(ctx, p).object as never as { metadata: never; spec: never }),
      status: desired.configInstanceStatus(p),
    };
    const snapshots = new Map(
      p.variants.map((v) => [v.instance, desired.modelInstance(ctx, v === p.variants[1] ? legacy : v).object as never]),
    );
    expect(planFromSnapshot(configInstance as never, snapshots)!.variants[1]).toMatchObject({
      fetcherImage: 'ml-operator/controller:0.1.0',
      fetcherFlags: false,
    });
  });

  it('keeps a removed pod serving for a preStop sleep, except on a server that runs without one (made before the hook existed)', () => {
    expect(server.lifecycle).toEqual({ preStop: { sleep: { seconds: 5 } } });
    const older = (desired.deployment(ctx, { ...p.variants[0], preStop: false }, 600).object as any).spec.template.spec
      .containers[0];
    expect(older.name).toBe('server');
    expect(older.lifecycle).toBeUndefined();
  });

  it('runs the wanted replicas with requests equal to limits', () => {
    expect(d.spec.replicas).toBe(1);
    expect(server.resources).toEqual({
      requests: { cpu: '500m', memory: '1Gi', 'nvidia.com/gpu': '1' },
      limits: { cpu: '500m', memory: '1Gi', 'nvidia.com/gpu': '1' },
    });
  });
  it('probes readiness on the model path and exposes the port as http', () => {
    expect(server.readinessProbe.httpGet).toEqual({ path: '/ping', port: 'http' });
    expect(server.ports).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    expect(server.env).toEqual(
      expect.arrayContaining([
        { name: 'MODEL_PATH', value: '/opt/ml/model' },
        { name: 'PORT', value: '8080' },
      ]),
    );
  });
  it('passes an env variable with an empty value without one: the API server stores it so, and anything else would look like drift on every reconcile', () => {
    const withEmpty = plan(
      config,
      new Map([
        ...models,
        [
          'titanic-v2',
          {
            ...model,
            env: [
              { name: 'EMPTY', value: '' },
              { name: 'SET', value: 'x' },
            ],
          },
        ],
      ]),
    );
    const env = (
      (desired.deployment(ctx, withEmpty.variants[1], 600).object as any).spec.template.spec.containers[0]
        .env as object[]
    ).slice(0, 2);
    expect(env).toEqual([{ name: 'EMPTY' }, { name: 'SET', value: 'x' }]);
  });
  it('fetches the artifact in an init container into the model volume, bounded by its size, mounted read-only in the server', () => {
    expect(pod.initContainers[0]).toMatchObject({
      image: 'ml-operator/controller:1',
      args: [`--max-bytes=${2 ** 30}`, 'https://models.example.com/titanic.tar.gz', '/opt/ml/model'],
    });
    expect(server.volumeMounts).toEqual([{ name: 'model', mountPath: '/opt/ml/model', readOnly: true }]);
    expect(pod.volumes[0]).toEqual({ name: 'model', emptyDir: { sizeLimit: '1Gi' } });
  });
  it('runs restricted: non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp', () => {
    expect(pod.securityContext).toEqual({
      runAsNonRoot: true,
      fsGroup: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    for (const c of [server, pod.initContainers[0]]) {
      expect(c.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
        runAsNonRoot: true,
      });
    }
    expect(pod.automountServiceAccountToken).toBe(false);
  });
  it('selects its pods by endpoint and model instance, and its Service does the same', () => {
    const svc = desired.service(ctx, p.variants[1]).object as any;
    expect(d.spec.selector.matchLabels).toEqual(svc.spec.selector);
    expect(svc.spec.ports).toEqual([{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]);
    expect(d.metadata.labels[labels.managedBy]).toBe('ml-operator');
  });
});

describe('storage', () => {
  const p = plan();
  it('is a claim in pvc mode', () => {
    const objects = desired.storage(
      {
        endpoint,
        config: { ...operatorConfig, storage: { ...operatorConfig.storage, mode: 'pvc', storageClassName: 'fast' } },
      },
      p.variants[0],
    );
    expect(objects.map((o) => o.object.kind)).toEqual(['PersistentVolumeClaim']);
    expect((objects[0].object.spec as any).storageClassName).toBe('fast');
  });
  const hostPathCtx = {
    endpoint,
    config: { ...operatorConfig, storage: { ...operatorConfig.storage, mode: 'hostPath' as const } },
  };
  it('is the hostPath root as a volume bound to its claim in hostPath mode, the instance a subdirectory the fetcher fills', () => {
    const objects = desired.storage(hostPathCtx, p.variants[0], ['node-b', 'node-a']);
    const [pv, pvc] = objects.map((o) => o.object as any);
    expect(pv.kind).toBe('PersistentVolume');
    expect(pv.metadata.ownerReferences).toBeUndefined();
    expect(pv.spec.hostPath).toEqual({ path: '/mnt/ml-operator', type: 'Directory' });
    expect(pv.spec.claimRef).toMatchObject({ namespace: 'ml', name: p.variants[0].instance });
    expect(pvc.spec.volumeName).toBe(pv.metadata.name);
    expect(pvc.metadata.annotations).toMatchObject({
      'ml-operator.dev/host-subpath': `ml/${p.variants[0].instance}`,
      'ml-operator.dev/nodes': 'node-a,node-b',
    });
    const pod = (desired.deployment(hostPathCtx, p.variants[0], 600).object as any).spec.template.spec;
    expect(pod.initContainers[0].args.at(-1)).toBe(`/mnt/models/ml/${p.variants[0].instance}`);
    expect(pod.initContainers[0].volumeMounts[0]).toEqual({ name: 'model', mountPath: '/mnt/models' });
    expect(pod.containers[0].volumeMounts).toEqual([
      { name: 'model', mountPath: '/opt/ml/model', readOnly: true, subPath: `ml/${p.variants[0].instance}` },
    ]);
  });
  it('names no storage class on the hostPath volume: the API server drops an empty one, which would look like drift on every reconcile', () => {
    const [pv] = desired.storage(hostPathCtx, p.variants[0]).map((o) => o.object as any);
    expect(pv.spec).not.toHaveProperty('storageClassName');
  });
  it('is removed from each node by a clean-up pod pinned there', () => {
    const [, pvc] = desired.storage(hostPathCtx, p.variants[0], ['node-a']).map((o) => o.object);
    const cleanup = desired.cleanupPod(endpoint, pvc, 'ml-operator/controller:1', 'node-a').object as any;
    expect(cleanup.spec.nodeName).toBe('node-a');
    expect(cleanup.spec.containers[0].args).toEqual(['--remove', `/mnt/models/ml/${p.variants[0].instance}`]);
    expect(cleanup.spec.volumes).toEqual([
      { name: 'models', persistentVolumeClaim: { claimName: p.variants[0].instance } },
    ]);
  });
  it('names volumes so that no two namespaces collide, and keeps a variant path under the root', () => {
    expect(desired.persistentVolumeName('a-b', 'c-0123456789')).not.toBe(
      desired.persistentVolumeName('a', 'b-c-0123456789'),
    );
    const withPath = { ...p.variants[0], variant: { ...p.variants[0].variant, path: 'team-a/models' } };
    expect(desired.hostSubPath('ml', withPath)).toBe(`team-a/models/ml/${p.variants[0].instance}`);
  });
  it('is nothing to create in emptyDir mode', () => {
    expect(desired.storage({ endpoint, config: operatorConfig }, p.variants[0])).toEqual([]);
  });
});

describe('placement and identity of model pods', () => {
  const ctx = { endpoint, config: operatorConfig };
  const base = plan().variants[0];
  const gpu = plan().variants[1];
  const withVariant = (v: typeof base, variant: Partial<typeof base.variant>) => ({
    ...v,
    variant: { ...v.variant, ...variant },
  });
  const withModel = (v: typeof base, m: Partial<MachineLearningModelSpec>) => ({ ...v, model: { ...v.model, ...m } });
  const podOf = (v: typeof base, c = ctx) => (desired.deployment(c, v, 600).object as any).spec.template.spec;
  const serverOf = (v: typeof base) => podOf(v).containers[0];
  const selector = (v: typeof base) => ({
    'ml-operator.dev/endpoint': 'titanic',
    'ml-operator.dev/model-instance': v.instance,
  });

  it('spreads a new instance over nodes (ScheduleAnyway) unless the variant gives constraints; [] spreads nothing', () => {
    expect(podOf(base).topologySpreadConstraints).toEqual([
      {
        maxSkew: 1,
        topologyKey: 'kubernetes.io/hostname',
        whenUnsatisfiable: 'ScheduleAnyway',
        labelSelector: { matchLabels: selector(base) },
      },
    ]);
    const zones = withVariant(base, {
      topologySpreadConstraints: [
        { topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'DoNotSchedule', maxSkew: 2 },
      ],
    });
    expect(podOf(zones).topologySpreadConstraints).toEqual([
      {
        maxSkew: 2,
        topologyKey: 'topology.kubernetes.io/zone',
        whenUnsatisfiable: 'DoNotSchedule',
        labelSelector: { matchLabels: selector(zones) },
      },
    ]);
    expect(podOf(withVariant(base, { topologySpreadConstraints: [] })).topologySpreadConstraints).toBeUndefined();
  });

  it("tolerates the chart's GPU taints on GPU variants only, and a variant's own tolerations replace them", () => {
    expect(podOf(gpu).tolerations).toEqual([{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
    expect(podOf(base).tolerations).toBeUndefined();
    const own = [{ key: 'dedicated', operator: 'Equal' as const, value: 'ml', effect: 'NoSchedule' as const }];
    expect(podOf(withVariant(gpu, { tolerations: own })).tolerations).toEqual(own);
    expect(podOf(withVariant(gpu, { tolerations: [] })).tolerations).toBeUndefined();
    // The API server keeps an empty value as none: written that way, the Deployment is not rewritten on every reconcile.
    expect(
      podOf(withVariant(gpu, { tolerations: [{ key: 'k', operator: 'Equal', value: '', effect: 'NoSchedule' }] }))
        .tolerations,
    ).toEqual([{ key: 'k', operator: 'Equal', effect: 'NoSchedule' }]);
    const amd = {
      ...ctx,
      config: {
        ...operatorConfig,
        models: { ...operatorConfig.models, gpuTolerations: [{ key: 'amd.com/gpu', operator: 'Exists' as const }] },
      },
    };
    expect(podOf(gpu, amd).tolerations).toEqual([{ key: 'amd.com/gpu', operator: 'Exists' }]);
  });

  it('asks for the GPUs of the resource the variant names (nvidia.com/gpu when none)', () => {
    expect(serverOf(withVariant(gpu, { gpuResource: 'amd.com/gpu' })).resources).toEqual({
      requests: { cpu: '500m', memory: '1Gi', 'amd.com/gpu': '1' },
      limits: { cpu: '500m', memory: '1Gi', 'amd.com/gpu': '1' },
    });
  });

  it('places pods by nodeSelector, affinity and priority class, as the variant states them', () => {
    const affinity = {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchExpressions: [{ key: 'gpu', operator: 'In' as const, values: ['a100'] }] }],
        },
      },
    };
    const pod = podOf(withVariant(gpu, { nodeSelector: { pool: 'gpu' }, affinity, priorityClassName: 'inference' }));
    expect(pod).toMatchObject({ nodeSelector: { pool: 'gpu' }, affinity, priorityClassName: 'inference' });
    expect(podOf(base)).not.toHaveProperty('nodeSelector');
    expect(podOf(base)).not.toHaveProperty('affinity');
    expect(podOf(base)).not.toHaveProperty('priorityClassName');
  });

  it("pulls with the chart's secrets, then the model's, each once", () => {
    const c = {
      ...ctx,
      config: { ...operatorConfig, models: { ...operatorConfig.models, imagePullSecrets: ['cluster-registry'] } },
    };
    expect(
      podOf(withModel(base, { imagePullSecrets: ['team-registry', 'cluster-registry'] }), c).imagePullSecrets,
    ).toEqual([{ name: 'cluster-registry' }, { name: 'team-registry' }]);
    expect(podOf(base)).not.toHaveProperty('imagePullSecrets');
  });

  it('runs as the model’s ServiceAccount, with its token only when asked', () => {
    expect(podOf(withModel(base, { serviceAccountName: 'reader' }))).toMatchObject({
      serviceAccountName: 'reader',
      automountServiceAccountToken: false,
    });
    expect(
      podOf(withModel(base, { serviceAccountName: 'reader', automountServiceAccountToken: true }))
        .automountServiceAccountToken,
    ).toBe(true);
    expect(podOf(base)).not.toHaveProperty('serviceAccountName');
  });

  it('gives the fetcher alone a projected token and the role of spec.artifactIdentity, with the token automounted nowhere', () => {
    const pod = podOf(
      withModel(base, {
        serviceAccountName: 'reader',
        artifactSecret: 'minio',
        artifactIdentity: { awsRoleArn: 'arn:aws:iam::123456789012:role/reader', audience: 'minio-sts' },
      }),
    );
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.volumes).toContainEqual({
      name: 'aws-identity-token',
      projected: {
        defaultMode: 420,
        sources: [{ serviceAccountToken: { audience: 'minio-sts', expirationSeconds: 3600, path: 'token' } }],
      },
    });
    const [fetcher] = pod.initContainers;
    expect(fetcher.env).toEqual([
      { name: 'AWS_ROLE_ARN', value: 'arn:aws:iam::123456789012:role/reader' },
      { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: '/var/run/secrets/ml-operator/aws/token' },
    ]);
    expect(fetcher.envFrom).toEqual([{ secretRef: { name: 'minio' } }]);
    expect(fetcher.volumeMounts).toContainEqual({
      name: 'aws-identity-token',
      mountPath: '/var/run/secrets/ml-operator/aws',
      readOnly: true,
    });
    expect(pod.containers[0].volumeMounts).not.toContainEqual(expect.objectContaining({ name: 'aws-identity-token' }));
    expect(
      podOf(withModel(base, { artifactIdentity: { awsRoleArn: 'arn:aws:iam::123456789012:role/reader' } })).volumes,
    ).toContainEqual(
      expect.objectContaining({
        projected: {
          defaultMode: 420,
          sources: [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 3600, path: 'token' } }],
        },
      }),
    );
    expect(podOf(base).initContainers[0]).not.toHaveProperty('env');
  });

  it('loosens the restricted security context only where the model says so, never the fetcher’s', () => {
    const root = withModel(base, { securityContext: { pod: { runAsUser: 0, runAsNonRoot: false } } });
    const pod = podOf(root);
    expect(pod.securityContext).toEqual({
      runAsNonRoot: false,
      runAsUser: 0,
      fsGroup: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    // The container inherits the pod's runAsNonRoot: false, else the kubelet would refuse user 0.
    expect(pod.containers[0].securityContext).toEqual({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      runAsNonRoot: false,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.initContainers[0].securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      allowPrivilegeEscalation: false,
    });
    const caps = serverOf(
      withModel(base, {
        securityContext: {
          container: { runAsUser: 1000, readOnlyRootFilesystem: true, capabilities: { add: ['SYS_PTRACE'] } },
        },
      }),
    );
    expect(caps.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      capabilities: { add: ['SYS_PTRACE'], drop: ['ALL'] },
      runAsNonRoot: true,
      runAsUser: 1000,
      readOnlyRootFilesystem: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    // Empty lists are stored as none, so they are written as none (else every reconcile would rewrite the Deployment).
    const empty = withModel(base, {
      securityContext: { pod: { supplementalGroups: [] }, container: { capabilities: { add: [], drop: [] } } },
    });
    expect(podOf(empty).securityContext).not.toHaveProperty('supplementalGroups');
    expect(serverOf(empty).securityContext.capabilities).toEqual({});
  });

  it('probes startup and liveness on the model’s port when given, and not otherwise', () => {
    const s = serverOf(
      withModel(base, {
        startupProbe: { path: '/loaded', periodSeconds: 10, failureThreshold: 60 },
        livenessProbe: { path: '/healthz', timeoutSeconds: 3 },
      }),
    );
    expect(s.startupProbe).toEqual({
      httpGet: { path: '/loaded', port: 'http' },
      periodSeconds: 10,
      failureThreshold: 60,
    });
    expect(
      serverOf(withModel(base, { livenessProbe: { path: '/healthz', initialDelaySeconds: 0 } })).livenessProbe,
    ).toEqual({ httpGet: { path: '/healthz', port: 'http' } });
    expect(s.livenessProbe).toEqual({ httpGet: { path: '/healthz', port: 'http' }, timeoutSeconds: 3 });
    expect(serverOf(base)).not.toHaveProperty('startupProbe');
    expect(serverOf(base)).not.toHaveProperty('livenessProbe');
  });

  it('gives the grace period the model sets, and a memory-backed /dev/shm of its shmSize', () => {
    const v = withModel(base, { terminationGracePeriodSeconds: 120, shmSize: '2Gi' });
    const pod = podOf(v);
    expect(pod.terminationGracePeriodSeconds).toBe(120);
    expect(pod.volumes).toContainEqual({ name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: '2Gi' } });
    expect(pod.containers[0].volumeMounts).toContainEqual({ name: 'dshm', mountPath: '/dev/shm' });
    expect(podOf(base)).not.toHaveProperty('terminationGracePeriodSeconds');
    expect(JSON.stringify(podOf(base))).not.toContain('/dev/shm');
  });

  it('keeps the pod template of an instance a release before these defaults made: no spread, no GPU toleration, no chart pull secret', () => {
    const c = {
      ...ctx,
      config: { ...operatorConfig, models: { ...operatorConfig.models, imagePullSecrets: ['cluster-registry'] } },
    };
    const legacy = { ...gpu, podDefaults: legacyPodDefaults };
    const pod = podOf(legacy, c);
    for (const field of ['topologySpreadConstraints', 'tolerations', 'imagePullSecrets'])
      expect(pod).not.toHaveProperty(field);
    // Its snapshot and Deployment stay as the earlier release wrote them: no record of defaults,
    // which a later pass reads as none.
    expect(desired.modelInstance(c, legacy).object.metadata.annotations).not.toHaveProperty(
      'ml-operator.dev/pod-defaults',
    );
    expect(desired.deployment(c, legacy, 600).object.metadata.annotations).not.toHaveProperty(
      'ml-operator.dev/pod-defaults',
    );
    // A new instance's defaults are recorded on both, so that a later pass rebuilds the same template.
    const recorded = desired.modelInstance(c, gpu).object.metadata.annotations?.['ml-operator.dev/pod-defaults'];
    expect(parsePodDefaults(recorded)).toEqual({
      spread: true,
      gpuTolerations: operatorConfig.models.gpuTolerations,
      imagePullSecrets: ['cluster-registry'],
    });
    expect(desired.deployment(c, gpu, 600).object.metadata.annotations?.['ml-operator.dev/pod-defaults']).toBe(
      recorded,
    );
  });
});

describe('versions and placement', () => {
  const variant = config.models[1];
  const versionWith = (extra: Partial<typeof variant>) =>
    plan({ models: [config.models[0], { ...variant, ...extra }] }).variants[1].version;
  const before = versionWith({});
  it.each([
    ['nodeSelector', { nodeSelector: { pool: 'gpu' } }],
    ['tolerations', { tolerations: [{ key: 'gpu', operator: 'Exists' as const }] }],
    [
      'affinity',
      {
        affinity: {
          podAntiAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'kubernetes.io/hostname' }],
          },
        },
      },
    ],
    ['topologySpreadConstraints', { topologySpreadConstraints: [] }],
    ['priorityClassName', { priorityClassName: 'inference' }],
    ['gpuResource', { gpuResource: 'amd.com/gpu' }],
  ])('change with %s, like resources', (_, extra) => {
    expect(versionWith(extra)).not.toBe(before);
  });
  it('change with the model’s pod settings', () => {
    const v = (m: Partial<MachineLearningModelSpec>) =>
      plan(config, new Map([...models, ['titanic-v2', { ...model, image: 'acme/titanic:2', ...m }]])).variants[1]
        .version;
    expect(v({ imagePullSecrets: ['r'] })).not.toBe(before);
    expect(v({ shmSize: '1Gi' })).not.toBe(before);
    expect(v({ startupProbe: { path: '/' } })).not.toBe(before);
  });
});

describe('the PodDisruptionBudget of a variant', () => {
  const ctx = { endpoint, config: operatorConfig };
  const p = plan();
  it('lets a drain take one pod at a time of a variant with more than one replica, owned by the endpoint', () => {
    const pdb = desired.disruptionBudget(ctx, p.variants[0])!.object as any;
    expect(pdb).toMatchObject({
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: p.variants[0].instance, namespace: 'ml' },
    });
    expect(pdb.metadata.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'MachineLearningEndpoint', uid: 'uid-1', controller: true }),
    ]);
    expect(pdb.spec).toEqual({
      maxUnavailable: 1,
      selector: { matchLabels: (desired.deployment(ctx, p.variants[0], 600).object as any).spec.selector.matchLabels },
    });
    expect(desired.workloads(ctx, p.variants[0], 600).map((d) => d.object.kind)).toContain('PodDisruptionBudget');
  });
  it('is none for one replica (or none), and follows the replicas a rollout gives', () => {
    expect(desired.disruptionBudget(ctx, p.variants[1])).toBeUndefined();
    expect(desired.disruptionBudget(ctx, p.variants[0], 1)).toBeUndefined();
    expect(desired.disruptionBudget(ctx, p.variants[0], 0)).toBeUndefined();
    expect(desired.disruptionBudget(ctx, p.variants[1], 3)).toBeDefined();
  });
  it('is there for an autoscaled variant that may grow past one replica', () => {
    const scaled = {
      ...p.variants[1],
      variant: {
        ...p.variants[1].variant,
        instances: undefined,
        autoscaling: { minInstances: 1, maxInstances: 4, target: { cpuUtilization: 70 } },
      },
    };
    expect(desired.disruptionBudget(ctx, scaled, 1)).toBeDefined();
    expect(
      desired.disruptionBudget(
        ctx,
        { ...scaled, variant: { ...scaled.variant, autoscaling: { ...scaled.variant.autoscaling, maxInstances: 1 } } },
        1,
      ),
    ).toBeUndefined();
  });
});
