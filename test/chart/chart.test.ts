// The Helm charts (the ml-operator umbrella at the repository root and its controller subchart),
// checked with the real binaries: helm 4 and helm 3 lint and render every ci/*-values.yaml scenario,
// helm-unittest runs both charts' suites, values.schema.json rejects bad values with a message that
// names them, and the package holds the chart and nothing else. No cluster needed.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMap, isScalar, parse, parseAllDocuments, parseDocument, type YAMLMap } from 'yaml';
import { toolPath } from '../../ci/tools/build.ts';
import { expectedPackageFiles, isolatedHelmEnv } from '../../ci/release/checkout.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const subchart = join(root, 'charts', 'controller');
const helmMajors = { helm4: toolPath('helm'), helm3: helm3Path() } as const;
const scenarios = readdirSync(join(root, 'ci'))
  .filter((f) => f.endsWith('-values.yaml'))
  .sort();

/**
 * go build names the helm 3 binary after its package (`helm`), where toolPath('helm3') expects
 * `helm3`: take whichever exists, until ci/tools/build.ts settles it.
 */
function helm3Path(): string {
  const expected = toolPath('helm3');
  return existsSync(expected) ? expected : join(dirname(expected), 'helm');
}

let scratch: string;
let helmEnv: NodeJS.ProcessEnv;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd = root): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: helmEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs a command that must succeed, and returns its stdout. */
async function ok(command: string, args: string[], cwd = root): Promise<string> {
  const result = await run(command, args, cwd);
  expect(result.code, `${command} ${args.join(' ')}\n${result.stdout}\n${result.stderr}`).toBe(0);
  return result.stdout;
}

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

