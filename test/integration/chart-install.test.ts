// The API and the chart against a real API server (issue "The API and the chart"):
//  1. the CRDs the chart installed are Established and publish the schemas' descriptions (`kubectl explain`);
//  2. the examples apply cleanly and `kubectl get ml` / `kubectl get mle` show them with the expected columns;
//  3. a corpus of invalid objects, each rejected at write time with the message the schema gives;
//  4. every object `helm template` renders, for the defaults and each ci/*-values.yaml scenario,
//     passes a server-side dry-run;
//  5. the helm lifecycle: a second release beside the shared one, a CRD upgrade and rollback of the
//     shared release `ml-operator` (adding, then removing, one optional field), and uninstalls that
//     keep the CRDs, the user objects and the models' namespace.
// Other test files use the same cluster at the same time: everything here lives in its own
// namespaces and releases, the CRDs are never deleted, and release `ml-operator` only ever gains an
// optional field and gets it back out (it is rolled back in afterAll if a test stopped half-way).
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments, stringify } from 'yaml';
import { release } from '../../ci/cluster/operator.ts';
import { toolPath } from '../../ci/tools/build.ts';
import { waitFor } from '../../ci/wait.ts';
import { KubeError } from '../../controller/src/kube/client.ts';
import { resources, type KubeObject, type Resource } from '../../controller/src/kube/resources.ts';
import { adminConfig, apiError, createNamespace, deleteNamespace } from './kube.ts';
import { user } from './ml.ts';
import { exec, execOk, type ExecResult } from '../../ci/exec.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const kc = adminConfig();
const kubeconfig = inject('kubeconfigPath');
const apiVersion = 'ml-operator.dev/v1alpha1';
const crdNames = ['machinelearningmodels', 'machinelearningendpointconfigs', 'machinelearningendpoints'].map(
  (plural) => `${plural}.ml-operator.dev`,
);
const crdApi = kc.makeApiClient(k8s.ApiextensionsV1Api);
const core = kc.makeApiClient(k8s.CoreV1Api);

let scratch: string;
/** Namespaces this file created (or that its releases created and kept), deleted in afterAll. */
const ownNamespaces: string[] = [];
/** Releases still installed, uninstalled in afterAll if a test stopped before doing it. */
const ownReleases: { helm: string; name: string; namespace: string }[] = [];
/** Set while release ml-operator runs the modified chart: afterAll rolls it back if a test failed. */
let sharedReleaseToRestore: number | undefined;

// ---------------------------------------------------------------------------------------------------
// Commands

/** Runs the command in the chart's directory. */
function run(command: string, args: string[], input?: string): Promise<ExecResult> {
  return exec(command, args, { cwd: root, input });
}

/** Runs the command and returns its stdout; fails with its output when it exits non-zero. */
async function ok(command: string, args: string[], input?: string): Promise<string> {
  return (await execOk(command, args, { cwd: root, input })).stdout;
}

const helm4 = toolPath('helm');
const helm3 = toolPath('helm3');
const helm = (bin: string, args: string[]) => ok(bin, [`--kubeconfig=${kubeconfig}`, ...args]);
/** kubectl with its own discovery cache: a shared one could hide a CRD change made a moment ago. */
const kubectl = (args: string[], input?: string) =>
  ok(
    toolPath('kubectl'),
    [`--kubeconfig=${kubeconfig}`, `--cache-dir=${mkdtempSync(join(scratch, 'kube-cache-'))}`, ...args],
    input,
  );

interface Revision {
  revision: number;
  status: string;
  chart: string;
  description: string;
}
async function history(bin: string, name: string, namespace: string): Promise<Revision[]> {
  return JSON.parse(await helm(bin, ['history', name, '-n', namespace, '-o', 'json']));
}
async function lastRevision(bin: string, name: string, namespace: string): Promise<Revision> {
  return (await history(bin, name, namespace)).at(-1)!;
}

// ---------------------------------------------------------------------------------------------------
// Objects

const models = (namespace: string, name: string, spec: unknown): KubeObject => ({
  apiVersion,
  kind: 'MachineLearningModel',
  metadata: { name, namespace },
  spec,
});
const configs = (namespace: string, name: string, spec: unknown): KubeObject => ({
  apiVersion,
  kind: 'MachineLearningEndpointConfig',
  metadata: { name, namespace },
  spec,
});
const endpoints = (namespace: string, name: string, spec: unknown): KubeObject => ({
  apiVersion,
  kind: 'MachineLearningEndpoint',
  metadata: { name, namespace },
  spec,
});

/** A model, a config and an endpoint, as an ML engineer would create them; returns their uids by kind/name. */
async function createUserObjects(namespace: string, prefix: string): Promise<Map<string, string>> {
  const objects: [Resource, KubeObject][] = [
    [
      resources.model,
      models(namespace, `${prefix}-model`, {
        image: 'ghcr.io/acme/titanic-server:1.0.0',
        artifact: 's3://models/titanic.tar.gz',
      }),
    ],
    [
      resources.endpointConfig,
      configs(namespace, `${prefix}-config`, {
        models: [{ model: `${prefix}-model`, weight: 1, cpus: '500m', memory: '1Gi' }],
      }),
    ],
    [resources.endpoint, endpoints(namespace, `${prefix}-endpoint`, { config: `${prefix}-config` })],
  ];
  const uids = new Map<string, string>();
  for (const [r, obj] of objects) {
    const created = await user.apply(r, obj);
    uids.set(`${r.kind}/${obj.metadata.name}`, created.metadata.uid!);
  }
  return uids;
}

/** The same objects (same uids, so never deleted and re-created) are still there. */
async function expectUserObjects(namespace: string, uids: Map<string, string>): Promise<void> {
  const byKind = {
    MachineLearningModel: resources.model,
    MachineLearningEndpointConfig: resources.endpointConfig,
    MachineLearningEndpoint: resources.endpoint,
  } as Record<string, Resource>;
  for (const [key, uid] of uids) {
    const [kind, name] = key.split('/');
    const live = await user.get(byKind[kind], namespace, name);
    expect(live?.metadata.uid, `${kind} ${namespace}/${name}`).toBe(uid);
    expect(live?.metadata.deletionTimestamp, `${kind} ${namespace}/${name}`).toBeUndefined();
  }
}

async function crdUids(): Promise<string[]> {
  return Promise.all(
    crdNames.map(async (name) => (await crdApi.readCustomResourceDefinition({ name })).metadata!.uid!),
  );
}

/** The description of a field in schemas/, the single source of truth: `spec.models.weight` walks arrays' items. */
function schemaDescription(kind: string, path: string): string {
  let node = JSON.parse(readFileSync(join(root, 'schemas', `${kind.toLowerCase()}.schema.json`), 'utf8'));
  for (const part of path.split('.')) {
    if (node.type === 'array') node = node.items;
    node = node.properties[part];
  }
  return node.description;
}
const words = (text: string) => text.replace(/\s+/g, ' ').trim();

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'ml-operator-chart-install-'));
});

