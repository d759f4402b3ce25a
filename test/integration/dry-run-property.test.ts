// Property: every spec the CRD schemas admit yields objects the API server accepts. fast-check
// generates models, endpoint configs and endpoints across what the schemas allow (names at their
// length limits, odd quantities, unicode, optional fields present and absent, every strategy,
// shadows, autoscaling) with an operator config (each routing provider and mirroring mode, TLS,
// storage mode, autoscaling engine). Each sample is applied with a server-side dry run; for those the
// server admits, the controller's own pure functions (rollout/decide, reconcile/wanted, rollout/status)
// compute everything it would write for a first version and for a rollout to the next config, and
// each object is applied with a server-side dry run too, as the controller applies it (server-side
// apply, strict field validation). No object may be rejected, and each must be stored as written
// (as desired/compare.ts judges it: else the controller would write it again on every reconcile).
// Each run draws a new seed (printed) and tries 300 samples; a failure fails the run, and is replayed
// and shrunk to a minimal spec for the message (ci/property.ts).
//
// Replay or widen a run: ML_OPERATOR_PROPERTY_SEED=<seed> (printed), ML_OPERATOR_PROPERTY_RUNS=<n>
// (n samples instead of 300).
// The dry runs go as the cluster admin: what the controller's ServiceAccount may write is the RBAC
// audit's business (test/integration/rbac-audit.ts), not this test's.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { log } from '../../ci/log.ts';
import { checkProperty, propertySeed } from '../../ci/property.ts';
import type {
  MachineLearningEndpoint,
  MachineLearningEndpointConfig,
  MachineLearningEndpointConfigSpec,
  MachineLearningEndpointConfigVariant,
  MachineLearningEndpointSpec,
  MachineLearningModel,
  MachineLearningModelSpec,
  AnalysisCheck,
  EnvVar,
} from '../../controller/src/api/generated.ts';
import { contains, upToDate } from '../../controller/src/desired/compare.ts';
import {
  cleanupPod,
  configInstanceStatus,
  type Desired,
  type EndpointContext,
} from '../../controller/src/desired/objects.ts';
import type { VersionPlan } from '../../controller/src/desired/plan.ts';
import { KubeClient, KubeError } from '../../controller/src/kube/client.ts';
import { resources, type KubeObject, type Resource } from '../../controller/src/kube/resources.ts';
import { defaultConfig, type OperatorConfig } from '../../controller/src/options/config.ts';
import { defaults, type LiveRoute } from '../../controller/src/rollout/decide.ts';
import { desiredState, type WantedLive } from '../../controller/src/reconcile/desired-state.ts';
import type { Templates } from '../../controller/src/reconcile/target.ts';
import { routingProvider } from '../../controller/src/routing/providers.ts';
import { versionWeights } from '../../controller/src/desired/route.ts';
import { adminConfig, createNamespace, deleteNamespace } from './kube.ts';

// ---------------------------------------------------------------------------------------------
// Arbitraries: what the schemas admit (schemas/*.schema.json), named by what they generate.
// ---------------------------------------------------------------------------------------------

const lower = 'abcdefghijklmnopqrstuvwxyz';
const digits = '0123456789';
const hex = '0123456789abcdef';
const charOf = (chars: string) => fc.constantFrom(...chars);
/** Characters the schemas' `[^\s]` admits: RE2's \s (the API server's patterns) is ASCII whitespace only. */
const unusualChars = ['\v', '\u00a0', '\u2003', '\u0085', '\u3000', '\u200b', 'é', 'ß', '模', '🚀', 'Ω'];
const nonSpaceChar = fc.oneof(
  { weight: 12, arbitrary: charOf(`${lower}${digits}ABCXYZ./:-_@+~%=,`) },
  { weight: 1, arbitrary: fc.constantFrom(...unusualChars) },
);
const nonSpaceString = (minLength: number, maxLength: number) =>
  fc.string({ unit: nonSpaceChar, minLength, maxLength });
/** Any text: unicode, with control characters now and then. */
const anyText = (maxLength: number) => fc.string({ unit: 'grapheme', maxLength });

/** A DNS-1123 label of 1..max characters, short ones mostly, `max` long often; `letterFirst` for names that must start with a letter. */
function dnsLabel(max = 63, letterFirst = false): fc.Arbitrary<string> {
  const rest = (minLength: number, maxLength: number) =>
    fc.string({ unit: charOf(`${lower}${digits}-`), minLength, maxLength });
  return fc
    .tuple(
      charOf(letterFirst ? lower : lower + digits),
      fc.oneof(
        { weight: 4, arbitrary: rest(0, Math.min(max - 1, 11)) },
        { weight: 2, arbitrary: rest(0, max - 1) },
        { weight: 2, arbitrary: rest(max - 1, max - 1) },
      ),
    )
    .map(([first, more]) => `${first}${more}`.replace(/-+$/, (m) => 'z'.repeat(m.length)));
}

/** A DNS-1123 subdomain (labels joined by dots) of at most `max` characters. */
function dnsSubdomain(max: number): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: dnsLabel(Math.min(max, 63)) },
    {
      weight: 2,
      arbitrary: fc
        .array(dnsLabel(Math.min(max, 63)), { minLength: 2, maxLength: 6 })
        .map((labels) => fitLabels(labels, max)),
    },
  );
}
/** Joins labels with dots, dropping those past `max` characters in all. */
function fitLabels(labels: string[], max: number): string {
  const kept: string[] = [];
  for (const l of labels) if ([...kept, l].join('.').length <= max) kept.push(l);
  return kept.join('.');
}

