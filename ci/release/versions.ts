// The one version of a release, and every place that must carry it: package.json (the source),
// package-lock.json, both Chart.yaml files (chart version and appVersion, which tags the controller
// image), the umbrella's pin of the subchart, Chart.lock. The subchart's image tag default stays
// empty so that it follows appVersion.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

export const subchartDir = join('charts', 'controller');

/**
 * semver.org's grammar without build metadata: OCI tags cannot hold `+` (helm push rewrites it to
 * `_`), so a chart version with one would be published under another name.
 */
const semverPattern =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$/;

/** Why `version` cannot be a release version, or undefined when it can. */
export function invalidVersion(version: string): string | undefined {
  if (semverPattern.test(version)) return undefined;
  if (/^v\d/.test(version) && semverPattern.test(version.slice(1)))
    return `"${version}": chart versions carry no "v" prefix (use ${version.slice(1)})`;
  if (version.includes('+')) return `"${version}": build metadata ("+...") is not allowed, OCI tags cannot hold "+"`;
  return `"${version}" is not a semantic version (MAJOR.MINOR.PATCH, optionally -PRERELEASE)`;
}

export interface VersionField {
  /** Where, as a person would look for it: `Chart.yaml appVersion`. */
  place: string;
  value: unknown;
}

/** What package.json, package-lock.json, Chart.yaml, Chart.lock and values.yaml may hold of a version. */
interface VersionedFile {
  version?: unknown;
  appVersion?: unknown;
  packages?: Record<string, { version?: unknown } | undefined>;
  dependencies?: { name: string; version: string }[];
  image?: { tag?: unknown };
}

function readJson(root: string, file: string): VersionedFile {
  return JSON.parse(readFileSync(join(root, file), 'utf8')) as VersionedFile;
}

function readYaml(root: string, file: string): VersionedFile {
  return parse(readFileSync(join(root, file), 'utf8')) as VersionedFile;
}

function controllerDependency(file: { dependencies?: { name: string; version: string }[] }): string | undefined {
  return file.dependencies?.find((d) => d.name === 'controller')?.version;
}

/** Every place that must hold the release version, read from the checkout at `root`. */
export function versionFields(root: string): VersionField[] {
  const pkg = readJson(root, 'package.json');
  const lock = readJson(root, 'package-lock.json');
  const chart = readYaml(root, 'Chart.yaml');
  const chartLock = readYaml(root, 'Chart.lock');
  const subchart = readYaml(root, join(subchartDir, 'Chart.yaml'));
  return [
    { place: 'package.json version', value: pkg.version },
    { place: 'package-lock.json version', value: lock.version },
    { place: 'package-lock.json packages[""].version', value: lock.packages?.['']?.version },
    { place: 'Chart.yaml version', value: chart.version },
    { place: 'Chart.yaml appVersion', value: chart.appVersion },
    { place: 'Chart.yaml dependencies[controller].version', value: controllerDependency(chart) },
    { place: 'Chart.lock dependencies[controller].version', value: controllerDependency(chartLock) },
    { place: 'charts/controller/Chart.yaml version', value: subchart.version },
    { place: 'charts/controller/Chart.yaml appVersion', value: subchart.appVersion },
  ];
}

/** What disagrees with package.json's version, one sentence each; empty when all agree. */
export function versionProblems(root: string): string[] {
  const [source, ...others] = versionFields(root);
  const problems: string[] = [];
  const invalid =
    typeof source.value === 'string' ? invalidVersion(source.value) : `${JSON.stringify(source.value)} is not a string`;
  if (invalid) problems.push(`${source.place}: ${invalid}`);
  for (const { place, value } of others) {
    if (value !== source.value)
      problems.push(`${place} is ${JSON.stringify(value)}, ${source.place} is ${JSON.stringify(source.value)}`);
  }
  const tag = readYaml(root, join(subchartDir, 'values.yaml')).image?.tag;
  if (tag !== '' && tag !== source.value) {
    problems.push(
      `charts/controller/values.yaml image.tag is ${JSON.stringify(tag)}: leave it empty so that the image follows appVersion`,
    );
  }
  return problems;
}

/** The release version (package.json's). */
export function releaseVersion(root: string): string {
  return readJson(root, 'package.json').version as string;
}
