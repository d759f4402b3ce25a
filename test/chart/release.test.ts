// Releasing the chart, without a cluster or registry: one version everywhere, `npm run version:bump`
// on a throwaway copy, `npm run chart:package` and the exact contents of the archive, the generated
// docs (README values tables, Artifact Hub annotations) kept up to date, and CHANGELOG.md.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { generatedAnnotationKeys } from '../../ci/release/artifacthub.ts';
import { changesOf, releases } from '../../ci/release/changelog.ts';
import { docs } from '../../ci/release/docs.ts';
import { exec, type ExecResult } from '../../ci/exec.ts';
import { invalidVersion, releaseVersion, versionFields, versionProblems } from '../../ci/release/versions.ts';
import { toolPath } from '../../ci/tools/build.ts';
import {
  copyCheckout,
  expectedPackageFiles,
  isolatedHelmEnv,
  repositoryRoot as root,
} from '../../ci/release/checkout.ts';

const helm = toolPath('helm');
let scratch: string;
let helmEnv: NodeJS.ProcessEnv;

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'ml-operator-release-'));
  helmEnv = isolatedHelmEnv(scratch);
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** Runs one of the release scripts as `npm run` does (under this Node.js 24). */
function script(name: string, args: string[]): Promise<ExecResult> {
  return exec(process.execPath, [join(root, 'ci', 'release', `${name}.ts`), ...args], { env: helmEnv });
}

function expectSuccess(result: ExecResult): void {
  expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
}

let copies = 0;
function checkout(): string {
  return copyCheckout(join(scratch, `checkout-${++copies}`));
}

const readYaml = (dir: string, file: string) => parse(readFileSync(join(dir, file), 'utf8'));

describe('one version', () => {
  const version = releaseVersion(root);

  it('package.json, package-lock.json, both Chart.yaml files, the subchart pin and Chart.lock agree', () => {
    expect(versionProblems(root)).toEqual([]);
    expect(versionFields(root).map((f) => f.value)).toEqual(versionFields(root).map(() => version));
  });

  it('is a semantic version without a "v"', () => {
    expect(invalidVersion(version)).toBeUndefined();
  });

  it('tags the controller image with it by default', async () => {
    const result = await exec(helm, ['template', 'ml-operator', '.'], { cwd: root, env: helmEnv });
    expectSuccess(result);
    const deployment = parseAllDocuments(result.stdout)
      .map((d) => d.toJS())
      .find((o) => o?.kind === 'Deployment');
    const repository = readYaml(root, 'charts/controller/values.yaml').image.repository;
    expect(deployment.spec.template.spec.containers[0].image).toBe(`${repository}:${version}`);
  });

  it('reports any place that disagrees', () => {
    const dir = checkout();
    const subchart = join(dir, 'charts/controller/Chart.yaml');
    writeFileSync(subchart, readFileSync(subchart, 'utf8').replace(/^appVersion: .*$/m, 'appVersion: "9.9.9"'));
    const values = join(dir, 'charts/controller/values.yaml');
    writeFileSync(values, readFileSync(values, 'utf8').replace(/^ {2}tag: ""/m, '  tag: "latest"'));
    expect(versionProblems(dir)).toEqual([
      `charts/controller/Chart.yaml appVersion is "9.9.9", package.json version is "${version}"`,
      'charts/controller/values.yaml image.tag is "latest": leave it empty so that the image follows appVersion',
    ]);
  });
});