const modelName = dnsLabel(63, true);
const endpointName = dnsLabel(63, true);
const configName = dnsSubdomain(63);
const hostName = fc.array(dnsLabel(63), { minLength: 1, maxLength: 6 }).map((labels) => fitLabels(labels, 253));
const hexVersion = fc.string({ unit: charOf(hex), minLength: 1, maxLength: 63 });

/**
 * A Kubernetes quantity as the schema writes it (`2`, `500m`, `1.5Gi`, `2e3`, `0.1`, `.5`, `1.`,
 * `1e+99`...) or a JSON integer, below the schema's bound of 8Ei.
 */
const quantity: fc.Arbitrary<string | number> = (() => {
  const multiplier: Record<string, number> = {
    '': 1,
    n: 1e-9,
    u: 1e-6,
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    P: 1e15,
    E: 1e18,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    Pi: 2 ** 50,
    Ei: 2 ** 60,
  };
  const valueOf = (mantissa: string, suffix: string) =>
    Number(mantissa) * (multiplier[suffix] ?? 10 ** Number(suffix.slice(1)));
  const mantissa = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 4096 }).map(String) },
    { weight: 1, arbitrary: fc.string({ unit: charOf(digits), minLength: 1, maxLength: 18 }).map((d) => `1${d}`) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.integer({ min: 0, max: 99 }), fc.string({ unit: charOf(digits), maxLength: 6 }))
        .map(([a, b]) => `${a}.${b}${a === 0 ? '1' : ''}`),
    },
    { weight: 1, arbitrary: fc.string({ unit: charOf(digits), minLength: 1, maxLength: 6 }).map((d) => `.${d}1`) },
  );
  const exponent = fc
    .tuple(charOf('eE'), fc.constantFrom('', '+'), fc.integer({ min: 0, max: 99 }))
    .map(([e, sign, n]) => `${e}${sign}${n}`);
  const suffix = fc.oneof(
    { weight: 3, arbitrary: fc.constant('') },
    { weight: 3, arbitrary: fc.constantFrom('Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei') },
    { weight: 3, arbitrary: fc.constantFrom('n', 'u', 'm', 'k', 'M', 'G', 'T', 'P', 'E') },
    { weight: 2, arbitrary: exponent },
  );
  const written = fc
    .tuple(mantissa, suffix)
    .filter(([m, s]) => valueOf(m, s) < 2 ** 63 * 0.999)
    .map(([m, s]) => `${m}${s}`);
  const usual = fc.constantFrom(
    '1',
    '2',
    '100m',
    '500m',
    '0.1',
    '1.5',
    '2e3',
    '1E3',
    '64Mi',
    '512Mi',
    '1Gi',
    '1.5Gi',
    '10Gi',
    '1e9',
    '250M',
    '7Ei',
    '9E',
    '9223372036854775806',
  );
  return fc.oneof(
    { weight: 3, arbitrary: usual },
    { weight: 3, arbitrary: written },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 ** 31 - 1 }) },
  );
})();

const image = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        dnsSubdomain(40),
        dnsLabel(30),
        fc.string({ unit: charOf(`${lower}${digits}.-_`), minLength: 1, maxLength: 20 }),
      )
      .map(([r, n, t]) => `${r}/${n}:${t}`),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(dnsLabel(20), fc.string({ unit: charOf(hex), minLength: 64, maxLength: 64 }))
      .map(([n, d]) => `${n}@sha256:${d}`),
  },
  { weight: 2, arbitrary: nonSpaceString(1, 512) },
);

const artifact = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('https', 'http', 's3', 'gs', 'azure'),
      nonSpaceString(1, 60).map((s) => s.replaceAll('/', '_')),
      fc.option(nonSpaceString(0, 200), { nil: undefined }),
    )
    .map(([scheme, host, path]) => `${scheme}://${host}${path === undefined ? '' : `/${path}`}`),
  fc.tuple(dnsSubdomain(253), nonSpaceString(1, 200)).map(([claim, path]) => `pvc://${claim}/${path}`),
);

const envName = fc
  .tuple(charOf(`${lower}ABCXYZ_`), fc.string({ unit: charOf(`${lower}${digits}ABCXYZ_`), maxLength: 255 }))
  .map(([a, b]) => `${a}${b}`)
  .filter((n) => n !== 'MODEL_PATH' && n !== 'PORT');
/** A key of a Secret or ConfigMap as the schema allows it: dots and all, but not '.', '..' nor '..' first. */
const objectKey = fc.oneof(
  fc
    .string({ unit: charOf(`${lower}${digits}ABC-._`), minLength: 1, maxLength: 253 })
    .filter((k) => k !== '.' && !k.startsWith('..')),
  fc.constantFrom('.hidden', 'a..b', 'config.json', '-', '_'),
);
const keyRef = fc.record({ name: dnsSubdomain(253), key: objectKey });
const envVar: fc.Arbitrary<EnvVar> = fc.oneof(
  fc.record({ name: envName, value: anyText(40) }, { requiredKeys: ['name'] }),
  fc.record({
    name: envName,
    valueFrom: fc.oneof(
      keyRef.map((secretKeyRef) => ({ secretKeyRef })),
      keyRef.map((configMapKeyRef) => ({ configMapKeyRef })),
    ),
  }),
);

/** `arbitrary` or undefined, one time in `every` undefined. */
const sometimesOf = <T>(arbitrary: fc.Arbitrary<T>, every: number) =>
  fc.oneof({ weight: every - 1, arbitrary }, { weight: 1, arbitrary: fc.constant(undefined) });
/** The name part of a label key: at most 63, alphanumeric at both ends. */
const labelName = fc
  .tuple(
    charOf(`${lower}${digits}ABZ`),
    fc.string({ unit: charOf(`${lower}${digits}AZ-_.`), maxLength: 61 }),
    charOf(`${lower}${digits}Z`),
  )
  .map(([a, middle, z]) => (middle.length ? `${a}${middle}${z}` : a));
