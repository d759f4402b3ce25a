// Publishing the chart to a real OCI registry (Debian's docker-registry on loopback) with
// `npm run chart:publish`, from a throwaway copy of the chart bumped by `npm run version:bump`, then
// installing it from the registry into the local control plane with helm 4 and helm 3: show, pull,
// install, upgrade to the next version, uninstall. A published version is never replaced without
// --force, and credentials from the environment log in to a registry that requires them.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { exec, type ExecResult } from '../../ci/exec.ts';
import { releaseVersion } from '../../ci/release/versions.ts';
import { toolPath } from '../../ci/tools/build.ts';
import { waitFor } from '../../ci/wait.ts';
import { copyCheckout, expectedPackageFiles, repositoryRoot } from '../../ci/release/checkout.ts';
import { adminConfig, apiError, createNamespace, deleteNamespace } from './kube.ts';
import { requireRegistryBinary, startRegistry, type Registry } from '../../ci/cluster/registry.ts';

const kc = adminConfig();
const kubeconfig = inject('kubeconfigPath');
const helmMajors = { helm4: toolPath('helm'), helm3: toolPath('helm3') } as const;
const crdNames = ['machinelearningmodels', 'machinelearningendpointconfigs', 'machinelearningendpoints'].map(
  (plural) => `${plural}.ml-operator.dev`,
);

// Two versions after the repository's, so that nothing here looks like a real release.
const [major, minor, patch] = releaseVersion(repositoryRoot)
  .match(/^(\d+)\.(\d+)\.(\d+)/)!
  .slice(1)
  .map(Number);
const first = `${major}.${minor}.${patch + 1}`;
const second = `${major}.${minor}.${patch + 2}`;

// htpasswd line for publisher / ml-operator-test (bcrypt, cost 4: the registry accepts only bcrypt).
const publisher = { username: 'publisher', password: 'ml-operator-test' };
const htpasswd = 'publisher:$2a$04$Ba4hS4n5c9tW3PL3DIs/v.HV66n6ZlGiQRmFqeROvPZCZJy1NV1u2\n';

let scratch: string;
let helmEnv: NodeJS.ProcessEnv;
let checkout: string;
const registries: Registry[] = [];
let registry: Registry;
const namespaces: string[] = [];
const releases: { helm: string; name: string; namespace: string }[] = [];

const chartRef = () => `oci://${registry.host}/charts/ml-operator`;

function script(name: string, args: string[], env: NodeJS.ProcessEnv = helmEnv): Promise<ExecResult> {
  return exec(process.execPath, [join(repositoryRoot, 'ci', 'release', `${name}.ts`), ...args], { env });
}

async function ok(command: string, args: string[], env: NodeJS.ProcessEnv = helmEnv): Promise<string> {
  const result = await exec(command, args, { env });
  expect(result.code, `${command} ${args.join(' ')}\n${result.stdout}\n${result.stderr}`).toBe(0);
  return result.stdout;
}

/** A fresh set of Helm homes: no stored registry credentials, no cache. */
function helmHomes(name: string): NodeJS.ProcessEnv {
  const home = join(scratch, 'helm', name);
  const { HELM_REGISTRY_USERNAME: _user, HELM_REGISTRY_PASSWORD: _password, ...env } = process.env;
  return {
    ...env,
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
  };
}

beforeAll(async () => {
  requireRegistryBinary();
  scratch = mkdtempSync(join(tmpdir(), 'ml-operator-registry-'));
  helmEnv = helmHomes('default');
  registry = await startRegistry(join(scratch, 'registry'));
  registries.push(registry);
  checkout = copyCheckout(join(scratch, 'checkout'));
  const bumped = await script('bump-version', [first, '--dir', checkout]);
  expect(bumped.code, bumped.stderr).toBe(0);
});