afterAll(async () => {
  if (sharedReleaseToRestore !== undefined) {
    await helm(helm4, [
      'rollback',
      release.name,
      String(sharedReleaseToRestore),
      '-n',
      release.namespace,
      '--wait',
      '--timeout',
      '2m',
    ]);
  }
  for (const r of ownReleases)
    await run(r.helm, [`--kubeconfig=${kubeconfig}`, 'uninstall', r.name, '-n', r.namespace, '--wait']);
  for (const namespace of ownNamespaces) await deleteNamespace(kc, namespace).catch(() => {});
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------
// 1. The CRDs

describe('the CRDs installed by the chart', () => {
  it.each(crdNames)(
    '%s is Established, in the ml category, with the status subresource, and kept on uninstall',
    async (name) => {
      const crd = await crdApi.readCustomResourceDefinition({ name });
      expect(crd.status?.conditions?.find((c) => c.type === 'Established')?.status).toBe('True');
      expect(crd.status?.conditions?.find((c) => c.type === 'NamesAccepted')?.status).toBe('True');
      expect(crd.spec.scope).toBe('Namespaced');
      expect(crd.spec.names.categories).toEqual(['ml']);
      expect(crd.spec.versions.map((v) => [v.name, v.served, v.storage, v.subresources?.status])).toEqual([
        ['v1alpha1', true, true, {}],
      ]);
      expect(crd.metadata?.annotations).toMatchObject({
        'helm.sh/resource-policy': 'keep',
        'meta.helm.sh/release-name': release.name,
        'meta.helm.sh/release-namespace': release.namespace,
      });
    },
  );

  // One field per kind, through the kind's full name or its short name: kubectl explain prints the
  // description of schemas/ (kubectl wraps lines, so whitespace is compared loosely).
  it.each([
    { field: 'machinelearningendpoint.spec.config', kind: 'MachineLearningEndpoint', path: 'spec.config' },
    {
      field: 'mle.spec.rollout.progressDeadlineSeconds',
      kind: 'MachineLearningEndpoint',
      path: 'spec.rollout.progressDeadlineSeconds',
    },
    {
      field: 'machinelearningendpointconfig.spec.models.weight',
      kind: 'MachineLearningEndpointConfig',
      path: 'spec.models.weight',
    },
    { field: 'mlm.spec.artifact', kind: 'MachineLearningModel', path: 'spec.artifact' },
    { field: 'machinelearningmodel.spec.env.valueFrom', kind: 'MachineLearningModel', path: 'spec.env.valueFrom' },
  ])('kubectl explain $field prints the schema description', async ({ field, kind, path }) => {
    const description = schemaDescription(kind, path);
    expect(description.length).toBeGreaterThan(20);
    const out = await kubectl(['explain', field]);
    expect(out).toContain(`KIND:       ${kind}`);
    expect(words(out)).toContain(words(description));
  });
});

// ---------------------------------------------------------------------------------------------------
// 2. The examples

describe('the examples', () => {
  let namespace: string;
  // Every example directory: the demo's (titanic, ab-test) and the real model servers'.
  const files = readdirSync(join(root, 'examples'))
    .sort()
    .flatMap((dir) =>
      readdirSync(join(root, 'examples', dir))
        .filter((f) => f.endsWith('.yaml'))
        .map((f) => join('examples', dir, f)),
    );

  beforeAll(async () => {
    namespace = await createNamespace(kc, 'chart-examples');
    ownNamespaces.push(namespace);
  });

  it('apply cleanly with server-side apply, and kubectl get ml lists every one of them', async () => {
    const expected = files
      .flatMap((f) => parseAllDocuments(readFileSync(join(root, f), 'utf8')).map((d) => d.toJS()))
      .filter(Boolean)
      .map((o: KubeObject) => `${o.kind!.toLowerCase()}.ml-operator.dev/${o.metadata.name}`)
      .sort();
    // titanic (3), ab-test (4), and a model, a config and an endpoint for each of the six servers.
    expect(expected).toHaveLength(25);
    const applied = await kubectl([
      'apply',
      '--server-side',
      '--field-manager=chart-install-test',
      '-n',
      namespace,
      ...files.flatMap((f) => ['-f', f]),
    ]);
    expect(applied.trim().split('\n').sort()).toEqual(expected.map((o) => `${o} serverside-applied`));
    const listed = await kubectl(['get', 'ml', '-n', namespace, '-o', 'name']);
    expect(listed.trim().split('\n').sort()).toEqual(expected);
  });

  // No controller watches this namespace: status columns are empty, the spec ones are filled in.
  it('kubectl get shows the printer columns: state, version, host, ready, rollout and age for endpoints; snapshot columns first for models and configs', async () => {
    const table = async (args: string[]) =>
      (await kubectl(['get', ...args, '-n', namespace]))
        .trim()
        .split('\n')
        .map((line) => line.trim().split(/\s+/));
    const mle = await table(['mle']);
    expect(mle[0]).toEqual(['NAME', 'STATE', 'VERSION', 'HOST', 'READY', 'ROLLOUT', 'AGE']);
    expect(mle.slice(1).map((row) => row[0])).toEqual([
      'densenet-triton',
      'half-plus-two-tfserving',
      'iris-mlserver',
      'iris-sklearn',
      'mnist-torchserve',
      'qwen-vllm',
      'titanic',
      'titanic-ab',
    ]);
    expect((await table(['mle', '-o', 'wide']))[0]).toEqual([
      'NAME',
      'STATE',
      'VERSION',
      'HOST',
      'READY',
      'ROLLOUT',
      'CONFIG',
      'AGE',
    ]);
    const mlec = await table(['mlec']);
    expect(mlec[0]).toEqual(['NAME', 'SNAPSHOT-OF', 'ENDPOINT', 'VERSION', 'FIRST-MODEL', 'AGE']);
    expect(mlec.slice(1).map((row) => row.slice(0, 2))).toEqual([
      ['densenet-triton', 'densenet-triton'],
      ['half-plus-two-tfserving', 'half-plus-two-tfserving'],
      ['iris-mlserver', 'iris-mlserver'],
      ['iris-sklearn', 'iris-sklearn'],
      ['mnist-torchserve', 'mnist-torchserve'],
      ['qwen-vllm', 'qwen-vllm'],
      ['titanic', 'titanic'],
      ['titanic-ab', 'titanic-a'],
    ]);
    const mlm = await table(['mlm']);
    expect(mlm[0]).toEqual(['NAME', 'SNAPSHOT-OF', 'ENDPOINT', 'CONFIG-VERSION', 'IMAGE', 'AGE']);
    expect(mlm.slice(1).map((row) => row.slice(0, 2))).toEqual([
      ['densenet-triton', 'nvcr.io/nvidia/tritonserver:24.08-py3'],
      ['half-plus-two-tfserving', 'docker.io/tensorflow/serving:2.16.1'],
      ['iris-mlserver', 'docker.io/seldonio/mlserver:1.6.1'],
      ['iris-sklearn', 'localhost/ml-operator/sklearn-server:1.0.0'],
      ['mnist-torchserve', 'docker.io/pytorch/torchserve:0.12.0-cpu'],
      ['qwen-vllm', 'docker.io/vllm/vllm-openai:v0.6.3'],
      ['titanic', 'ghcr.io/acme/titanic-server:1.0.0'],
      ['titanic-a', 'ghcr.io/acme/titanic-server:1.0.0'],
      ['titanic-b', 'ghcr.io/acme/titanic-server:1.1.0'],
    ]);
    expect((await table(['mlm', '-o', 'wide']))[0]).toEqual([
      'NAME',
      'SNAPSHOT-OF',
      'ENDPOINT',
      'CONFIG-VERSION',
      'IMAGE',
      'ARTIFACT',
      'AGE',
    ]);
    // Every kind answers to the category, in one listing.
    const all = await kubectl(['get', 'ml', '-n', namespace]);
    for (const header of ['STATE   VERSION   HOST   READY', 'MODEL', 'IMAGE']) expect(all).toContain(header);
  });
});

// ---------------------------------------------------------------------------------------------------
// 3. Invalid objects: rejected at write time, with the message the schema gives, and never stored.

type Kind = 'model' | 'config' | 'endpoint';
interface InvalidCase {
  what: string;
  kind: Kind;
  /** Object name; a unique one when absent. */
  name?: string;
  spec?: unknown;
  /**
   * How it is written: server-side apply (kubectl apply --server-side, the default), or create
   * (kubectl create / a first client-side kubectl apply). Both use fieldValidation=Strict. Duplicate
   * list-map keys and unknown fields read differently in each, so the corpus has both.
   */
  via?: 'apply' | 'create';
  /** HTTP status expected; not checked for server-side apply's typed-patch errors, which kube-apiserver answers with 500. */
  code?: number;
  /**
   * A distinctive part of the API server's message; a pattern where the wording differs between the
   * Kubernetes releases the tests run on (the current one and the oldest supported).
   */
  message: string | RegExp;
}

const image = 'ghcr.io/acme/titanic-server:1.0.0';
const label64 = 'a'.repeat(64);

// case → distinctive substring of the API server's message
const invalid: InvalidCase[] = [
  // MachineLearningModel
  { what: 'model without spec', kind: 'model', code: 422, message: 'spec: Required value' },
  {
    what: 'model without image',
    kind: 'model',
    spec: { artifact: 's3://models/titanic.tar.gz' },
    code: 422,
    message: 'spec.image: Required value',
  },
  {
    what: 'model image with whitespace',
    kind: 'model',
    spec: { image: 'acme/titanic server' },
    code: 422,
    message: 'spec.image in body should match',
  },
  {
    what: 'model artifact with the ftp:// scheme',
    kind: 'model',
    spec: { image, artifact: 'ftp://models.example.com/titanic.tar.gz' },
    code: 422,
    message: 'spec.artifact in body should match',
  },
  {
    what: 'model artifactIdentity without a role',
    kind: 'model',
    spec: { image, artifactIdentity: { audience: 'sts.amazonaws.com' } },
    code: 422,
    message: 'spec.artifactIdentity.awsRoleArn: Required value',
  },
  {
    what: 'model artifactIdentity role that is no IAM role ARN',
    kind: 'model',
    spec: { image, artifactIdentity: { awsRoleArn: 'arn:aws:s3:::models' } },
    code: 422,
    message: 'spec.artifactIdentity.awsRoleArn in body should match',
  },
  {
    what: 'model artifact pvc:// without a path in the claim',
    kind: 'model',
    spec: { image, artifact: 'pvc://models' },
    code: 422,
    message: 'spec.artifact in body should match',
  },
  {
    what: 'model name starting with a digit',
    kind: 'model',
    name: '1titanic',
    spec: { image },
    code: 422,
    message: 'a model name must be a DNS label that starts with a letter',
  },
  {
    what: 'model name longer than 63 characters',
    kind: 'model',
    name: label64,
    spec: { image },
    code: 422,
    message: 'a model name must be a DNS label that starts with a letter',
  },
  {
    what: 'model env that sets MODEL_PATH',
    kind: 'model',
    spec: { image, env: [{ name: 'MODEL_PATH', value: '/models' }] },
    code: 422,
    message: 'env must not set MODEL_PATH or PORT',
  },
  {
    what: 'model env that sets PORT',
    kind: 'model',
    spec: { image, env: [{ name: 'PORT', value: '9000' }] },
    code: 422,
    message: 'env must not set MODEL_PATH or PORT',
  },
  {
    what: 'model env with both value and valueFrom',
    kind: 'model',
    spec: { image, env: [{ name: 'TOKEN', value: 'x', valueFrom: { secretKeyRef: { name: 'creds', key: 'token' } } }] },
    code: 422,
    message: 'set either value or valueFrom, not both',
  },
  {
    what: 'model env valueFrom with neither secretKeyRef nor configMapKeyRef',
    kind: 'model',
    spec: { image, env: [{ name: 'TOKEN', valueFrom: {} }] },
    code: 422,
    message: 'valueFrom needs exactly one of secretKeyRef and configMapKeyRef',
  },
  {
    what: 'model env name starting with a digit',
    kind: 'model',
    spec: { image, env: [{ name: '1TOKEN', value: 'x' }] },
    code: 422,
    message: 'spec.env[0].name in body should match',
  },
  {
    what: 'model env with the same name twice (create)',
    kind: 'model',
    via: 'create',
    spec: {
      image,
      env: [
        { name: 'A', value: '1' },
        { name: 'A', value: '2' },
      ],
    },
    code: 422,
    message: 'spec.env[1]: Duplicate value',
  },
  {
    what: "model env secretKeyRef key '..' (Kubernetes refuses it in the Deployment)",
    kind: 'model',
    spec: { image, env: [{ name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'creds', key: '..' } } }] },
    code: 422,
    message: "a key must not be '.' or '..', nor start with '..'",
  },
  {
    what: "model env configMapKeyRef key '.'",
    kind: 'model',
    spec: { image, env: [{ name: 'MODE', valueFrom: { configMapKeyRef: { name: 'settings', key: '.' } } }] },
    code: 422,
    message: "a key must not be '.' or '..', nor start with '..'",
  },
  {
    what: "model env secretKeyRef key starting with '..' ('..data')",
    kind: 'model',
    spec: { image, env: [{ name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'creds', key: '..data' } } }] },
    code: 422,
    message: "a key must not be '.' or '..', nor start with '..'",
  },
  {
    what: 'model port 0',
    kind: 'model',
    spec: { image, port: 0 },
    code: 422,
    message: 'spec.port in body should be greater than or equal to 1',
  },
  {
    what: 'model port 70000',
    kind: 'model',
    spec: { image, port: 70000 },
    code: 422,
    message: 'spec.port in body should be less than or equal to 65535',
  },
  {
    what: 'model port as a string (create)',
    kind: 'model',
    via: 'create',
    spec: { image, port: '8080' },
    code: 422,
    message: 'spec.port in body must be of type integer',
  },
  {
    what: 'model readinessPath not starting with /',
    kind: 'model',
    spec: { image, readinessPath: 'healthz' },
    code: 422,
    message: 'spec.readinessPath in body should match',
  },
  {
    what: 'model with an unknown field (create, fieldValidation=Strict)',
    kind: 'model',
    via: 'create',
    spec: { image, replicas: 3 },
    code: 400,
    message: 'unknown field "spec.replicas"',
  },
  {
    what: 'model with an unknown field (server-side apply)',
    kind: 'model',
    spec: { image, replicas: 3 },
    message: '.spec.replicas: field not declared in schema',
  },
  {
    what: 'model pull secret that is no Secret name',
    kind: 'model',
    spec: { image, imagePullSecrets: ['Registry_Creds'] },
    code: 422,
    message: 'spec.imagePullSecrets[0] in body should match',
  },
  {
    what: 'model serviceAccountName with capitals',
    kind: 'model',
    spec: { image, serviceAccountName: 'Reader' },
    code: 422,
    message: 'spec.serviceAccountName in body should match',
  },
  {
    what: 'model running as root without runAsNonRoot false (pod)',
    kind: 'model',
    spec: { image, securityContext: { pod: { runAsUser: 0 } } },
    code: 422,
    message: 'runAsUser 0 runs as root: set runAsNonRoot: false too',
  },
  {
    what: 'model running as root without runAsNonRoot false (container)',
    kind: 'model',
    spec: { image, securityContext: { container: { runAsUser: 0, runAsNonRoot: true } } },
    code: 422,
    message: 'runAsUser 0 runs as root: set runAsNonRoot: false too',
  },
  {
    what: 'model capability in lower case',
    kind: 'model',
    spec: { image, securityContext: { container: { capabilities: { add: ['sys_ptrace'] } } } },
    code: 422,
    message: 'spec.securityContext.container.capabilities.add[0] in body should match',
  },
  {
    what: 'model startupProbe without a path',
    kind: 'model',
    spec: { image, startupProbe: { periodSeconds: 10 } },
    code: 422,
    message: 'spec.startupProbe.path: Required value',
  },
  {
    what: 'model livenessProbe with periodSeconds 0',
    kind: 'model',
    spec: { image, livenessProbe: { path: '/', periodSeconds: 0 } },
    code: 422,
    message: 'spec.livenessProbe.periodSeconds in body should be greater than or equal to 1',
  },
  {
    what: 'model terminationGracePeriodSeconds within the preStop sleep (5)',
    kind: 'model',
    spec: { image, terminationGracePeriodSeconds: 5 },
    code: 422,
    message: 'terminationGracePeriodSeconds must exceed the 5 s preStop sleep',
  },
  {
    what: 'model shmSize of zero ("0Mi")',
    kind: 'model',
    spec: { image, shmSize: '0Mi' },
    code: 422,
    message: 'shmSize must be greater than zero',
  },
  {
    what: 'model shmSize that is no quantity ("big")',
    kind: 'model',
    spec: { image, shmSize: 'big' },
    code: 422,
    message: 'spec.shmSize in body should match',
  },
  // MachineLearningEndpointConfig
  { what: 'config without models', kind: 'config', spec: {}, code: 422, message: 'spec.models: Required value' },
  {
    what: 'config with an empty list of models',
    kind: 'config',
    spec: { models: [] },
    code: 422,
    message: 'spec.models in body should have at least 1 items',
  },
  {
    what: 'config with all weights 0',
    kind: 'config',
    spec: {
      models: [
        { model: 'a', weight: 0 },
        { model: 'b', weight: 0 },
      ],
    },
    code: 422,
    message: 'at least one variant that is not a shadow needs a weight greater than 0',
  },
  {
    what: 'config with only shadows',
    kind: 'config',
    spec: { models: [{ model: 'a', shadow: { percent: 10 } }] },
    code: 422,
    message: 'at least one variant that is not a shadow needs a weight greater than 0',
  },
  {
    what: 'shadow variant with a weight',
    kind: 'config',
    spec: { models: [{ model: 'a' }, { model: 'b', weight: 1, shadow: { percent: 10 } }] },
    code: 422,
    message: 'a shadow variant receives a mirror of the traffic, not a share of it: remove its weight',
  },
  {
    what: 'shadow percent above 100',
    kind: 'config',
    spec: { models: [{ model: 'a' }, { model: 'b', shadow: { percent: 150 } }] },
    code: 422,
    message: 'spec.models[1].shadow.percent',
  },
  {
    what: 'shadow compared but mirrored by the gateway',
    kind: 'config',
    spec: {
      models: [{ model: 'a' }, { model: 'b', shadow: { percent: 10, mirror: 'Gateway', compare: { path: '$.p' } } }],
    },
    code: 422,
    message: 'compare needs mirror: Agent',
  },
  {
    what: 'shadow compare path that is not a JSON path',
    kind: 'config',
    spec: { models: [{ model: 'a' }, { model: 'b', shadow: { percent: 10, compare: { path: 'predictions' } } }] },
    code: 422,
    message: 'spec.models[1].shadow.compare.path',
  },
  {
    what: 'shadow compare with a negative tolerance',
    kind: 'config',
    spec: {
      models: [{ model: 'a' }, { model: 'b', shadow: { percent: 10, compare: { absoluteTolerance: -0.1 } } }],
    },
    code: 422,
    message: 'spec.models[1].shadow.compare.absoluteTolerance',
  },
  {
    what: 'shadow test mirrored by the gateway',
    kind: 'config',
    spec: {
      models: [
        { model: 'a' },
        { model: 'b', shadow: { percent: 10, mirror: 'Gateway', test: { criteria: { agreement: 0.9 } } } },
      ],
    },
    code: 422,
    message: 'test needs mirror: Agent',
  },
  {
    what: 'shadow test without a criterion',
    kind: 'config',
    spec: { models: [{ model: 'a' }, { model: 'b', shadow: { percent: 10, test: { durationSeconds: 3600 } } }] },
    code: 422,
    message: 'a shadow test needs at least one criterion',
  },
  {
    what: 'shadow test longer than 30 days',
    kind: 'config',
    spec: {
      models: [
        { model: 'a' },
        { model: 'b', shadow: { percent: 10, test: { durationSeconds: 3_000_000, criteria: { agreement: 0.9 } } } },
      ],
    },
    code: 422,
    message: 'spec.models[1].shadow.test.durationSeconds',
  },
  {
    what: 'shadow test agreement given as a percentage',
    kind: 'config',
    spec: { models: [{ model: 'a' }, { model: 'b', shadow: { percent: 10, test: { criteria: { agreement: 97 } } } }] },
    code: 422,
    message: 'spec.models[1].shadow.test.criteria.agreement',
  },
  {
    what: 'shadow test that promotes beside two serving variants',
    kind: 'config',
    spec: {
      models: [
        { model: 'a' },
        { model: 'c' },
        { model: 'b', shadow: { percent: 10, test: { criteria: { agreement: 0.9 }, onPass: 'Promote' } } },
      ],
    },
    code: 422,
    message: 'onPass: Promote replaces the one serving variant with the shadow',
  },
  {
    what: 'autoscaling with minInstances above maxInstances',
    kind: 'config',
    spec: {
      models: [
        { model: 'a', cpus: '1', autoscaling: { minInstances: 5, maxInstances: 2, target: { cpuUtilization: 50 } } },
      ],
    },
    code: 422,
    message: 'minInstances must not exceed maxInstances',
  },
  {
    what: 'autoscaling beside instances',
    kind: 'config',
    spec: {
      models: [
        { model: 'a', instances: 2, autoscaling: { minInstances: 1, maxInstances: 2, target: { cpuUtilization: 50 } } },
      ],
    },
    code: 422,
    message: 'autoscaling replaces instances',
  },
  {
    what: 'autoscaling with two targets',
    kind: 'config',
    spec: {
      models: [
        {
          model: 'a',
          autoscaling: { minInstances: 1, maxInstances: 2, target: { cpuUtilization: 50, requestsPerSecond: 10 } },
        },
      ],
    },
    code: 422,
    message: 'set exactly one of cpuUtilization and requestsPerSecond',
  },
  {
    what: 'autoscaling to zero on CPU',
    kind: 'config',
    spec: {
      models: [{ model: 'a', autoscaling: { minInstances: 0, maxInstances: 2, target: { cpuUtilization: 50 } } }],
    },
    code: 422,
    message: 'scaling to zero (minInstances 0) needs a requestsPerSecond target',
  },
  {
    what: 'autoscaling without bounds',
    kind: 'config',
    spec: {
      models: [
        { model: 'a', shadow: { percent: 10 }, autoscaling: { target: { requestsPerSecond: 10 } } },
        { model: 'b' },
      ],
    },
    code: 422,
    message: 'minInstances: Required value',
  },
  {
    what: 'config with a negative weight',
    kind: 'config',
    spec: { models: [{ model: 'a', weight: -1 }] },
    code: 422,
    message: 'spec.models[0].weight in body should be greater than or equal to 0',
  },
  {
    what: 'config with the same variant model twice (create)',
    kind: 'config',
    via: 'create',
    spec: { models: [{ model: 'a' }, { model: 'a' }] },
    code: 422,
    message: /spec\.models\[1\]: Duplicate value: (map\[string\]interface \{\})?\{"model":"a"\}/,
  },
  {
    what: 'config with the same variant model twice (server-side apply)',
    kind: 'config',
    spec: { models: [{ model: 'a' }, { model: 'a' }] },
    message: 'duplicate entries for key [model="a"]',
  },
  {
    what: 'config with more than 10 variants',
    kind: 'config',
    spec: { models: Array.from({ length: 11 }, (_, i) => ({ model: `m${i}` })) },
    code: 422,
    message: 'spec.models: Too many: 11: must have at most 10 items',
  },
  {
    what: 'config with 9 variants that take traffic (a rollout routes both versions: 18 backends, Gateway API takes 16)',
    kind: 'config',
    spec: { models: Array.from({ length: 9 }, (_, i) => ({ model: `m${i}` })) },
    code: 422,
    message: 'at most 8 variants may take traffic',
  },
  {
    what: 'config variant model name with capitals',
    kind: 'config',
    spec: { models: [{ model: 'Titanic' }] },
    code: 422,
    message: 'spec.models[0].model in body should match',
  },
  {
    what: 'config with a bad cpus quantity ("lots")',
    kind: 'config',
    spec: { models: [{ model: 'a', cpus: 'lots' }] },
    code: 422,
    message: 'spec.models[0].cpus in body should match',
  },
  {
    what: 'config with a cpus exponent that is not a whole number ("1e1.5", not a Kubernetes quantity)',
    kind: 'config',
    spec: { models: [{ model: 'a', cpus: '1e1.5' }] },
    code: 422,
    message: 'spec.models[0].cpus in body should match',
  },
  {
    what: 'config with a memory exponent of 3 digits ("1e100")',
    kind: 'config',
    spec: { models: [{ model: 'a', memory: '1e100' }] },
    code: 422,
    message: 'spec.models[0].memory in body should match',
  },
  {
    what: 'config with a size exponent written as a decimal (".5e.5")',
    kind: 'config',
    spec: { models: [{ model: 'a', size: '.5e.5' }] },
    code: 422,
    message: 'spec.models[0].size in body should match',
  },
  {
    what: 'config with a size of 8Ei or more (Kubernetes caps a volume at 2^63-1 bytes)',
    kind: 'config',
    spec: { models: [{ model: 'a', size: '3301Ei' }] },
    code: 422,
    message: 'size must be less than 8Ei',
  },
  {
    what: 'config with memory of 8Ei or more ("1e19")',
    kind: 'config',
    spec: { models: [{ model: 'a', memory: '1e19' }] },
    code: 422,
    message: 'memory must be less than 8Ei',
  },
  {
    what: 'config with cpus of 8Ei or more ("10E")',
    kind: 'config',
    spec: { models: [{ model: 'a', cpus: '10E' }] },
    code: 422,
    message: 'cpus must be less than 8Ei',
  },
  {
    what: 'config with zero memory ("0")',
    kind: 'config',
    spec: { models: [{ model: 'a', memory: '0' }] },
    code: 422,
    message: 'memory must be greater than zero',
  },
  {
    what: 'config with zero cpus (integer 0)',
    kind: 'config',
    spec: { models: [{ model: 'a', cpus: 0 }] },
    code: 422,
    message: 'cpus must be greater than zero',
  },
  {
    what: 'config with zero size ("0Gi")',
    kind: 'config',
    spec: { models: [{ model: 'a', size: '0Gi' }] },
    code: 422,
    message: 'size must be greater than zero',
  },
  {
    what: 'config with negative instances',
    kind: 'config',
    spec: { models: [{ model: 'a', instances: -1 }] },
    code: 422,
    message: 'spec.models[0].instances in body should be greater than or equal to 1',
  },
  {
    what: 'config with negative gpus',
    kind: 'config',
    spec: { models: [{ model: 'a', gpus: -1 }] },
    code: 422,
    message: 'spec.models[0].gpus in body should be greater than or equal to 0',
  },
  {
    what: 'config with an absolute hostPath path (outside the chart root)',
    kind: 'config',
    spec: { models: [{ model: 'a', path: '/etc' }] },
    code: 422,
    message: 'spec.models[0].path in body should match',
  },
  {
    what: 'config with a hostPath path that climbs out of the root',
    kind: 'config',
    spec: { models: [{ model: 'a', path: 'team/../../etc' }] },
    code: 422,
    message: "path must stay inside the chart's storage.hostPathRoot",
  },
  {
    what: 'variant gpuResource in the kubernetes.io domain',
    kind: 'config',
    spec: { models: [{ model: 'a', gpus: 1, gpuResource: 'kubernetes.io/gpu' }] },
    code: 422,
    message: 'gpuResource must be an extended resource name outside the kubernetes.io domain',
  },
  {
    what: 'variant gpuResource without a domain (gpu)',
    kind: 'config',
    spec: { models: [{ model: 'a', gpus: 1, gpuResource: 'gpu' }] },
    code: 422,
    message: 'spec.models[0].gpuResource in body should match',
  },
  {
    what: 'variant toleration with operator Exists and a value',
    kind: 'config',
    spec: { models: [{ model: 'a', tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', value: 'present' }] }] },
    code: 422,
    message: 'a toleration with operator Exists takes no value',
  },
  {
    what: 'variant toleration without a key, operator Equal',
    kind: 'config',
    spec: { models: [{ model: 'a', tolerations: [{ value: 'x' }] }] },
    code: 422,
    message: 'a toleration without a key must have operator Exists',
  },
  {
    what: 'variant toleration effect not in the enum (NoRun)',
    kind: 'config',
    spec: { models: [{ model: 'a', tolerations: [{ key: 'k', effect: 'NoRun' }] }] },
    code: 422,
    message: 'spec.models[0].tolerations[0].effect: Unsupported value: "NoRun"',
  },
  {
    what: 'variant tolerationSeconds on NoSchedule',
    kind: 'config',
    spec: { models: [{ model: 'a', tolerations: [{ key: 'k', effect: 'NoSchedule', tolerationSeconds: 30 }] }] },
    code: 422,
    message: 'tolerationSeconds applies to the NoExecute effect only',
  },
  {
    what: 'variant spread constraints twice on one topology key',
    kind: 'config',
    spec: {
      models: [
        {
          model: 'a',
          topologySpreadConstraints: [
            { topologyKey: 'zone' },
            { topologyKey: 'zone', whenUnsatisfiable: 'ScheduleAnyway', maxSkew: 2 },
          ],
        },
      ],
    },
    code: 422,
    message: 'at most one constraint per topologyKey and whenUnsatisfiable',
  },
  {
    what: 'variant nodeSelector value that is no label value',
    kind: 'config',
    spec: { models: [{ model: 'a', nodeSelector: { zone: 'a b' } }] },
    code: 422,
    message: 'spec.models[0].nodeSelector.zone',
  },
  {
    what: 'variant toleration key whose name is over 63 characters',
    kind: 'config',
    spec: { models: [{ model: 'a', tolerations: [{ key: `example.com/${'k'.repeat(64)}`, operator: 'Exists' }] }] },
    code: 422,
    message: 'spec.models[0].tolerations[0].key',
  },
  {
    what: 'model shmSize with a fractional exponent',
    kind: 'model',
    spec: { image: 'acme/a:1', shmSize: '1e1.5' },
    code: 422,
    message: 'spec.shmSize',
  },
  {
    what: 'variant spread constraint with maxSkew 0',
    kind: 'config',
    spec: {
      models: [{ model: 'a', topologySpreadConstraints: [{ topologyKey: 'kubernetes.io/hostname', maxSkew: 0 }] }],
    },
    code: 422,
    message: 'spec.models[0].topologySpreadConstraints[0].maxSkew in body should be greater than or equal to 1',
  },
  {
    what: 'variant spread constraint without a topologyKey',
    kind: 'config',
    spec: { models: [{ model: 'a', topologySpreadConstraints: [{ maxSkew: 1 }] }] },
    code: 422,
    message: 'spec.models[0].topologySpreadConstraints[0].topologyKey: Required value',
  },
  {
    what: 'variant node affinity In without values',
    kind: 'config',
    spec: {
      models: [
        {
          model: 'a',
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [{ matchExpressions: [{ key: 'gpu', operator: 'In' }] }],
              },
            },
          },
        },
      ],
    },
    code: 422,
    message: 'operator In, NotIn, Gt and Lt need values',
  },
  {
    what: 'variant pod anti-affinity term without a topologyKey',
    kind: 'config',
    spec: {
      models: [
        {
          model: 'a',
          affinity: {
            podAntiAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'x' } } }],
            },
          },
        },
      ],
    },
    code: 422,
    message: 'topologyKey: Required value',
  },
  {
    what: 'variant priorityClassName with capitals',
    kind: 'config',
    spec: { models: [{ model: 'a', priorityClassName: 'High' }] },
    code: 422,
    message: 'spec.models[0].priorityClassName in body should match',
  },
  {
    what: 'config name longer than 63 characters',
    kind: 'config',
    name: `c${'x'.repeat(69)}`,
    spec: { models: [{ model: 'a' }] },
    code: 422,
    message: 'an endpoint config name must be at most 63 characters',
  },
  // MachineLearningEndpoint
  {
    what: 'endpoint without config',
    kind: 'endpoint',
    spec: { host: 'titanic.example.com' },
    code: 422,
    message: 'spec.config: Required value',
  },
  {
    what: 'endpoint check with a compare block but not builtin agreement',
    kind: 'endpoint',
    spec: {
      config: 'titanic',
      rollout: {
        strategy: 'Canary',
        analysis: { checks: [{ name: 'errors', builtin: 'errorRate', max: 0.01, compare: { path: '$.p' } }] },
      },
    },
    code: 422,
    message: 'compare is for builtin: agreement',
  },
  {
    what: 'endpoint agreement check whose compare path is not a JSON path',
    kind: 'endpoint',
    spec: {
      config: 'titanic',
      rollout: {
        strategy: 'Canary',
        analysis: { checks: [{ name: 'agree', builtin: 'agreement', min: 0.9, compare: { path: 'predictions' } }] },
      },
    },
    code: 422,
    message: 'spec.rollout.analysis.checks[0].compare.path',
  },
  {
    what: 'endpoint agreement check with a bound of 95 (a share is within 0..1)',
    kind: 'endpoint',
    spec: {
      config: 'titanic',
      rollout: { strategy: 'Canary', analysis: { checks: [{ name: 'agree', builtin: 'agreement', min: 95 }] } },
    },
    code: 422,
    message: 'its min and max must be within [0, 1]',
  },
  {
    what: 'endpoint with two agreement checks',
    kind: 'endpoint',
    spec: {
      config: 'titanic',
      rollout: {
        strategy: 'Linear',
        analysis: {
          checks: [
            { name: 'a', builtin: 'agreement', min: 0.9 },
            { name: 'b', builtin: 'agreement', min: 0.8, compare: { kind: 'numbers' } },
          ],
        },
      },
    },
    code: 422,
    message: 'at most one agreement check',
  },
  {
    what: 'endpoint agreement check with the BlueGreen strategy',
    kind: 'endpoint',
    spec: { config: 'titanic', rollout: { analysis: { checks: [{ name: 'agree', builtin: 'agreement', min: 0.9 }] } } },
    code: 422,
    message: 'an agreement check needs strategy: Canary or Linear',
  },
  {
    what: 'endpoint errorRate check with minCompared',
    kind: 'endpoint',
    spec: {
      config: 'titanic',
      rollout: {
        strategy: 'Canary',
        analysis: { checks: [{ name: 'errors', builtin: 'errorRate', max: 0.01, minCompared: 5 }] },
      },
    },
    code: 422,
    message: 'minCompared is for builtin: agreement',
  },
  {
    what: 'endpoint agreement check with a source',
    kind: 'endpoint',
    spec: {
      config: 'titanic',
      rollout: {
        strategy: 'Canary',
        analysis: { checks: [{ name: 'agree', builtin: 'agreement', min: 0.9, source: 'Agents' }] },
      },
    },
    code: 422,
    message: 'source is for builtin: errorRate and latencyP99',
  },
  {
    what: 'endpoint query check with a source',
    kind: 'endpoint',
    spec: {
      config: 'titanic',
      rollout: {
        strategy: 'Canary',
        analysis: { checks: [{ name: 'q', query: 'vector(0)', max: 1, source: 'Agents' }] },
      },
    },
    code: 422,
    message: 'source is for builtin: errorRate and latencyP99',
  },
  {
    what: 'endpoint check with an unknown source',
    kind: 'endpoint',
    spec: {
      config: 'titanic',
      rollout: {
        strategy: 'Canary',
        analysis: { checks: [{ name: 'errors', builtin: 'errorRate', max: 0.01, source: 'Envoy' }] },
      },
    },
    code: 422,
    message: 'Unsupported value: "Envoy"',
  },
  {
    what: 'endpoint config name longer than 63 characters',
    kind: 'endpoint',
    spec: { config: label64 },
    code: 422,
    message: /spec\.config: Too long: may not be (more than 63 bytes|longer than 63)/,
  },
  {
    what: 'endpoint host with capitals and _ (Bad_Host)',
    kind: 'endpoint',
    spec: { config: 'titanic', host: 'Bad_Host' },
    code: 422,
    message: 'spec.host in body should match',
  },
  {
    what: 'endpoint host starting with - (-x.com)',
    kind: 'endpoint',
    spec: { config: 'titanic', host: '-x.com' },
    code: 422,
    message: 'spec.host in body should match',
  },
  {
    what: 'endpoint host with a label longer than 63 characters',
    kind: 'endpoint',
    spec: { config: 'titanic', host: `${label64}.example.com` },
    code: 422,
    message: 'each label of host must be at most 63 characters',
  },
  {
    what: 'endpoint name that is not a DNS label (a.b)',
    kind: 'endpoint',
    name: 'a.b',
    spec: { config: 'titanic' },
    code: 422,
    message: 'an endpoint name must be a DNS label that starts with a letter',
  },
  {
    what: 'endpoint rollout strategy not in the enum (Recreate)',
    kind: 'endpoint',
    spec: { config: 'titanic', rollout: { strategy: 'Recreate' } },
    code: 422,
    message: 'spec.rollout.strategy: Unsupported value: "Recreate": supported values: "BlueGreen", "Canary", "Linear"',
  },
  {
    what: 'endpoint progressDeadlineSeconds 5 (minimum 10)',
    kind: 'endpoint',
    spec: { config: 'titanic', rollout: { progressDeadlineSeconds: 5 } },
    code: 422,
    message: 'spec.rollout.progressDeadlineSeconds in body should be greater than or equal to 10',
  },
  {
    what: 'endpoint historyLimit 51 (maximum 50)',
    kind: 'endpoint',
    spec: { config: 'titanic', historyLimit: 51 },
    code: 422,
    message: 'spec.historyLimit in body should be less than or equal to 50',
  },
];