const labelKey = fc
  .tuple(sometimesOf(dnsSubdomain(253), 2), labelName)
  .map(([prefix, name]) => (prefix ? `${prefix}/${name}` : name));
const labelValue = fc.oneof(fc.constant(''), labelName);
const toleration = fc.oneof(
  fc.record(
    {
      key: labelKey,
      operator: fc.constant('Equal' as const),
      value: labelValue,
      effect: fc.constantFrom('NoSchedule' as const, 'PreferNoSchedule' as const),
    },
    { requiredKeys: ['key'] },
  ),
  fc.record(
    {
      key: labelKey,
      operator: fc.constant('Exists' as const),
      effect: fc.constant('NoExecute' as const),
      tolerationSeconds: fc.integer({ min: 0, max: 10_000_000 }),
    },
    { requiredKeys: ['operator', 'effect'] },
  ),
);
const spreadConstraint = fc.record(
  {
    maxSkew: fc.integer({ min: 1, max: 1000 }),
    topologyKey: labelKey,
    whenUnsatisfiable: fc.constantFrom('ScheduleAnyway' as const, 'DoNotSchedule' as const),
  },
  { requiredKeys: ['topologyKey'] },
);
const gpuResource = fc.oneof(
  fc.constantFrom('nvidia.com/gpu', 'amd.com/gpu', 'gpu.intel.com/i915'),
  fc
    .tuple(
      dnsSubdomain(200).filter((d) => d.includes('.') && !d.endsWith('kubernetes.io') && !d.startsWith('requests.')),
      labelName,
    )
    .map(([d, n]) => `${d}/${n}`),
);
const id = fc.integer({ min: 0, max: 2147483647 });
const securityContext = fc
  .record(
    {
      pod: fc.record(
        {
          runAsUser: id,
          runAsGroup: id,
          runAsNonRoot: fc.boolean(),
          fsGroup: id,
          supplementalGroups: fc.array(id, { maxLength: 32 }),
        },
        { requiredKeys: [] },
      ),
      container: fc.record(
        {
          runAsUser: id,
          runAsGroup: id,
          runAsNonRoot: fc.boolean(),
          allowPrivilegeEscalation: fc.boolean(),
          readOnlyRootFilesystem: fc.boolean(),
        },
        { requiredKeys: [] },
      ),
    },
    { requiredKeys: [] },
  )
  // Root must say so (runAsNonRoot: false), as the schema asks.
  .map((c) =>
    Object.fromEntries(
      Object.entries(c).map(([k, v]) => [k, v && v.runAsUser === 0 ? { ...v, runAsNonRoot: false } : v]),
    ),
  );
const probe = fc.record(
  {
    path: nonSpaceString(0, 60).map((p) => `/${p}`),
    initialDelaySeconds: fc.integer({ min: 0, max: 3600 }),
    periodSeconds: fc.integer({ min: 1, max: 3600 }),
    timeoutSeconds: fc.integer({ min: 1, max: 3600 }),
    failureThreshold: fc.integer({ min: 1, max: 10000 }),
  },
  { requiredKeys: ['path'] },
);

const modelSpec: fc.Arbitrary<MachineLearningModelSpec> = fc
  .record(
    {
      image,
      artifact,
      artifactSha256: fc.string({ unit: charOf('0123456789abcdefABCDEF'), minLength: 64, maxLength: 64 }),
      artifactSecret: dnsSubdomain(253),
      artifactIdentity: fc.record(
        {
          awsRoleArn: fc
            .tuple(
              fc.constantFrom('aws', 'aws-cn', 'minio'),
              fc.string({ unit: charOf(digits), maxLength: 12 }),
              nonSpaceString(1, 64),
            )
            .map(([partition, account, role]) => `arn:${partition}:iam::${account}:role/${role}`),
          audience: nonSpaceString(1, 256),
        },
        { requiredKeys: ['awsRoleArn'] },
      ),
      command: fc.array(anyText(30), { maxLength: 4 }),
      args: fc.array(anyText(30), { maxLength: 6 }),
      env: fc.uniqueArray(envVar, { selector: (e) => e.name, maxLength: 6 }),
      port: fc.integer({ min: 1, max: 65535 }),
      readinessPath: fc
        .tuple(nonSpaceString(0, 60), fc.boolean())
        .map(([p, long]) => `/${long ? p.padEnd(1023, 'x') : p}`),
      imagePullSecrets: fc.uniqueArray(dnsSubdomain(253), { maxLength: 16 }),
      serviceAccountName: dnsSubdomain(253),
      automountServiceAccountToken: fc.boolean(),
      securityContext,
      startupProbe: probe,
      livenessProbe: probe,
      terminationGracePeriodSeconds: fc.integer({ min: 6, max: 86400 }),
      shmSize: quantity,
    },
    { requiredKeys: ['image'] },
  )
  // The digest checks an artifact: without one there is nothing to check.
  .map((m) => (m.artifact === undefined ? { ...m, artifactSha256: undefined } : m));

const autoscaling = fc
  .record(
    {
      bounds: fc.tuple(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 1, max: 1000 })),
      target: fc.oneof(
        fc.record({ cpuUtilization: fc.integer({ min: 1, max: 100 }) }),
        fc.record({ requestsPerSecond: fc.integer({ min: 1, max: 1_000_000 }) }),
      ),
      scaleDownStabilizationSeconds: fc.integer({ min: 0, max: 3600 }),
    },
    { requiredKeys: ['bounds', 'target'] },
  )
  .map(({ bounds: [a, b], target, scaleDownStabilizationSeconds }) => {
    // Scaling to zero needs a requests-per-second target; the bounds in order.
    const min = 'cpuUtilization' in target ? Math.max(1, Math.min(a, b)) : Math.min(a, b);
    return {
      minInstances: min,
      maxInstances: Math.max(a, b, 1),
      target,
      ...(scaleDownStabilizationSeconds === undefined ? {} : { scaleDownStabilizationSeconds }),
    };
  });