describe('npm run version:bump', () => {
  it('sets the version everywhere, regenerates Chart.lock and the annotations, and leaves the snapshots alone', async () => {
    const dir = checkout();
    const lockBefore = readYaml(dir, 'Chart.lock');
    const snapshots = [
      'tests/__snapshot__/snapshot_test.yaml.snap',
      'charts/controller/tests/__snapshot__/snapshot_test.yaml.snap',
    ];
    const snapshotsBefore = snapshots.map((f) => readFileSync(join(dir, f), 'utf8'));

    const result = await script('bump-version', ['1.2.3', '--dir', dir]);
    expectSuccess(result);

    expect(versionProblems(dir)).toEqual([]);
    expect(releaseVersion(dir)).toBe('1.2.3');
    const lock = readYaml(dir, 'Chart.lock');
    expect(lock.dependencies).toEqual([
      { name: 'controller', repository: 'file://charts/controller', version: '1.2.3' },
    ]);
    expect(lock.digest).not.toBe(lockBefore.digest);
    // The lock is what `helm dependency build` (chart:package's first step) accepts.
    expectSuccess(await exec(helm, ['dependency', 'build', '.'], { cwd: dir, env: helmEnv }));
    expect(readYaml(dir, 'Chart.yaml').annotations['helm.sh/images']).toBe(
      '- name: controller\n  image: ghcr.io/ml-operator/controller:1.2.3\n',
    );
    expect(docs(dir, { check: true })).toEqual([]);
    expect(releases(readFileSync(join(dir, 'CHANGELOG.md'), 'utf8')).slice(0, 2)).toEqual([
      { name: 'Unreleased', date: undefined },
      { name: '1.2.3', date: new Date().toISOString().slice(0, 10) },
    ]);
    // The suites pin their own chart version: a release changes no snapshot.
    for (const args of [
      ['--strict', '--with-subchart=false', '.'],
      ['--strict', 'charts/controller'],
    ]) {
      expectSuccess(await exec(toolPath('helm-unittest'), args, { cwd: dir, env: helmEnv }));
    }
    expect(snapshots.map((f) => readFileSync(join(dir, f), 'utf8'))).toEqual(snapshotsBefore);
  });

  it.each([
    ['v1.2.3', /chart versions carry no "v" prefix \(use 1\.2\.3\)/],
    ['1.2', /is not a semantic version/],
    ['1.2.3+build.7', /build metadata/],
  ])('refuses %s and changes nothing', async (version, message) => {
    const dir = checkout();
    const before = readFileSync(join(dir, 'Chart.yaml'), 'utf8');
    const result = await script('bump-version', [version, '--dir', dir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(readFileSync(join(dir, 'Chart.yaml'), 'utf8')).toBe(before);
  });
});

describe('npm run chart:package', () => {
  it('packages the chart with its subchart, and exactly the chart', async () => {
    const dir = checkout();
    const out = join(scratch, 'dist');
    const result = await script('package', ['--dir', dir, '--out', out]);
    expectSuccess(result);
    const archive = result.stdout.trim();
    expect(basename(archive)).toBe(`ml-operator-${releaseVersion(root)}.tgz`);
    const listing = await exec('tar', ['-tzf', archive]);
    expectSuccess(listing);
    const files = listing.stdout.trim().split('\n').sort();
    expect(files).toEqual(expectedPackageFiles(dir));
    // What must never be in it, spelled out (the exact list above already excludes them).
    expect(
      files.filter((f) =>
        /node_modules|\/tests?\/|__snapshot__|\.ts$|package\.json|CHANGELOG|Dockerfile|\/ci\/|\/schemas\//.test(f),
      ),
    ).toEqual([]);
    expect(statSync(archive).size).toBeLessThan(100_000);
  });

  it('refuses to package when the versions disagree', async () => {
    const dir = checkout();
    const chart = join(dir, 'Chart.yaml');
    writeFileSync(chart, readFileSync(chart, 'utf8').replace(/^version: .*$/m, 'version: 0.0.1'));
    const result = await script('package', ['--dir', dir, '--out', join(scratch, 'refused')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /versions disagree \(fix with npm run version:bump -- X\.Y\.Z\):\n\s+Chart\.yaml version is "0\.0\.1"/,
    );
  });
});

describe('npm run docs', () => {
  it('--check passes: the README values tables and the generated annotations are up to date', async () => {
    const result = await script('docs', ['--check']);
    expectSuccess(result);
  });

  it('--check fails and names the file when a value comment changed', async () => {
    const dir = checkout();
    const values = join(dir, 'charts/controller/values.yaml');
    writeFileSync(
      values,
      readFileSync(values, 'utf8').replace(
        '# -- Endpoints reconciled at once',
        '# -- Endpoints reconciled in parallel',
      ),
    );
    const result = await script('docs', ['--check', '--dir', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('docs: out of date: README.md');
    expectSuccess(await script('docs', ['--dir', dir]));
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toMatch(
      /\| `controller.concurrency` \| int \| `16` \| Endpoints reconciled in parallel \(`--concurrency`\)\./,
    );
  });

  it('documents every value of both charts in the README', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    for (const key of [
      'crds.enabled',
      'namespace.name',
      'global.watchNamespaces',
      'controller.image.repository',
      'controller.config.storage.mode',
      'controller.resources',
    ]) {
      expect(readme).toContain(`| \`${key}\` |`);
    }
  });
});

describe('Chart.yaml annotations', () => {
  const annotations = readYaml(root, 'Chart.yaml').annotations as Record<string, string>;
  const list = (key: string) => parse(annotations[key]) as Record<string, unknown>[];

  it('are all strings, as Helm requires', () => {
    for (const [key, value] of Object.entries(annotations)) expect(typeof value, key).toBe('string');
    expect(Object.keys(annotations)).toEqual(
      expect.arrayContaining(generatedAnnotationKeys.filter((k) => k !== 'artifacthub.io/changes')),
    );
  });

  it('list the three CRDs, with an example of each from examples/titanic', () => {
    const crds = list('artifacthub.io/crds');
    expect(crds.map((c) => c.kind).sort()).toEqual([
      'MachineLearningEndpoint',
      'MachineLearningEndpointConfig',
      'MachineLearningModel',
    ]);
    for (const crd of crds)
      expect(Object.keys(crd).sort()).toEqual(['description', 'displayName', 'kind', 'name', 'version']);
    const examples = ['model.yaml', 'config.yaml', 'endpoint.yaml'].map((f) =>
      readYaml(join(root, 'examples/titanic'), f),
    );
    expect(list('artifacthub.io/crdsExamples')).toEqual(expect.arrayContaining(examples));
    expect(list('artifacthub.io/crdsExamples')).toHaveLength(3);
  });

  it('list the controller image at appVersion, for Artifact Hub and as helm.sh/images', () => {
    const images = [{ name: 'controller', image: `ghcr.io/ml-operator/controller:${releaseVersion(root)}` }];
    expect(list('artifacthub.io/images')).toEqual(images);
    expect(list('helm.sh/images')).toEqual(images);
  });

  it('carry the license, links and the changes of this version', () => {
    expect(annotations['artifacthub.io/license']).toBe(
      JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).license,
    );
    for (const link of list('artifacthub.io/links'))
      expect(link).toEqual({ name: expect.any(String), url: expect.stringMatching(/^https:\/\//) });
    const changes = changesOf(readFileSync(join(root, 'CHANGELOG.md'), 'utf8'), releaseVersion(root));
    expect(list('artifacthub.io/changes')).toEqual(changes);
  });
});

describe('CHANGELOG.md', () => {
  const changelog = readFileSync(join(root, 'CHANGELOG.md'), 'utf8');

  it('follows Keep a Changelog: Unreleased first, then dated releases, newest first', () => {
    expect(changelog).toMatch(/^# Changelog\n/);
    expect(changelog).toContain('[Keep a Changelog](https://keepachangelog.com/en/1.1.0/)');
    const [unreleased, ...released] = releases(changelog);
    expect(unreleased).toEqual({ name: 'Unreleased', date: undefined });
    for (const release of released) {
      expect(invalidVersion(release.name)).toBeUndefined();
      expect(release.date).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    }
    const dates = released.map((r) => r.date);
    expect(dates).toEqual([...dates].sort().reverse());
  });

  it('has an entry for the current version', () => {
    expect(changesOf(changelog, releaseVersion(root))?.length).toBeGreaterThan(0);
  });
});