function objects(manifest: string): K8sObject[] {
  return parseAllDocuments(manifest)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

function scenarioPath(scenario: string): string {
  return join(root, 'ci', scenario);
}

beforeAll(() => {
  for (const binary of [...Object.values(helmMajors), toolPath('helm-unittest')]) {
    if (!existsSync(binary)) throw new Error(`${binary} is missing: build the tools first (npm run tools)`);
  }
  scratch = mkdtempSync(join(tmpdir(), 'ml-operator-chart-'));
  // Helm reads and writes its own config, cache and data: keep them out of the user's home.
  helmEnv = isolatedHelmEnv(scratch);
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('chart metadata', () => {
  const chart = parse(readFileSync(join(root, 'Chart.yaml'), 'utf8'));
  const subchartMeta = parse(readFileSync(join(subchart, 'Chart.yaml'), 'utf8'));

  it('tags the controller with the package.json version', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(chart.appVersion).toBe(pkg.version);
    expect(subchartMeta.appVersion).toBe(pkg.version);
  });

  it('depends on the controller subchart unpacked in charts/', () => {
    expect(chart.dependencies).toEqual([
      { name: 'controller', version: subchartMeta.version, repository: 'file://charts/controller' },
    ]);
    const lock = parse(readFileSync(join(root, 'Chart.lock'), 'utf8'));
    expect(lock.dependencies).toEqual(chart.dependencies);
  });

  it('declares the same global values in both charts', () => {
    const schema = (dir: string) => JSON.parse(readFileSync(join(dir, 'values.schema.json'), 'utf8'));
    expect(schema(subchart).properties.global).toEqual(schema(root).properties.global);
    const values = (dir: string) => parse(readFileSync(join(dir, 'values.yaml'), 'utf8'));
    expect(values(subchart).global).toEqual(values(root).global);
  });

  // helm-docs style: every value is documented where it is declared, by a `# --` comment on the
  // value itself or on the map that holds it.
  it.each([
    ['ml-operator', root],
    ['controller', subchart],
  ])('documents every value of %s with a `# --` comment', (_name, dir) => {
    const doc = parseDocument(readFileSync(join(dir, 'values.yaml'), 'utf8'));
    const undocumented: string[] = [];
    const walk = (map: YAMLMap, path: string, covered: boolean) => {
      map.items.forEach((pair, i) => {
        const key = isScalar(pair.key) ? String(pair.key.value) : '?';
        const comment = [
          (pair.key as { commentBefore?: string }).commentBefore,
          i === 0 ? map.commentBefore : undefined,
        ].join('\n');
        const documented = covered || /^\s*-- /m.test(comment);
        if (isMap(pair.value) && pair.value.items.length > 0) walk(pair.value, `${path}${key}.`, documented);
        else if (!documented) undocumented.push(`${path}${key}`);
      });
    };
    walk(doc.contents as YAMLMap, '', false);
    expect(undocumented).toEqual([]);
  });
});

describe.each(Object.entries(helmMajors))('%s', (major, helm) => {
  it('has a scenario for every case the chart supports', () => {
    expect(scenarios).toEqual(
      expect.arrayContaining([
        'default-values.yaml',
        'watch-namespaces-values.yaml',
        'crds-disabled-values.yaml',
        'ha-values.yaml',
        'examples-values.yaml',
      ]),
    );
  });

  it.each(scenarios)('lints the chart with ci/%s', async (scenario) => {
    const out = await ok(helm, ['lint', '--strict', '.', '-f', scenarioPath(scenario)]);
    expect(out).toContain('0 chart(s) failed');
  });

  it('lints the controller subchart on its own', async () => {
    const out = await ok(helm, ['lint', '--strict', subchart]);
    expect(out).toContain('0 chart(s) failed');
  });

  it.each(scenarios)('renders ci/%s, every object with the standard labels', async (scenario) => {
    const rendered = objects(
      await ok(helm, ['template', 'ml-operator', '.', '-n', 'ml-operator', '-f', scenarioPath(scenario)]),
    );
    expect(rendered.length).toBeGreaterThan(0);
    for (const o of rendered) {
      expect(o.metadata.labels, `${o.kind}/${o.metadata.name}`).toMatchObject({
        'app.kubernetes.io/instance': 'ml-operator',
        'app.kubernetes.io/managed-by': 'Helm',
      });
    }
    expect(rendered.filter((o) => o.kind === 'Deployment')).toHaveLength(1);
  });

  it('refuses a cluster older than Kubernetes 1.30', async () => {
    const result = await run(helm, ['template', 'ml-operator', '.', '--kube-version', '1.29.0']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/kubeVersion/);
  });

  describe('scenarios', () => {
    const render = async (scenario: string) =>
      objects(await ok(helm, ['template', 'ml-operator', '.', '-n', 'ml-operator', '-f', scenarioPath(scenario)]));
    const find = (rendered: K8sObject[], kind: string) => rendered.filter((o) => o.kind === kind);
    const args = (rendered: K8sObject[]) => {
      const [deployment] = find(rendered, 'Deployment') as unknown as {
        spec: { template: { spec: { containers: { args: string[] }[] } } };
      }[];
      return deployment.spec.template.spec.containers[0].args;
    };

    it('default: all namespaces with a ClusterRole, one replica with leader election, no PDB, the namespace kept', async () => {
      const rendered = await render('default-values.yaml');
      expect(find(rendered, 'ClusterRole').map((o) => o.metadata.name)).toContain('ml-operator-controller');
      expect(find(rendered, 'Role').map((o) => o.metadata.name)).toEqual(['ml-operator-controller-leader-election']);
      expect(find(rendered, 'PodDisruptionBudget')).toEqual([]);
      expect(args(rendered)).toContain('--leader-elect=true');
      expect(args(rendered).some((a) => a.startsWith('--watch-namespaces'))).toBe(false);
      const [namespace] = find(rendered, 'Namespace');
      expect(namespace.metadata.name).toBe('machine-learning');
      expect(namespace.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
      const [serviceAccount] = find(rendered, 'ServiceAccount');
      const [deployment] = find(rendered, 'Deployment') as unknown as {
        spec: { template: { spec: { serviceAccountName: string } } };
      }[];
      expect(deployment.spec.template.spec.serviceAccountName).toBe(serviceAccount.metadata.name);
    });

    it('watch-namespaces: Roles in each watched namespace; cluster-wide, only the nodes list of the capacity check', async () => {
      const rendered = await render('watch-namespaces-values.yaml');
      const watched = parse(readFileSync(scenarioPath('watch-namespaces-values.yaml'), 'utf8')).global
        .watchNamespaces as string[];
      expect(args(rendered)).toContain(`--watch-namespaces=${watched.join(',')}`);
      const controllerRoles = find(rendered, 'Role').filter((o) => o.metadata.name === 'ml-operator-controller');
      expect(controllerRoles.map((o) => o.metadata.namespace).sort()).toEqual([...watched].sort());
      expect(find(rendered, 'RoleBinding').filter((o) => o.metadata.name === 'ml-operator-controller')).toHaveLength(
        watched.length,
      );
      // Cluster-wide: the aggregated roles for people, and the controller's right to list nodes.
      expect(
        find(rendered, 'ClusterRole')
          .map((o) => o.metadata.name)
          .sort(),
      ).toEqual(['ml-operator-controller-nodes', 'ml-operator-edit', 'ml-operator-view']);
      expect(
        find(rendered, 'ClusterRole').find((o) => o.metadata.name === 'ml-operator-controller-nodes')!.rules,
      ).toEqual([{ apiGroups: [''], resources: ['nodes'], verbs: ['list'] }]);
      expect(find(rendered, 'ClusterRoleBinding').map((o) => o.metadata.name)).toEqual([
        'ml-operator-controller-nodes',
      ]);
    });

    it('hostpath: with watched namespaces, the cluster-wide rights are on PersistentVolumes and the nodes list', async () => {
      const rendered = await render('hostpath-values.yaml');
      const bindings = find(rendered, 'ClusterRoleBinding');
      expect(bindings.map((o) => o.metadata.name).sort()).toEqual([
        'ml-operator-controller-nodes',
        'ml-operator-controller-persistentvolumes',
      ]);
      const role = find(rendered, 'ClusterRole').find(
        (o) => o.metadata.name === 'ml-operator-controller-persistentvolumes',
      );
      expect(role?.rules).toEqual([
        {
          apiGroups: [''],
          resources: ['persistentvolumes'],
          verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'],
        },
      ]);
    });

    it('production: the Grafana dashboard, per endpoint, and the NetworkPolicy lets the controller reach Prometheus', async () => {
      const rendered = await render('production-values.yaml');
      const [dashboard] = find(rendered, 'ConfigMap').filter((o) => o.metadata.labels?.grafana_dashboard === '1');
      expect(dashboard.metadata.namespace).toBe('monitoring');
      const json = JSON.parse((dashboard.data as Record<string, string>)['ml-operator-endpoints.json']) as {
        templating: { list: { name: string }[] };
        panels: { title: string; targets: { expr: string }[] }[];
      };
      expect(json.templating.list.map((v) => v.name)).toEqual(['datasource', 'namespace', 'endpoint']);
      expect(json.panels.map((p) => p.title)).toEqual(
        expect.arrayContaining([
          'Traffic split (route weights)',
          'Error rate (5xx), by version',
          'Latency p99, by version',
          'Rollout step and canary weight',
        ]),
      );
      for (const p of json.panels) {
        expect(p.targets.length, p.title).toBeGreaterThan(0);
        for (const t of p.targets) expect(t.expr, p.title).toMatch(/namespace="\$namespace"|\$namespace-/);
      }
      const [policy] = find(rendered, 'NetworkPolicy') as unknown as {
        spec: { egress: { ports?: { port: number | string }[] }[] };
      }[];
      expect(policy.spec.egress.flatMap((e) => (e.ports ?? []).map((p) => p.port))).toContain(9090);
    });

    it('crds-disabled: no CustomResourceDefinition', async () => {
      expect(find(await render('crds-disabled-values.yaml'), 'CustomResourceDefinition')).toEqual([]);
    });

    it('ha: two replicas, leader election, a PodDisruptionBudget', async () => {
      const rendered = await render('ha-values.yaml');
      expect(args(rendered)).toContain('--leader-elect=true');
      const [pdb] = find(rendered, 'PodDisruptionBudget');
      expect(pdb.spec).toMatchObject({ minAvailable: 1 });
    });

    it('gateway-api and gateway-class: the rights of the Gateway API provider, and none on Istio', async () => {
      const rules = async (scenario: string) =>
        find(await render(scenario), 'ClusterRole').find((o) => o.metadata.name === 'ml-operator-controller')!
          .rules as { apiGroups: string[]; resources: string[] }[];
      const groups = (r: { apiGroups: string[] }[]) => r.flatMap((x) => x.apiGroups);
      const shared = await rules('gateway-api-values.yaml');
      expect(groups(shared)).not.toContain('networking.istio.io');
      expect(shared.find((r) => r.apiGroups.includes('gateway.networking.k8s.io'))!.resources).toEqual(['httproutes']);
      const perEndpoint = await rules('gateway-class-values.yaml');
      expect(perEndpoint.find((r) => r.apiGroups.includes('gateway.networking.k8s.io'))!.resources).toEqual([
        'httproutes',
        'gateways',
      ]);
      expect(groups(await rules('default-values.yaml'))).not.toContain('gateway.networking.k8s.io');
    });

    it('examples: the titanic model, config and endpoint in the models namespace', async () => {
      const examples = (await render('examples-values.yaml')).filter(
        (o) => o.apiVersion === 'ml-operator.dev/v1alpha1',
      );
      expect(examples.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`).sort()).toEqual([
        'MachineLearningEndpoint/machine-learning/titanic',
        'MachineLearningEndpointConfig/machine-learning/titanic',
        'MachineLearningModel/machine-learning/titanic',
      ]);
    });
  });

  describe('values.schema.json', () => {
    // Each bad value, and the message that must name it.
    const rejections: { what: string; values: string; message: RegExp }[] = [
      {
        what: 'a wrong type',
        values: 'crds:\n  enabled: "yes"\n',
        message: /at '\/crds\/enabled': got string, want boolean/,
      },
      {
        what: 'an unknown key at the top level',
        values: 'replicas: 2\n',
        message: /additional properties 'replicas' not allowed/,
      },
      {
        what: 'an unknown nested key',
        values: 'namespace:\n  nmae: models\n',
        message: /at '\/namespace': additional properties 'nmae' not allowed/,
      },
      {
        what: 'an unknown key in the subchart',
        values: 'controller:\n  image:\n    tagg: "1.0"\n',
        message: /at '\/image': additional properties 'tagg' not allowed/,
      },
      {
        what: 'a bad storage mode',
        values: 'controller:\n  config:\n    storage:\n      mode: nfs\n',
        message: /at '\/config\/storage\/mode': value must be one of 'pvc', 'hostPath', 'emptyDir'/,
      },
      {
        what: 'negative replicas',
        values: 'controller:\n  replicaCount: -1\n',
        message: /at '\/replicaCount': minimum: got -1, want 0/,
      },
      {
        what: 'a bad image pullPolicy',
        values: 'controller:\n  image:\n    pullPolicy: Sometimes\n',
        message: /at '\/image\/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'/,
      },
      {
        what: 'a bad namespace name',
        values: 'namespace:\n  name: Machine_Learning\n',
        message: /at '\/namespace\/name': 'Machine_Learning' does not match pattern/,
      },
      {
        what: 'a bad watched namespace',
        values: 'global:\n  watchNamespaces: [team-a, Team_B]\n',
        message: /at '\/global\/watchNamespaces\/1': 'Team_B' does not match pattern/,
      },
      {
        what: 'a bad log level',
        values: 'controller:\n  logLevel: verbose\n',
        message: /at '\/logLevel': value must be one of 'debug', 'info', 'warn', 'error'/,
      },
      {
        what: 'a port out of range',
        values: 'controller:\n  metrics:\n    port: 70000\n',
        message: /at '\/metrics\/port': maximum: got 70,?000, want 65,?535/,
      },
      {
        what: 'a digest that is not one',
        values: 'controller:\n  image:\n    digest: latest\n',
        message: /at '\/image\/digest': 'latest' does not match pattern/,
      },
      {
        what: 'an unknown routing provider',
        values: 'controller:\n  config:\n    routing:\n      provider: envoy\n',
        message: /at '\/config\/routing\/provider': value must be one of 'istio', 'gatewayAPI'/,
      },
      {
        what: 'the Gateway API provider without a Gateway to attach to',
        values: 'controller:\n  config:\n    routing:\n      provider: gatewayAPI\n',
        message:
          /at '\/config\/routing\/gatewayAPI\/gatewayClassName': minLength: got 0, want 1[\s\S]*at '\/config\/routing\/gatewayAPI\/sharedGateway\/name': minLength: got 0, want 1/,
      },
    ];

    it.each(rejections)('rejects $what', async ({ what, values, message }) => {
      const file = join(scratch, `${what.replaceAll(' ', '-')}-${major}.yaml`);
      writeFileSync(file, values);
      const result = await run(helm, ['template', 'ml-operator', '.', '-f', file]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/values don't meet the specifications of the schema/);
      expect(result.stderr).toMatch(message);
    });

    it('rejects a value set on the command line', async () => {
      const result = await run(helm, ['template', 'ml-operator', '.', '--set', 'controller.config.storage.mode=s3']);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/at '\/config\/storage\/mode': value must be one of/);
    });
  });

  it('rebuilds Chart.lock unchanged from the unpacked subchart', async () => {
    const copy = mkdtempSync(join(scratch, `dependency-build-${major}-`));
    for (const entry of ['Chart.yaml', 'Chart.lock', 'values.yaml', 'values.schema.json', '.helmignore', 'templates']) {
      cpSync(join(root, entry), join(copy, entry), { recursive: true });
    }
    cpSync(subchart, join(copy, 'charts', 'controller'), { recursive: true });
    await ok(helm, ['dependency', 'build', '.'], copy);
    expect(readFileSync(join(copy, 'Chart.lock'), 'utf8')).toBe(readFileSync(join(root, 'Chart.lock'), 'utf8'));
    const deps = await ok(helm, ['dependency', 'list', '.'], copy);
    const { version } = parse(readFileSync(join(subchart, 'Chart.yaml'), 'utf8'));
    expect(deps).toMatch(
      new RegExp(`controller\\s+${version.replaceAll('.', '\\.')}\\s+file://charts/controller\\s+ok`),
    );
  });

  it('packages the chart with its subchart and nothing of the project around it', async () => {
    const out = mkdtempSync(join(scratch, `package-${major}-`));
    await ok(helm, ['package', '.', '-d', out]);
    const [archive] = readdirSync(out);
    expect(archive).toBe(`ml-operator-${parse(readFileSync(join(root, 'Chart.yaml'), 'utf8')).version}.tgz`);
    const files = (await ok('tar', ['-tzf', join(out, archive)])).trim().split('\n').sort();
    expect(files).toEqual(expectedPackageFiles(root));
  });
});

describe('helm-unittest', () => {
  it('passes the umbrella chart suites', async () => {
    const out = await ok(toolPath('helm-unittest'), ['--strict', '--with-subchart=false', '.']);
    expect(out).toMatch(/Charts:\s+1 passed/);
  });

  it('passes the controller subchart suites', async () => {
    const out = await ok(toolPath('helm-unittest'), ['--strict', subchart]);
    expect(out).toMatch(/Charts:\s+1 passed/);
  });

  it('has one suite per template, and a snapshot of the default render', () => {
    for (const dir of [root, subchart]) {
      const templates = readdirSync(join(dir, 'templates')).filter((f) => f.endsWith('.yaml') || f === 'NOTES.txt');
      const suites = readdirSync(join(dir, 'tests'));
      for (const template of templates) {
        const suite = template === 'NOTES.txt' ? 'notes_test.yaml' : template.replace(/\.yaml$/, '_test.yaml');
        expect(suites, `${dir}: ${template}`).toContain(suite);
      }
      expect(suites).toContain('snapshot_test.yaml');
      const snapshot = parse(readFileSync(join(dir, 'tests', 'snapshot_test.yaml'), 'utf8'));
      expect(snapshot.chart).toEqual({ version: '0.1.0', appVersion: '0.1.0' });
    }
  });
});

describe('examples/', () => {
  const apiSchemas: Record<string, string> = {
    MachineLearningModel: 'machinelearningmodel.schema.json',
    MachineLearningEndpointConfig: 'machinelearningendpointconfig.schema.json',
    MachineLearningEndpoint: 'machinelearningendpoint.schema.json',
  };
  const exampleObjects = readdirSync(join(root, 'examples'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((file) => objects(readFileSync(join(root, 'examples', file), 'utf8')).map((o) => ({ file, object: o })));

  it('holds the titanic example, the A/B test and the real model servers (server-examples.test.ts checks those)', () => {
    const names = exampleObjects.map(({ file, object }) => `${file}: ${object.kind}/${object.metadata.name}`);
    const server = (dir: string, name: string) => [
      `${dir}/config.yaml: MachineLearningEndpointConfig/${name}`,
      `${dir}/endpoint.yaml: MachineLearningEndpoint/${name}`,
      `${dir}/model.yaml: MachineLearningModel/${name}`,
    ];
    expect(names).toEqual([
      'ab-test/config.yaml: MachineLearningEndpointConfig/titanic-ab',
      'ab-test/endpoint.yaml: MachineLearningEndpoint/titanic-ab',
      'ab-test/models.yaml: MachineLearningModel/titanic-a',
      'ab-test/models.yaml: MachineLearningModel/titanic-b',
      ...server('mlserver', 'iris-mlserver'),
      ...server('sklearn-server', 'iris-sklearn'),
      ...server('tf-serving', 'half-plus-two-tfserving'),
      'titanic/config.yaml: MachineLearningEndpointConfig/titanic',
      'titanic/endpoint.yaml: MachineLearningEndpoint/titanic',
      'titanic/model.yaml: MachineLearningModel/titanic',
      ...server('torchserve', 'mnist-torchserve'),
      ...server('triton', 'densenet-triton'),
      ...server('vllm', 'qwen-vllm'),
    ]);
    const ab = exampleObjects.find(
      ({ object }) => object.metadata.name === 'titanic-ab' && object.kind === 'MachineLearningEndpointConfig',
    );
    expect((ab?.object.spec as { models: { weight: number }[] }).models.map((m) => m.weight)).toEqual([80, 20]);
  });

  // Helm validates values against a JSON Schema: a throwaway chart whose values.schema.json is the
  // API's schema validates each example with the same engine, no extra dependency.
  it.each(
    exampleObjects.map(({ file, object }) => [`${file}: ${object.kind}/${object.metadata.name}`, object] as const),
  )('%s is valid against schemas/', async (_name, object) => {
    const chart = mkdtempSync(join(scratch, 'schema-check-'));
    writeFileSync(join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: schema-check\nversion: 0.0.0\n');
    cpSync(join(root, 'schemas', apiSchemas[object.kind]), join(chart, 'values.schema.json'));
    writeFileSync(join(chart, 'object.json'), JSON.stringify(object));
    await ok(helmMajors.helm4, ['template', 'x', chart, '-f', join(chart, 'object.json')]);
    // The API server drops or refuses fields its schema does not declare: every field must be declared.
    const schema = JSON.parse(readFileSync(join(root, 'schemas', apiSchemas[object.kind]), 'utf8'));
    const undeclared: string[] = [];
    const walk = (value: unknown, node: { properties?: Record<string, unknown>; items?: unknown }, path: string) => {
      if (Array.isArray(value)) value.forEach((v, i) => walk(v, node.items ?? {}, `${path}[${i}]`));
      else if (value && typeof value === 'object' && node.properties) {
        for (const [key, v] of Object.entries(value)) {
          const child = node.properties[key];
          if (!child) undeclared.push(`${path}.${key}`);
          else walk(v, child, `${path}.${key}`);
        }
      }
    };
    walk({ spec: object.spec }, schema, '');
    expect(undeclared).toEqual([]);
  });

  it("matches the chart's titanic example", async () => {
    const rendered = objects(
      await ok(helmMajors.helm4, ['template', 'ml-operator', '.', '--set', 'examples.enabled=true']),
    ).filter((o) => o.apiVersion === 'ml-operator.dev/v1alpha1');
    const titanic = exampleObjects.filter(({ file }) => file.startsWith('titanic'));
    expect(rendered).toHaveLength(titanic.length);
    for (const { object } of titanic) {
      const inChart = rendered.find((o) => o.kind === object.kind && o.metadata.name === object.metadata.name);
      expect(inChart?.spec, `${object.kind}/${object.metadata.name}`).toEqual(object.spec);
    }
  });
});