const hostSubPath = fc
  .array(
    fc
      .tuple(charOf(`${lower}${digits}ABC_`), fc.string({ unit: charOf(`${lower}${digits}._-`), maxLength: 60 }))
      .map(([a, b]) => `${a}${b}`),
    { minLength: 1, maxLength: 8 },
  )
  .map((s) => s.join('/').slice(0, 512).replace(/\/+$/, ''));

/** `arbitrary` one time in `every`, else undefined. */
const sometimes = <T>(arbitrary: fc.Arbitrary<T>, every: number) =>
  fc.oneof({ weight: every - 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary });

/** A shadow test; never one that promotes, which needs a config with one serving variant exactly. */
const shadowTest = fc.record(
  {
    durationSeconds: fc.integer({ min: 60, max: 2_592_000 }),
    minCompared: fc.integer({ min: 1, max: 1_000_000_000 }),
    criteria: fc.record(
      {
        agreement: fc.double({ min: 0, max: 1, noNaN: true }),
        errorRateDelta: fc.double({ min: -1, max: 1, noNaN: true }),
        latencyP99Ratio: fc.double({ min: 0.01, max: 1000, noNaN: true }),
      },
      { requiredKeys: ['agreement'] },
    ),
    onPass: fc.constant('Report' as const),
    onFail: fc.constantFrom('Stop' as const, 'Report' as const),
  },
  { requiredKeys: ['criteria'] },
);

/** A variant, but for the model it names (the sample picks one). */
const variant: fc.Arbitrary<Omit<MachineLearningEndpointConfigVariant, 'model'>> = fc
  .record(
    {
      weight: fc.integer({ min: 0, max: 1000 }),
      instances: fc.integer({ min: 1, max: 1000 }),
      shadow: sometimes(
        fc.record(
          { percent: fc.integer({ min: 1, max: 100 }), test: sometimes(shadowTest, 3) },
          { requiredKeys: ['percent'] },
        ),
        5,
      ),
      autoscaling: sometimes(autoscaling, 6),
      cpus: quantity,
      memory: quantity,
      gpus: fc.integer({ min: 0, max: 64 }),
      size: quantity,
      path: hostSubPath,
      nodeSelector: sometimes(fc.dictionary(labelKey, labelValue, { maxKeys: 32 }), 3),
      tolerations: sometimes(fc.array(toleration, { maxLength: 32 }), 3),
      topologySpreadConstraints: sometimes(fc.array(spreadConstraint, { maxLength: 8 }), 3),
      priorityClassName: dnsSubdomain(253),
      gpuResource: sometimes(gpuResource, 3),
    },
    { requiredKeys: [] },
  )
  .map((v) => {
    // A shadow has no weight; autoscaling replaces instances.
    const { weight, instances, shadow, autoscaling: scaling, ...rest } = v;
    // A CPU target is a share of the CPU request: without one the controller refuses the version (and creates nothing to test).
    const cpus =
      scaling !== undefined && 'cpuUtilization' in scaling.target && rest.cpus === undefined ? '500m' : rest.cpus;
    return {
      ...rest,
      ...(cpus === undefined ? {} : { cpus }),
      ...(shadow ? { shadow } : weight === undefined ? {} : { weight }),
      ...(scaling ? { autoscaling: scaling } : instances === undefined ? {} : { instances }),
    };
  });

/** The variants of a config, each naming a model by its index in the sample's models; often one for each of ten. */
const configDraft = fc.oneof(
  fc.uniqueArray(fc.tuple(fc.nat(9), variant), { selector: ([i]) => i, minLength: 1, maxLength: 10 }),
  fc.array(variant, { minLength: 10, maxLength: 10 }).map((vs) => vs.map((v, i) => [i, v] as const)),
);

/**
 * A config of the models the draft names (indexes wrap around the models there are), as the schema
 * wants it: at least one variant and at most 8 take traffic (the others become shadows).
 */
function configOf(
  draft: readonly (readonly [number, Omit<MachineLearningEndpointConfigVariant, 'model'>])[],
  models: string[],
): MachineLearningEndpointConfigSpec {
  const byModel = new Map<string, MachineLearningEndpointConfigVariant>();
  for (const [i, v] of draft)
    if (!byModel.has(models[i % models.length]))
      byModel.set(models[i % models.length], { model: models[i % models.length], ...v });
  let primaries = 0;
  const variants = [...byModel.values()].map((v) => {
    if (v.shadow || ++primaries <= 8) return v;
    const { weight: _, ...shadow } = v;
    return { ...shadow, shadow: { percent: 10 } };
  });
  if (variants.some((v) => !v.shadow && (v.weight === undefined || v.weight > 0))) return { models: variants };
  // A variant weighted 0, or a shadow when all are, takes the traffic.
  const i = Math.max(
    0,
    variants.findIndex((v) => !v.shadow),
  );
  const { shadow: _, ...primary } = variants[i];
  variants[i] = { ...primary, weight: Math.max(1, primary.weight ?? 1) };
  return { models: variants };
}