describe('invalid objects are rejected by the API server', () => {
  let namespace: string;
  beforeAll(async () => {
    namespace = await createNamespace(kc, 'chart-invalid');
    ownNamespaces.push(namespace);
  });

  it('the corpus is large enough', () => {
    expect(invalid.length).toBeGreaterThanOrEqual(15);
    expect(new Set(invalid.map((c) => c.what)).size).toBe(invalid.length);
  });

  it.each(invalid.map((c, i) => ({ ...c, i })))(
    'rejects: $what',
    async ({ kind, name, spec, via = 'apply', code, message, i }) => {
      const objectName = name ?? `invalid-${i}`;
      const [r, obj] = {
        model: [resources.model, models(namespace, objectName, spec)],
        config: [resources.endpointConfig, configs(namespace, objectName, spec)],
        endpoint: [resources.endpoint, endpoints(namespace, objectName, spec)],
      }[kind] as [Resource, KubeObject];
      if (spec === undefined) delete obj.spec;
      let error: KubeError | undefined;
      try {
        await (via === 'create' ? user.create(r, obj) : user.apply(r, obj));
      } catch (err) {
        if (!(err instanceof KubeError)) throw err;
        error = err;
      }
      expect(error, 'the API server accepted it').toBeDefined();
      if (code !== undefined) expect(error!.code, error!.message).toBe(code);
      else expect(error!.code, error!.message).toBeGreaterThanOrEqual(400);
      if (typeof message === 'string') expect(error!.message).toContain(message);
      else expect(error!.message).toMatch(message);
      // Never stored, so never half-processed.
      expect(await user.get(r, namespace, objectName)).toBeUndefined();
    },
  );
});