afterAll(async () => {
  for (const { helm, name, namespace } of releases) {
    await exec(helm, ['uninstall', name, '--namespace', namespace, '--kubeconfig', kubeconfig], { env: helmEnv });
  }
  for (const namespace of namespaces) await deleteNamespace(kc, namespace).catch(() => {});
  for (const r of registries) await r.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('npm run chart:publish to an OCI registry', () => {
  it(`publishes ${first} and prints the digest the registry serves`, async () => {
    const result = await script('publish', [`oci://${registry.host}/charts`, '--plain-http', '--dir', checkout]);
    expect(result.code, `${result.stdout}\n${result.stderr}\n${registry.logs()}`).toBe(0);
    expect(result.stdout).toContain(`Published ${chartRef()}:${first}\n`);
    const digest = result.stdout.match(/^Digest: (sha256:[0-9a-f]{64})$/m)?.[1];
    const manifest = await fetch(`http://${registry.host}/v2/charts/ml-operator/manifests/${first}`, {
      method: 'HEAD',
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(manifest.status).toBe(200);
    expect(manifest.headers.get('docker-content-digest')).toBe(digest);
  });

  it.each(Object.entries(helmMajors))(
    'serves what was published to %s: helm show chart and helm show values',
    async (_major, helm) => {
      const chart = parse(await ok(helm, ['show', 'chart', chartRef(), '--version', first, '--plain-http']));
      expect(chart).toEqual(parse(readFileSync(join(checkout, 'Chart.yaml'), 'utf8')));
      expect(chart.annotations['helm.sh/images']).toContain(`ghcr.io/ml-operator/controller:${first}`);
      const values = await ok(helm, ['show', 'values', chartRef(), '--version', first, '--plain-http']);
      expect(values.trimEnd()).toBe(readFileSync(join(checkout, 'values.yaml'), 'utf8').trimEnd());
    },
  );

  it(`refuses to publish ${first} again without --force, and names the way out`, async () => {
    const result = await script('publish', [`oci://${registry.host}/charts`, '--plain-http', '--dir', checkout]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`chart:publish: ${chartRef()}:${first} already exists.`);
    expect(result.stderr).toContain(`pass --force to overwrite ${chartRef()}:${first}`);
    const forced = await script('publish', [
      `oci://${registry.host}/charts`,
      '--plain-http',
      '--force',
      '--dir',
      checkout,
    ]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toContain(`Published ${chartRef()}:${first}\n`);
  });

  it(`publishes the next version, ${second}`, async () => {
    const bumped = await script('bump-version', [second, '--dir', checkout]);
    expect(bumped.code, bumped.stderr).toBe(0);
    const result = await script('publish', [`oci://${registry.host}/charts`, '--plain-http', '--dir', checkout]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`Published ${chartRef()}:${second}\n`);
  });
});

async function crdsExist(): Promise<boolean> {
  const api = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const missing = await Promise.all(crdNames.map((name) => apiError(api.readCustomResourceDefinition({ name }))));
  return missing.every((error) => error === undefined);
}

async function controllerImage(namespace: string, release: string): Promise<string | undefined> {
  const deployment = await kc
    .makeApiClient(k8s.AppsV1Api)
    .readNamespacedDeployment({ name: `${release}-controller`, namespace });
  return deployment.spec?.template.spec?.containers[0].image;
}

describe.each(Object.entries(helmMajors))('%s installs the chart from the registry', (major, helm) => {
  it(`pulls ${first}: the archive holds the chart and nothing else`, async () => {
    const dir = mkdtempSync(join(scratch, `pull-${major}-`));
    await ok(helm, ['pull', chartRef(), '--version', first, '--plain-http', '--destination', dir]);
    const archive = join(dir, `ml-operator-${first}.tgz`);
    expect(existsSync(archive)).toBe(true);
    const files = (await ok('tar', ['-tzf', archive])).trim().split('\n').sort();
    expect(files).toEqual(expectedPackageFiles(checkout));
  });

  it(`installs ${first}, upgrades to ${second} and uninstalls, keeping the CRDs`, async () => {
    const namespace = await createNamespace(kc, `registry-${major}`);
    namespaces.push(namespace);
    const name = `from-registry-${major}-${randomBytes(2).toString('hex')}`;
    // The CRDs are cluster-wide and kept on uninstall: install them only when no release has, so
    // that two releases never both claim them.
    const values = [
      '--set',
      `crds.enabled=${!(await crdsExist())}`,
      '--set',
      'namespace.create=false',
      '--set',
      `namespace.name=${namespace}`,
    ];
    const cluster = ['--namespace', namespace, '--kubeconfig', kubeconfig];
    const target = [...cluster, '--plain-http'];

    await ok(helm, ['install', name, chartRef(), '--version', first, ...target, ...values]);
    releases.push({ helm, name, namespace });
    const api = kc.makeApiClient(k8s.ApiextensionsV1Api);
    for (const crd of crdNames) {
      await waitFor(`CRD ${crd} to be Established`, 30_000, async () => {
        const conditions = (await api.readCustomResourceDefinition({ name: crd })).status?.conditions ?? [];
        return conditions.some((c) => c.type === 'Established' && c.status === 'True') ? true : undefined;
      });
    }
    expect(await controllerImage(namespace, name)).toBe(`ghcr.io/ml-operator/controller:${first}`);
    const listed = () => ok(helm, ['list', ...cluster, '--output', 'json']).then((out) => JSON.parse(out));
    expect(await listed()).toEqual([
      expect.objectContaining({ name, chart: `ml-operator-${first}`, app_version: first, status: 'deployed' }),
    ]);

    await ok(helm, ['upgrade', name, chartRef(), '--version', second, ...target, ...values]);
    expect(await controllerImage(namespace, name)).toBe(`ghcr.io/ml-operator/controller:${second}`);
    expect(await listed()).toEqual([
      expect.objectContaining({ name, chart: `ml-operator-${second}`, revision: '2', status: 'deployed' }),
    ]);

    await ok(helm, ['uninstall', name, ...cluster]);
    releases.splice(
      releases.findIndex((r) => r.name === name),
      1,
    );
    await waitFor(`Deployment ${name}-controller to be deleted`, 30_000, async () =>
      (
        await apiError(
          kc.makeApiClient(k8s.AppsV1Api).readNamespacedDeployment({ name: `${name}-controller`, namespace }),
        )
      )?.code === 404
        ? true
        : undefined,
    );
    expect(await crdsExist()).toBe(true);
  });
});

describe('a registry that requires a login', () => {
  let secured: Registry;
  let archive: string;

  beforeAll(async () => {
    secured = await startRegistry(join(scratch, 'secured-registry'), { htpasswd });
    registries.push(secured);
    const packaged = await script('package', ['--dir', checkout, '--out', join(scratch, 'secured-dist')]);
    expect(packaged.code, packaged.stderr).toBe(0);
    archive = packaged.stdout.trim();
  });

  const publish = (env: NodeJS.ProcessEnv) =>
    script('publish', [`oci://${secured.host}/charts`, '--plain-http', '--package', archive], env);

  it('fails clearly without credentials', async () => {
    const result = await publish(helmHomes('anonymous'));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /chart:publish: cannot tell whether oci:\/\/127\.0\.0\.1:\d+\/charts\/ml-operator:\S+ exists:\n.*(401|unauthorized|credential)/i,
    );
  });

  it('fails clearly with a wrong password', async () => {
    const result = await publish({
      ...helmHomes('wrong-password'),
      HELM_REGISTRY_USERNAME: publisher.username,
      HELM_REGISTRY_PASSWORD: 'not-the-password',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/registry login 127\.0\.0\.1:\d+ .*exited with 1:\n.*401/s);
    expect(result.stderr).not.toContain('not-the-password');
  });

  it('logs in with HELM_REGISTRY_USERNAME and HELM_REGISTRY_PASSWORD and publishes', async () => {
    const env = {
      ...helmHomes('publisher'),
      HELM_REGISTRY_USERNAME: publisher.username,
      HELM_REGISTRY_PASSWORD: publisher.password,
    };
    const result = await publish(env);
    expect(result.code, `${result.stderr}\n${secured.logs()}`).toBe(0);
    expect(result.stdout).toContain(`Published oci://${secured.host}/charts/ml-operator:${second}\n`);
    expect(result.stderr).not.toContain(publisher.password);
  });
});