const analysisCheck: fc.Arbitrary<AnalysisCheck> = fc
  .record(
    {
      name: dnsLabel(63),
      measure: fc.oneof(
        fc
          .tuple(fc.constantFrom('errorRate', 'latencyP99'), fc.constantFrom(undefined, 'DataPlane', 'Agents'))
          .map(([builtin, source]) => ({ builtin, ...(source ? { source } : {}) })),
        anyText(300).map((query) => ({ query })),
      ),
      max: fc.double({ noNaN: true, noDefaultInfinity: true }),
      min: fc.double({ noNaN: true, noDefaultInfinity: true }),
      intervalSeconds: fc.integer({ min: 5, max: 3600 }),
      failureLimit: fc.integer({ min: 0, max: 100 }),
      inconclusiveLimit: fc.integer({ min: 0, max: 100 }),
    },
    { requiredKeys: ['name', 'measure'] },
  )
  .map(({ measure, ...c }) => ({
    ...c,
    ...measure,
    ...(c.max === undefined && c.min === undefined ? { max: 1 } : {}),
  }));

const rollout = fc
  .record(
    {
      strategy: fc.constantFrom('BlueGreen', 'Canary', 'Linear'),
      canary: fc.record(
        { percent: fc.integer({ min: 1, max: 99 }), bakeSeconds: fc.integer({ min: 0, max: 86400 }) },
        { requiredKeys: [] },
      ),
      linear: fc.record(
        { stepPercent: fc.integer({ min: 1, max: 99 }), intervalSeconds: fc.integer({ min: 0, max: 86400 }) },
        { requiredKeys: [] },
      ),
      analysis: fc.record(
        { checks: fc.uniqueArray(analysisCheck, { selector: (c) => c.name, maxLength: 10 }) },
        { requiredKeys: [] },
      ),
      approval: fc.record({ beforePromotion: fc.boolean() }, { requiredKeys: [] }),
      approvedVersion: hexVersion,
      abortVersion: hexVersion,
      smokeTest: fc.record(
        { configMap: dnsSubdomain(253), timeoutSeconds: fc.integer({ min: 1, max: 600 }) },
        { requiredKeys: ['configMap'] },
      ),
      dryRun: fc.boolean(),
      progressDeadlineSeconds: fc.integer({ min: 10, max: 86400 }),
      drainSeconds: fc.integer({ min: 0, max: 3600 }),
      attempt: fc.integer({ min: 0, max: 2147483647 }),
    },
    { requiredKeys: [] },
  )
  // Canary and Linear settings go with their strategy (the strategy defaults to BlueGreen).
  .map((r) => ({
    ...r,
    canary: r.strategy === 'Canary' ? r.canary : undefined,
    linear: r.strategy === 'Linear' ? r.linear : undefined,
  }));

/** An endpoint's spec, but for the config it names (the sample's). */
const endpointDraft: fc.Arbitrary<Omit<MachineLearningEndpointSpec, 'config'>> = fc.record(
  {
    host: hostName,
    rollout,
    // A pinned version that was never kept serves nothing: rarely worth a sample.
    serveVersion: sometimes(hexVersion, 20),
    historyLimit: fc.integer({ min: 0, max: 50 }),
  },
  { requiredKeys: ['serveVersion'] },
);

/** The operator's config as the chart renders it: each routing provider and mirroring mode, TLS, storage mode, autoscaling engine. */
const operatorConfig: fc.Arbitrary<OperatorConfig> = fc
  .record({
    routing: fc.oneof(
      fc.constant({ provider: 'istio' as const, gatewayAPI: defaultConfig.routing.gatewayAPI }),
      fc.record({
        provider: fc.constant('gatewayAPI' as const),
        gatewayAPI: fc.record({
          gatewayClassName: fc.constantFrom('traefik', 'eg'),
          sharedGateway: fc.oneof(
            fc.constant({ name: '', namespace: '', sectionName: '' }),
            fc.record({
              name: fc.constant('ml-gateway'),
              namespace: fc.constantFrom('', 'gateway-system'),
              sectionName: fc.constantFrom('', 'http'),
            }),
          ),
          mirroring: fc.constantFrom('RequestMirror' as const, 'TraefikService' as const, 'None' as const),
        }),
      }),
    ),
    tls: fc.constantFrom('off', 'on', 'redirect'),
    storage: fc.record({
      mode: fc.constantFrom('emptyDir' as const, 'pvc' as const, 'hostPath' as const),
      storageClassName: fc.constantFrom('', 'standard'),
      defaultSize: fc.constantFrom('1Gi', '500Mi', '2G'),
    }),
    // KEDA with a Prometheus that knows the data plane scales every variant the schema allows; the others refuse some.
    engine: fc.constantFrom('keda' as const, 'keda' as const, 'hpa' as const),
    prometheus: fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          url: fc.constant('http://prometheus.monitoring:9090'),
          dataPlane: fc.constantFrom('istio' as const, 'traefik' as const),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          url: fc.constantFrom('', 'http://prometheus.monitoring:9090'),
          dataPlane: fc.constant('' as const),
        }),
      },
    ),
    gatewayPort: fc.constantFrom(80, 8080),
  })
  .map(({ routing, tls, storage, engine, prometheus, gatewayPort }) => ({
    ...defaultConfig,
    gateway: {
      ...defaultConfig.gateway,
      port: gatewayPort,
      tls: {
        enabled: tls !== 'off',
        port: 443,
        credentialName: tls === 'off' ? '' : 'models-tls',
        httpsRedirect: tls === 'redirect',
      },
    },
    storage: { ...defaultConfig.storage, ...storage },
    fetcher: { image: 'ghcr.io/ml-operator/controller:0.0.0' },
    prometheus,
    routing,
    autoscaling: { engine },
  }));