// ---------------------------------------------------------------------------------------------------
// 4. Server-side dry-run of everything the chart renders

// Kinds whose CRDs are not installed in the test cluster: the API server cannot check them.
// ServiceMonitor (monitoring.coreos.com, Prometheus Operator) is rendered by production-values.yaml
// only; the chart tests (test/chart/) check its rendering.
const kindsWithoutCrd = new Set(['ServiceMonitor']);

describe('server-side dry-run of the rendered chart', () => {
  let releaseNamespace: string;
  const scenarios = readdirSync(join(root, 'ci'))
    .filter((f) => f.endsWith('-values.yaml'))
    .sort();
  const createdNamespaces: string[] = [];

  beforeAll(async () => {
    releaseNamespace = await createNamespace(kc, 'chart-dry-run');
    ownNamespaces.push(releaseNamespace);
  });
  afterAll(async () => {
    for (const namespace of createdNamespaces) await deleteNamespace(kc, namespace).catch(() => {});
  });

  it('the skipped kinds are really not served by this cluster', async () => {
    expect(scenarios).toContain('default-values.yaml');
    const served = await kubectl(['api-resources', '--api-group=monitoring.coreos.com', '-o', 'name']);
    expect(served.trim(), 'monitoring.coreos.com is installed now: stop skipping its kinds').toBe('');
  });

  it.each(scenarios)('the API server accepts every object of %s', async (scenario) => {
    const rendered = await helm(helm4, [
      'template',
      'dry-run',
      '.',
      '-n',
      releaseNamespace,
      '-f',
      join('ci', scenario),
    ]);
    const objects = parseAllDocuments(rendered)
      .map((d) => d.toJS() as KubeObject | null)
      .filter((o): o is KubeObject => o !== null);
    const skipped = objects.filter((o) => kindsWithoutCrd.has(o.kind!));
    const checked = objects.filter((o) => !kindsWithoutCrd.has(o.kind!));
    expect(checked.length).toBeGreaterThan(5);
    if (scenario === 'production-values.yaml') expect(skipped.map((o) => o.kind)).toEqual(['ServiceMonitor']);
    else expect(skipped).toEqual([]);

    // A dry-run creates nothing, so objects in a namespace that does not exist yet (a watched one,
    // say team-a) would fail for that reason alone: create those namespaces first.
    const namespaces = new Set(checked.map((o) => o.metadata.namespace).filter((n): n is string => Boolean(n)));
    for (const namespace of namespaces) {
      if ((await apiError(core.readNamespace({ name: namespace })))?.code !== 404) continue;
      await core.createNamespace({ body: { metadata: { name: namespace } } });
      createdNamespaces.push(namespace);
    }

    // One kubectl apply per namespace (kubectl refuses objects of another namespace than its -n);
    // objects without one go, as with helm install, to the release namespace.
    const byNamespace = Map.groupBy(checked, (o) => o.metadata.namespace ?? releaseNamespace);
    const lines: string[] = [];
    for (const [namespace, group] of byNamespace) {
      const manifest = group.map((o) => stringify(o)).join('---\n');
      // --force-conflicts: the CRDs exist already, owned by release ml-operator's field manager.
      const out = await kubectl(
        [
          'apply',
          '--server-side',
          '--dry-run=server',
          '--force-conflicts',
          '--field-manager=chart-dry-run',
          '-n',
          namespace,
          '-f',
          '-',
        ],
        manifest,
      );
      lines.push(...out.trim().split('\n'));
    }
    expect(lines).toHaveLength(checked.length);
    for (const line of lines) expect(line).toMatch(/ serverside-applied \(server dry run\)$/);
  });
});