interface Sample {
  models: { name: string; spec: MachineLearningModelSpec }[];
  configName: string;
  /** The config the endpoint serves first, then the one it rolls out to. */
  config: MachineLearningEndpointConfigSpec;
  nextConfig: MachineLearningEndpointConfigSpec;
  endpointName: string;
  endpoint: MachineLearningEndpointSpec;
  operator: OperatorConfig;
}

const modelsOf = (minLength: number, maxLength: number) =>
  fc.uniqueArray(fc.record({ name: modelName, spec: modelSpec }), { selector: (m) => m.name, minLength, maxLength });

// Built with map, never chain, so that fast-check shrinks each part of a failing sample on its own.
const sample: fc.Arbitrary<Sample> = fc
  .record({
    models: fc.oneof(
      { weight: 4, arbitrary: modelsOf(1, 4) },
      // As many as a config may name.
      { weight: 1, arbitrary: modelsOf(8, 10) },
    ),
    configName,
    config: configDraft,
    nextConfig: configDraft,
    endpointName,
    endpoint: endpointDraft,
    operator: operatorConfig,
  })
  .map((d) => {
    const names = d.models.map((m) => m.name);
    return {
      ...d,
      config: configOf(d.config, names),
      nextConfig: configOf(d.nextConfig, names),
      endpoint: { config: d.configName, ...d.endpoint },
    };
  });

// ---------------------------------------------------------------------------------------------
// What the controller would write for a sample: its own pure functions, round after round.
// ---------------------------------------------------------------------------------------------

/** Nodes whose names a hostPath claim records (one at the length limit of a node name). */
const hostNodes = ['kwok-node-0', `${'n'.repeat(62)}.${'o'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(61)}`];

interface Written {
  resource: Resource;
  object: KubeObject;
  /** Written to the /status subresource (of a stand-in object: status needs one that exists). */
  status?: boolean;
}

/**
 * Everything the controller writes for the endpoint: its first version, then a rollout to the next
 * config by the endpoint's strategy, each round decided as the reconciler decides it, with every
 * Deployment Available, the clock moved to each step's end, and passing smoke tests.
 */
function controllerWrites(
  endpoint: MachineLearningEndpoint & KubeObject,
  config: MachineLearningEndpointConfig,
  nextConfig: MachineLearningEndpointConfig,
  models: MachineLearningModel[],
  operator: OperatorConfig,
): { writes: Written[]; refused: string[] } {
  const ctx: EndpointContext = { endpoint, config: operator };
  const provider = routingProvider(operator);
  const name = endpoint.metadata.name;
  const specs = new Map(models.map((m) => [m.metadata.name!, m.spec]));
  const deadlineSeconds = endpoint.spec.rollout?.progressDeadlineSeconds ?? defaults.progressDeadlineSeconds;
  const live: WantedLive = {
    startReplicas: (v) => v.variant.autoscaling!.minInstances,
    hostNodes: () => (operator.storage.mode === 'hostPath' ? hostNodes : []),
    loaded: () => true,
    auxiliaryMissing: false,
  };
  const writes = new Map<string, Written>();
  const write = (w: Written) =>
    writes.set(
      `${w.status ? 'status:' : ''}${w.resource.plural}/${w.object.metadata.name}/${JSON.stringify(w.object).length}:${w.object.metadata.annotations?.['ml-operator.dev/desired-hash'] ?? JSON.stringify(w.object)}`,
      w,
    );
  const refused: string[] = [];
  const snapshots = new Map<string, VersionPlan>();
  let status: MachineLearningEndpoint['status'] = {};
  let route: LiveRoute | undefined;
  let liveRoute: KubeObject | undefined;
  let now = new Date('2026-01-01T00:00:00Z');

  for (const c of [config, nextConfig]) {
    // The templates as the reconciler reads them; desiredState resolves the version from them (and
    // spec.serveVersion pins a kept one, from the snapshots written so far).
    const templates: Templates = {
      config: { spec: c.spec },
      models: specs,
      kept: (version) => snapshots.get(version),
      promotionMarked: () => false,
      pin: (plan) => plan,
    };
    let refusal: string | undefined;
    for (let round = 0; round < 6; round++) {
      const rollout = {
        generation: endpoint.metadata.generation ?? 1,
        spec: endpoint.spec,
        status: status ?? {},
        route,
        workload: (_: unknown, replicas: number) => ({ ready: replicas, available: true }),
        smokeTest: { passed: true, message: '1 request answered as expected' },
        now,
      };
      const routeStatus = liveRoute ? provider.observe(ctx, liveRoute).status : undefined;
      const state = desiredState({
        ctx: { ...ctx, endpoint: { ...endpoint, status } },
        provider,
        templates,
        rollout,
        deadlineSeconds,
        live,
        routed: route !== undefined,
        hostBlocked: false,
        observed: { readyOf: () => 1, routeStatus, mirroringUnavailable: provider.dataPlane.mirroringUnavailable },
      });
      const { decision } = state;
      const { target, problem } = state.resolved;
      if (problem?.reason === 'WaitingForTemplates') throw new Error(`the sample lacks a template: ${problem.message}`);
      if (problem && refusal === undefined) refused.push((refusal = problem.reason));
      for (const d of decision.deploy) snapshots.set(d.plan.version, d.plan);
      const wanted = new Map(state.workloads.map((d) => [`${d.resource.plural}/${d.object.metadata.name}`, d]));
      const routing = state.routing;
      for (const d of [...wanted.values(), ...routing]) write(asWritten(d));
      for (const claim of [...wanted.values()].filter(
        (d) => d.resource === resources.persistentVolumeClaim && operator.storage.mode === 'hostPath',
      )) {
        for (const node of hostNodes)
          write(asWritten(cleanupPod(endpoint, claim.object, operator.fetcher.image, node)));
      }
      // The snapshots' statuses (every model snapshot of a version gets the same one).
      for (const { plan } of decision.deploy) {
        write({
          resource: resources.endpointConfig,
          object: { metadata: { name: plan.instance }, status: configInstanceStatus(plan) },
          status: true,
        });
        write({
          resource: resources.model,
          object: { metadata: { name: plan.variants[0].instance }, status: { endpointConfigVersion: plan.version } },
          status: true,
        });
      }
      const routeObject = routing.find((d) => d.resource === provider.kinds.route)?.object;
      if (routeObject) liveRoute = routeObject;
      status = state.status;
      write({ resource: resources.endpoint, object: { metadata: { name }, status }, status: true });
      if (decision.route && routeObject)
        route = {
          versions: versionWeights(decision.route),
          services: provider.observe(ctx, routeObject).services,
          observed: true,
        };
      const next = status.rollout?.nextStepAt;
      now = next && Date.parse(next) > now.getTime() ? new Date(next) : new Date(now.getTime() + 1000);
      if (!target || (decision.outcome.serving?.version === target.version && !decision.outcome.pending)) break;
    }
  }
  return { writes: [...writes.values()], refused };
}