// ---------------------------------------------------------------------------------------------------
// 5. The helm lifecycle

/** The chart's files, copied so that a test can change them without touching the working tree. */
function copyChart(dest: string): string {
  for (const entry of [
    'Chart.yaml',
    'Chart.lock',
    'values.yaml',
    'values.schema.json',
    '.helmignore',
    'README.md',
    'templates',
    'charts/controller',
  ]) {
    cpSync(join(root, entry), join(dest, entry), { recursive: true });
  }
  return dest;
}

const addedField = {
  name: 'description',
  description: 'A free-form description of the model, for people (added by the CRD upgrade test).',
};

/** Adds the optional spec.description to the MachineLearningModel CRD template of a chart copy. */
function addModelDescriptionField(chart: string): void {
  const file = join(chart, 'templates', 'crds', 'machinelearningmodels.ml-operator.dev.yaml');
  const text = readFileSync(file, 'utf8');
  const anchor = '              properties:\n                image:\n';
  expect(text.split(anchor)).toHaveLength(2);
  const field = `              properties:\n                ${addedField.name}:\n                  description: "${addedField.description}"\n                  type: string\n                  maxLength: 1024\n                image:\n`;
  writeFileSync(file, text.replace(anchor, field));
}

async function modelSpecProperties(): Promise<string[]> {
  const crd = await crdApi.readCustomResourceDefinition({ name: 'machinelearningmodels.ml-operator.dev' });
  return Object.keys(crd.spec.versions[0].schema!.openAPIV3Schema!.properties!.spec.properties!);
}