/** What the reconciler sends for a desired object: a new autoscaled Deployment is created at its starting count. */
function asWritten(d: Desired): Written {
  if (d.initialReplicas === undefined) return { resource: d.resource, object: d.object };
  return {
    resource: d.resource,
    object: { ...d.object, spec: { ...(d.object.spec as object), replicas: d.initialReplicas } },
  };
}

// ---------------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------------

const apiVersion = 'ml-operator.dev/v1alpha1';
const seed = propertySeed(process.env.ML_OPERATOR_PROPERTY_SEED);
const runs = Number(process.env.ML_OPERATOR_PROPERTY_RUNS ?? 300);
/** Bounds the run's time, never its samples: a run that cannot try them all fails. */
const runMs = Math.max(600_000, runs * 2000);
/** Time to shrink a failing sample to a minimal one. */
const shrinkMs = 120_000;
/** Dry runs in flight at once: enough to overlap round trips, few enough for a shared API server. */
const inFlight = 8;

const figures = {
  tried: 0,
  admitted: 0,
  objects: 0,
  statuses: 0,
  rejectedObjects: 0,
  driftingObjects: 0,
  refusedByController: new Map<string, number>(),
  rejectedSpecs: new Map<string, number>(),
  kinds: new Map<string, number>(),
  routing: new Map<string, number>(),
};
const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

async function eachLimited<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(inFlight, items.length) }, async () => {
      while (next < items.length) await work(items[next++]);
    }),
  );
}

/** The first field where `live` does not hold what `desired` says (as desired/compare.ts compares them). */
function difference(live: unknown, desired: unknown, path = ''): string {
  if (desired !== null && typeof desired === 'object' && !contains(live, desired)) {
    for (const [k, v] of Object.entries(desired)) {
      const l = (live as Record<string, unknown> | undefined)?.[k];
      if (!contains(l, v)) return difference(l, v, `${path}${Array.isArray(desired) ? `[${k}]` : `.${k}`}`);
    }
    if (Array.isArray(desired))
      return `${path}: ${JSON.stringify(live)?.slice(0, 200)} instead of ${JSON.stringify(desired).slice(0, 200)}`;
  }
  return `${path}: ${JSON.stringify(live)?.slice(0, 200)} instead of ${JSON.stringify(desired)?.slice(0, 200)}`;
}

/** Why the server refused, without the request, the object's name or list indexes (so that reasons group). */
const reasonOf = (err: unknown) =>
  err instanceof KubeError
    ? err.message
        .replace(/^[A-Z]+ \S+ \S+: /, '')
        .replace(/ "[^"]*" is invalid/, ' is invalid')
        .replace(/\[\d+\]/g, '[*]')
        .split('\n')[0]
        .slice(0, 240)
    : String(err);