async function manifestObjectsExist(bin: string, name: string, namespace: string): Promise<number> {
  const manifest = await helm(bin, ['get', 'manifest', name, '-n', namespace]);
  const count = parseAllDocuments(manifest).filter((d) => d.toJS() !== null).length;
  const found = await kubectl(['get', '-n', namespace, '-f', '-', '-o', 'name'], manifest);
  expect(found.trim().split('\n')).toHaveLength(count);
  return count;
}

describe('the helm lifecycle', () => {
  const common = [
    '--set',
    'controller.replicaCount=0',
    '--set',
    'controller.podDisruptionBudget.enabled=false',
    '--wait',
    '--timeout',
    '2m',
  ];
  let usersNamespace: string;
  let userObjects: Map<string, string>;
  let crdUidsBefore: string[];
  const second = { name: '', namespace: '' };

  beforeAll(async () => {
    usersNamespace = await createNamespace(kc, 'chart-users');
    ownNamespaces.push(usersNamespace);
    crdUidsBefore = await crdUids();
    userObjects = await createUserObjects(usersNamespace, 'before');
  });

  it('helm 4 installs a second release beside ml-operator, without CRDs nor namespace', async () => {
    second.namespace = await createNamespace(kc, 'chart-second');
    second.name = second.namespace;
    ownNamespaces.push(second.namespace);
    await helm(helm4, [
      'install',
      second.name,
      '.',
      '-n',
      second.namespace,
      '--set',
      'crds.enabled=false',
      '--set',
      'namespace.create=false',
      '--set',
      `namespace.name=${second.namespace}`,
      ...common,
    ]);
    ownReleases.push({ helm: helm4, name: second.name, namespace: second.namespace });
    expect(await lastRevision(helm4, second.name, second.namespace)).toMatchObject({ revision: 1, status: 'deployed' });
    const manifest = await helm(helm4, ['get', 'manifest', second.name, '-n', second.namespace]);
    const kinds = parseAllDocuments(manifest)
      .map((d) => d.toJS()?.kind)
      .filter(Boolean);
    expect(kinds).not.toContain('CustomResourceDefinition');
    expect(kinds).not.toContain('Namespace');
    expect(kinds).toEqual(
      expect.arrayContaining([
        'ServiceAccount',
        'ClusterRole',
        'ClusterRoleBinding',
        'Deployment',
        'Service',
        'ConfigMap',
      ]),
    );
    expect(await manifestObjectsExist(helm4, second.name, second.namespace)).toBe(kinds.length);
    // The CRDs still belong to ml-operator.
    for (const name of crdNames) {
      const crd = await crdApi.readCustomResourceDefinition({ name });
      expect(crd.metadata?.annotations?.['meta.helm.sh/release-name']).toBe(release.name);
    }
  });

  it('helm upgrade of ml-operator with a new optional CRD field: the API accepts it, user objects are kept', async () => {
    const before = await lastRevision(helm4, release.name, release.namespace);
    expect(before.status).toBe('deployed');
    expect(await modelSpecProperties()).not.toContain(addedField.name);

    const chart = copyChart(join(scratch, 'chart-with-description'));
    addModelDescriptionField(chart);
    sharedReleaseToRestore = before.revision;
    await helm(helm4, [
      'upgrade',
      release.name,
      chart,
      '-n',
      release.namespace,
      '--reuse-values',
      '--wait',
      '--timeout',
      '2m',
    ]);
    expect(await lastRevision(helm4, release.name, release.namespace)).toMatchObject({
      revision: before.revision + 1,
      status: 'deployed',
    });
    expect(await modelSpecProperties()).toContain(addedField.name);
    const crd = await crdApi.readCustomResourceDefinition({ name: 'machinelearningmodels.ml-operator.dev' });
    expect(crd.status?.conditions?.find((c) => c.type === 'Established')?.status).toBe('True');

    // The API server switches to the new schema asynchronously after the CRD update.
    const described = models(usersNamespace, 'described', { image, description: 'the titanic survival model' });
    const stored = await waitFor('a model with spec.description to be accepted', 30_000, () =>
      user.apply(resources.model, described),
    );
    expect((stored.spec as { description?: string }).description).toBe('the titanic survival model');
    const explained = await waitFor('kubectl explain to know spec.description', 30_000, async () => {
      const out = await kubectl(['explain', 'mlm.spec.description']);
      return words(out).includes(addedField.description) ? out : undefined;
    });
    expect(explained).toContain('FIELD: description <string>');
    await expectUserObjects(usersNamespace, userObjects);
    expect(await crdUids()).toEqual(crdUidsBefore);
  });

  it('helm rollback of ml-operator: the revision goes back, the CRD loses the field, objects stay', async () => {
    const upgraded = await lastRevision(helm4, release.name, release.namespace);
    const target = sharedReleaseToRestore!;
    await helm(helm4, ['rollback', release.name, String(target), '-n', release.namespace, '--wait', '--timeout', '2m']);
    sharedReleaseToRestore = undefined;
    const last = await lastRevision(helm4, release.name, release.namespace);
    expect(last).toMatchObject({
      revision: upgraded.revision + 1,
      status: 'deployed',
      description: `Rollback to ${target}`,
    });
    expect(await modelSpecProperties()).not.toContain(addedField.name);

    // The field is unknown again (once the API server has switched back); the object that used it
    // is still there, and the field is pruned from what the API server returns.
    const described = models(usersNamespace, 'described-again', { image, description: 'x' });
    const message = await waitFor('spec.description to be refused again', 30_000, async () => {
      try {
        await user.apply(resources.model, described);
        await user.delete(resources.model, usersNamespace, 'described-again');
        return undefined;
      } catch (err) {
        return err instanceof KubeError ? err.message : undefined;
      }
    });
    expect(message).toContain('.spec.description: field not declared in schema');
    const kept = await user.get<KubeObject & { spec: { description?: string; image: string } }>(
      resources.model,
      usersNamespace,
      'described',
    );
    expect(kept?.spec.image).toBe(image);
    await waitFor('spec.description to be pruned on read', 30_000, async () => {
      const model = await user.get<KubeObject & { spec: Record<string, unknown> }>(
        resources.model,
        usersNamespace,
        'described',
      );
      return model && !('description' in model.spec) ? true : undefined;
    });
    await expectUserObjects(usersNamespace, userObjects);
    expect(await crdUids()).toEqual(crdUidsBefore);
    // The shared release is the working tree's chart again: every object it manages is there.
    await manifestObjectsExist(helm4, release.name, release.namespace);
  });

  it('helm 4 uninstall of the second release keeps the CRDs and every user object', async () => {
    const during = await createUserObjects(second.namespace, 'in-release-namespace');
    await helm(helm4, ['uninstall', second.name, '-n', second.namespace, '--wait']);
    ownReleases.splice(
      ownReleases.findIndex((r) => r.name === second.name),
      1,
    );
    expect(
      (
        await apiError(
          kc
            .makeApiClient(k8s.AppsV1Api)
            .readNamespacedDeployment({ name: `${second.name}-controller`, namespace: second.namespace }),
        )
      )?.code,
    ).toBe(404);
    expect(await crdUids()).toEqual(crdUidsBefore);
    await expectUserObjects(usersNamespace, userObjects);
    await expectUserObjects(second.namespace, during);
  });

  // The same lifecycle with helm 3, on a release that also creates the models' namespace: uninstall
  // keeps it (helm.sh/resource-policy: keep) with the user objects in it.
  it('helm 3 installs, upgrades, rolls back and uninstalls a release that creates the models namespace, which is kept', async () => {
    const namespace = await createNamespace(kc, 'chart-helm3');
    ownNamespaces.push(namespace);
    const name = namespace;
    const modelsNamespace = `${namespace}-models`;
    ownNamespaces.push(modelsNamespace);
    const values = [
      '--set',
      'crds.enabled=false',
      '--set',
      'namespace.create=true',
      '--set',
      `namespace.name=${modelsNamespace}`,
    ];
    await helm(helm3, ['install', name, '.', '-n', namespace, ...values, ...common]);
    ownReleases.push({ helm: helm3, name, namespace });
    const created = await core.readNamespace({ name: modelsNamespace });
    expect(created.metadata?.annotations?.['helm.sh/resource-policy']).toBe('keep');
    expect(created.metadata?.annotations?.['meta.helm.sh/release-name']).toBe(name);
    const objects = await createUserObjects(modelsNamespace, 'helm3');

    await helm(helm3, [
      'upgrade',
      name,
      '.',
      '-n',
      namespace,
      '--reuse-values',
      '--set',
      'controller.logLevel=debug',
      '--wait',
      '--timeout',
      '2m',
    ]);
    expect(await lastRevision(helm3, name, namespace)).toMatchObject({ revision: 2, status: 'deployed' });
    await helm(helm3, ['rollback', name, '1', '-n', namespace, '--wait', '--timeout', '2m']);
    expect(await lastRevision(helm3, name, namespace)).toMatchObject({
      revision: 3,
      status: 'deployed',
      description: 'Rollback to 1',
    });
    await manifestObjectsExist(helm3, name, namespace);
    await expectUserObjects(modelsNamespace, objects);

    const out = await helm(helm3, ['uninstall', name, '-n', namespace, '--wait']);
    ownReleases.splice(
      ownReleases.findIndex((r) => r.name === name),
      1,
    );
    expect(out).toMatch(new RegExp(`kept due to the resource policy:\\s*\\[Namespace\\] ${modelsNamespace}`));
    expect(
      (
        await apiError(
          kc.makeApiClient(k8s.AppsV1Api).readNamespacedDeployment({ name: `${name}-controller`, namespace }),
        )
      )?.code,
    ).toBe(404);
    const kept = await core.readNamespace({ name: modelsNamespace });
    expect(kept.status?.phase).toBe('Active');
    expect(kept.metadata?.uid).toBe(created.metadata?.uid);
    await expectUserObjects(modelsNamespace, objects);
    expect(await crdUids()).toEqual(crdUidsBefore);
  });
});