describe('every spec the schemas admit', () => {
  const kc = adminConfig();
  /** Writes as a user does, and as the controller does (its field manager), all dry runs. */
  const user = new KubeClient(kc, { fieldManager: 'dry-run-property-user', dryRun: true });
  const controller = new KubeClient(kc, { fieldManager: 'ml-operator', dryRun: true });
  let namespace = '';
  const standIn = 'status-stand-in';

  beforeAll(async () => {
    namespace = await createNamespace(kc, 'dry-run');
    // Status goes to a subresource of an object that exists: one stand-in of each kind, for real.
    const real = new KubeClient(kc, { fieldManager: 'dry-run-property-user' });
    await real.apply(resources.model, {
      apiVersion,
      kind: 'MachineLearningModel',
      metadata: { name: standIn, namespace },
      spec: { image: 'stand-in' },
    });
    await real.apply(resources.endpointConfig, {
      apiVersion,
      kind: 'MachineLearningEndpointConfig',
      metadata: { name: standIn, namespace },
      spec: { models: [{ model: standIn }] },
    });
    await real.apply(resources.endpoint, {
      apiVersion,
      kind: 'MachineLearningEndpoint',
      metadata: { name: standIn, namespace },
      spec: { config: standIn },
    });
  });
  afterAll(async () => {
    if (namespace) await deleteNamespace(kc, namespace);
  });

  /**
   * Dry-runs the sample's objects as a user writes them (kubectl create: JSON, stored as sent);
   * undefined when the server refuses one.
   */
  async function admit(s: Sample) {
    const meta = (name: string) => ({ name, namespace });
    try {
      const models = await Promise.all(
        s.models.map((m) =>
          user.create<MachineLearningModel & KubeObject>(resources.model, {
            apiVersion,
            kind: 'MachineLearningModel',
            metadata: meta(m.name),
            spec: m.spec,
          }),
        ),
      );
      const [config, nextConfig] = await Promise.all(
        [s.config, s.nextConfig].map((spec) =>
          user.create<MachineLearningEndpointConfig & KubeObject>(resources.endpointConfig, {
            apiVersion,
            kind: 'MachineLearningEndpointConfig',
            metadata: meta(s.configName),
            spec,
          }),
        ),
      );
      const endpoint = await user.create<MachineLearningEndpoint & KubeObject>(resources.endpoint, {
        apiVersion,
        kind: 'MachineLearningEndpoint',
        metadata: meta(s.endpointName),
        spec: s.endpoint,
      });
      // The controller reads them as stored: defaults applied, with a uid and a generation.
      endpoint.metadata.uid ||= '00000000-0000-4000-8000-000000000001';
      endpoint.metadata.generation ??= 1;
      return { models, config, nextConfig, endpoint };
    } catch (err) {
      if (!(err instanceof KubeError) || ![400, 422].includes(err.code)) throw err;
      bump(figures.rejectedSpecs, reasonOf(err));
      return undefined;
    }
  }

  it('yields objects the API server accepts, every one of them', { timeout: runMs + shrinkMs }, async () => {
    log(`dry-run property: seed ${seed}, ${runs} samples (replay: ML_OPERATOR_PROPERTY_SEED=${seed})`);
    const started = Date.now();
    let lastReport = started;
    const property = fc.asyncProperty(sample, async (s) => {
      figures.tried++;
      const admitted = await admit(s);
      if (!admitted) return;
      figures.admitted++;
      const { writes, refused } = controllerWrites(
        admitted.endpoint,
        admitted.config,
        admitted.nextConfig,
        admitted.models,
        s.operator,
      );
      for (const r of refused) bump(figures.refusedByController, r);
      bump(
        figures.routing,
        s.operator.routing.provider === 'istio'
          ? 'istio'
          : `gatewayAPI ${s.operator.routing.gatewayAPI.sharedGateway.name ? 'shared Gateway' : 'Gateway per endpoint'}, mirroring ${s.operator.routing.gatewayAPI.mirroring}`,
      );
      const rejected: string[] = [];
      await eachLimited(writes, async (w) => {
        const object = w.status
          ? { ...w.object, metadata: { name: standIn, namespace } }
          : { ...w.object, metadata: { ...w.object.metadata, ...(w.resource.namespaced ? { namespace } : {}) } };
        const body = {
          apiVersion: w.resource.group ? `${w.resource.group}/${w.resource.version}` : w.resource.version,
          kind: w.resource.kind,
          ...object,
        };
        try {
          const stored = await (w.status
            ? controller.applyStatus(w.resource, body)
            : controller.apply(w.resource, body));
          if (w.status) figures.statuses++;
          else {
            figures.objects++;
            bump(figures.kinds, w.resource.kind);
            // What the server stores must be what the controller wanted, or it would write it again on every reconcile.
            if (!upToDate(stored, body)) {
              figures.driftingObjects++;
              rejected.push(
                `${w.resource.kind} ${w.object.metadata.name}: stored differently from what the controller wrote (it would rewrite it on every reconcile): ${difference(stored, body)}`,
              );
            }
          }
        } catch (err) {
          if (!(err instanceof KubeError)) throw err;
          figures.rejectedObjects++;
          rejected.push(
            `${w.resource.kind}${w.status ? ' status' : ''} ${w.object.metadata.name}: ${err.message.replace(/^[A-Z]+ \S+ \S+: /, '').slice(0, 2000)}`,
          );
        }
      });
      if (Date.now() - lastReport > 15_000) {
        lastReport = Date.now();
        log(
          `dry-run property: ${figures.tried} samples tried, ${figures.admitted} admitted, ${figures.objects} objects and ${figures.statuses} statuses dry-run, ${figures.rejectedObjects} rejected, ${figures.driftingObjects} stored otherwise`,
        );
      }
      if (rejected.length)
        throw new Error(
          `the API server rejected what the controller writes for this spec:\n  ${rejected.join('\n  ')}`,
        );
    });
    // The run stops at the first failure, and fails then, whether or not the replay that shrinks it fails again.
    const checked = checkProperty(property, {
      seed,
      numRuns: runs,
      shrinkMs,
      replay: `ML_OPERATOR_PROPERTY_SEED=${seed}`,
      log,
    });
    await checked.catch(() => undefined);
    const seconds = ((Date.now() - started) / 1000).toFixed(0);
    const table = (m: Map<string, number>) =>
      [...m]
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `    ${n} x ${k}`)
        .join('\n') || '    none';
    log(
      [
        `dry-run property (seed ${seed}, ${seconds}s): ${figures.tried} samples tried, ${figures.admitted} admitted by the API server; ${figures.objects} controller objects and ${figures.statuses} statuses dry-run; ${figures.rejectedObjects} rejected, ${figures.driftingObjects} stored otherwise than written`,
        `  samples the API server refused (not tested further):\n${table(figures.rejectedSpecs)}`,
        `  versions the controller refuses (it says why in status, and creates nothing of them):\n${table(figures.refusedByController)}`,
        `  routing of the admitted samples:\n${table(figures.routing)}`,
        `  objects dry-run, by kind:\n${table(figures.kinds)}`,
      ].join('\n'),
    );
    await checked;
    expect(figures.tried).toBeGreaterThanOrEqual(runs);
    expect(figures.admitted).toBeGreaterThan(0);
    // The generator aims at what matters: most samples must be admitted (else it tests the schema, not the controller).
    expect(figures.admitted / figures.tried).toBeGreaterThan(0.6);
  });
});
