// `npm run image:sklearn`: builds the scikit-learn model server of examples/sklearn-server with
// podman on the plain Debian base made here (ci/image/base.ts), and the iris models its build trains
// (the Dockerfile's `artifacts` stage, written out with `podman build --output`): two good ones and a
// deliberately bad one, with the agreement of each pair on the 150 iris rows (agreement.json); prints
// the image's size layer by layer, pushes it to a local OCI registry (ci/cluster/registry.ts),
// publishes the artifacts (and their SHA-256 digests) and agreement.json under the artifact host's
// paths, and serves each model:
// fetched and unpacked by the ml-operator fetcher, the image run read-only as user 65532, timed from
// the container's start to ready, asked for predictions, stopped with SIGTERM.
//
//   npm run image:sklearn [-- --no-cache] [--tag=NAME] [--artifacts-dir=DIR]
//
// --artifacts-dir: where to publish the artifacts (default ~/.cache/ml-operator/image/sklearn-artifacts),
// e.g. a local cluster's artifacts directory, whose server answers for https://models.example.com/.
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheRoot } from '../cache.mjs';
import { artifactHost, publishArtifact } from '../cluster/artifacts.ts';
import { artifactHandler } from '../cluster/pod-runtime/artifact-server.ts';
import { startRegistry } from '../cluster/registry.ts';
import { ensureDebianPackages } from '../debian.ts';
import { log, withProgress } from '../log.ts';
import { freePort } from '../processes.ts';
import { waitFor } from '../wait.ts';
import { main as fetcher } from '../../controller/src/fetcher/main.ts';
import { debianBaseImage } from './base.ts';
import { debianBaseImageBuilt } from './base-builds.ts';
import {
  buildImage,
  imageLayers,
  imagePackages,
  imageUser,
  pruneImages,
  pushImage,
  sizeReport,
  type BuildResult,
  type Pushed,
} from './build.ts';
import { ensurePodman, podman, podmanOk } from './podman.ts';

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
export const sklearnContext = join(root, 'examples', 'sklearn-server');
export const sklearnTag = 'localhost/ml-operator/sklearn-server:1.0.0';
/** The artifacts' directory on the artifact host (https://models.example.com/sklearn-iris/...). */
export const sklearnArtifactDir = '/sklearn-iris';
export const defaultArtifactsDir = () => join(cacheRoot(), 'image', 'sklearn-artifacts');

export interface SklearnArtifact {
  /** iris-1.0.0 */
  name: string;
  /** Its path on the artifact host: /sklearn-iris/iris-1.0.0.tar.gz. */
  path: string;
  /** The published file. */
  file: string;
  bytes: number;
  sha256: string;
}

/** Where agreement.json is published on the artifact host (https://models.example.com/sklearn-iris/agreement.json). */
export const sklearnAgreementPath = `${sklearnArtifactDir}/agreement.json`;

/**
 * For each pair of models, named `a|b` with the artifacts' names sorted ("iris-1.0.0|iris-2.0.0"), the
 * share of the 150 iris rows on which both predict the same class, computed at build time.
 */
export type SklearnAgreement = Record<string, number>;

export interface SklearnBuild extends BuildResult {
  artifacts: SklearnArtifact[];
  agreement: SklearnAgreement;
  artifactSeconds: number;
}

/**
 * Builds the server image and the artifacts stage (the models trained at build time), and publishes
 * each artifact into `artifactsDir` under /sklearn-iris/, with `<file>.sha256` beside it (the
 * format of sha256sum).
 */
export async function buildSklearnServer({
  tag = sklearnTag,
  noCache = false,
  artifactsDir = defaultArtifactsDir(),
}: { tag?: string; noCache?: boolean; artifactsDir?: string } = {}): Promise<SklearnBuild> {
  ensurePodman();
  const base = await debianBaseImageBuilt();
  const buildArgs = { BASE_IMAGE: base };
  const dockerfile = join(sklearnContext, 'Dockerfile');
  const started = Date.now();
  await withProgress(
    'image',
    `building examples/sklearn-server/Dockerfile as ${tag} (podman build, BASE_IMAGE=${base}${noCache ? ', no layer cache' : ''})`,
    () => buildImage({ dockerfile, context: sklearnContext, tag, buildArgs, noCache }),
  );
  const seconds = (Date.now() - started) / 1000;
  const id = (await podmanOk(['image', 'inspect', '--format', '{{.Id}}', tag])).trim();
  const out = mkdtempSync(join(tmpdir(), 'ml-operator-sklearn-artifacts-'));
  const artifactsStarted = Date.now();
  try {
    // The training stage starts from the server image's package layer, which the build above has
    // just made or found: never with --no-cache, which would install the packages again.
    await withProgress('image', "training the iris models (the Dockerfile's artifacts stage)", () =>
      buildImage({ dockerfile, context: sklearnContext, buildArgs, target: 'artifacts', output: out }),
    );
    const artifacts = readdirSync(out)
      .filter((f) => f.endsWith('.tar.gz'))
      .sort()
      .map((f) => {
        const bytes = readFileSync(join(out, f));
        const path = `${sklearnArtifactDir}/${f}`;
        publishArtifact(artifactsDir, path, bytes);
        const sha256 = createHash('sha256').update(bytes).digest('hex');
        const file = join(artifactsDir, path.slice(1));
        writeFileSync(`${file}.sha256`, `${sha256}  ${f}\n`);
        return { name: f.replace(/\.tar\.gz$/, ''), path, file, bytes: bytes.length, sha256 };
      });
    if (artifacts.length === 0)
      throw new Error(`the artifacts stage wrote no .tar.gz (found: ${readdirSync(out).join(', ') || 'nothing'})`);
    const agreementBytes = readFileSync(join(out, 'agreement.json'));
    const agreement = JSON.parse(agreementBytes.toString('utf8')) as SklearnAgreement;
    publishArtifact(artifactsDir, sklearnAgreementPath, agreementBytes);
    await pruneImages(base);
    return {
      image: tag,
      id,
      base,
      seconds,
      artifacts,
      agreement,
      artifactSeconds: (Date.now() - artifactsStarted) / 1000,
    };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/**
 * Fetches `artifact` into a new directory under `scratch` with the ml-operator fetcher (over HTTP
 * from a server of `artifactsDir`, as the cluster's artifact server answers, its digest checked)
 * and makes it readable to every user, as a pod's fsGroup makes the model volume to its server.
 * Returns the directory.
 */
export async function fetchArtifact(artifact: SklearnArtifact, artifactsDir: string, scratch: string): Promise<string> {
  const target = join(scratch, artifact.name);
  const server = createServer(artifactHandler(artifactsDir));
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const lines: string[] = [];
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${artifact.path}`;
    const code = await fetcher([`--sha256=${artifact.sha256}`, url, target], {}, { log: (line) => lines.push(line) });
    if (code !== 0) throw new Error(`the fetcher exited with ${code} for ${url}:\n${lines.join('\n')}`);
  } finally {
    server.closeAllConnections();
    server.close();
  }
  const readable = (dir: string) => {
    chmodSync(dir, 0o755);
    for (const entry of readdirSync(dir)) {
      const p = join(dir, entry);
      if (statSync(p).isDirectory()) readable(p);
      else chmodSync(p, 0o644);
    }
  };
  readable(scratch);
  return target;
}

export interface RunningServer {
  name: string;
  /** http://127.0.0.1:PORT */
  url: string;
  /** When `podman run` was started (Date.now()). */
  started: number;
  logs: () => Promise<string>;
  /** `podman stop` (SIGTERM, then SIGKILL after `graceSeconds`): the exit code and how long it took. */
  stop(graceSeconds: number): Promise<{ code: number; ms: number }>;
  remove(): Promise<void>;
}

let serial = 0;

/**
 * Runs the server image as the chart runs a model server: root filesystem read-only, user 65532,
 * `modelDir` mounted read-only at /opt/ml/model, MODEL_PATH and PORT as the controller sets them, in
 * a network namespace of its own (podman's bridge) like a pod; its port 8080 is published on a free
 * port of 127.0.0.1 only.
 */
export async function startSklearnServer(
  image: string,
  modelDir: string,
  env: Record<string, string> = {},
): Promise<RunningServer> {
  const port = await freePort();
  const name = `ml-operator-sklearn-${process.pid}-${++serial}`;
  const started = Date.now();
  await podmanOk([
    'run',
    '--detach',
    `--name=${name}`,
    '--read-only',
    `--user=${imageUser}`,
    `--publish=127.0.0.1:${port}:8080`,
    '--env=MODEL_PATH=/opt/ml/model',
    '--env=PORT=8080',
    ...Object.entries(env).map(([k, v]) => `--env=${k}=${v}`),
    `--volume=${modelDir}:/opt/ml/model:ro`,
    image,
  ]);
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    started,
    logs: async () => {
      const r = await podman(['logs', name]);
      return r.stdout + r.stderr;
    },
    async stop(graceSeconds) {
      const t0 = Date.now();
      await podmanOk(['stop', `--time=${graceSeconds}`, name], { timeoutMs: (graceSeconds + 30) * 1000 });
      const ms = Date.now() - t0;
      const code = Number((await podmanOk(['inspect', '--format', '{{.State.ExitCode}}', name])).trim());
      return { code, ms };
    },
    async remove() {
      await podman(['rm', '--force', '--time=0', name]);
    },
  };
}

/** Polls `url` until it answers 200 (each request bounded to 2 s); returns the milliseconds since `since`. */
export async function waitReady(
  url: string,
  since: number,
  timeoutMs = 60_000,
  explain?: () => Promise<string>,
): Promise<number> {
  await waitFor(
    `${url} to answer 200`,
    timeoutMs,
    async () => {
      const r = await fetch(url, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
      return r?.status === 200 ? true : undefined;
    },
    explain,
  );
  return Date.now() - since;
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const unknown = args.filter(
    (a) => a !== '--no-cache' && !a.startsWith('--tag=') && !a.startsWith('--artifacts-dir='),
  );
  if (unknown.length) {
    process.stderr.write(
      `unknown argument ${unknown.join(' ')}\nusage: npm run image:sklearn [-- --no-cache] [--tag=NAME] [--artifacts-dir=DIR]\n`,
    );
    process.exit(2);
  }
  const tag = args.find((a) => a.startsWith('--tag='))?.slice('--tag='.length) ?? sklearnTag;
  const artifactsDir =
    args.find((a) => a.startsWith('--artifacts-dir='))?.slice('--artifacts-dir='.length) ?? defaultArtifactsDir();
  const started = Date.now();
  ensureDebianPackages(imagePackages, 'npm run image:sklearn');
  const hadBase = (await podman(['image', 'exists', debianBaseImage()])).code === 0;
  const built = await buildSklearnServer({ tag, noCache: args.includes('--no-cache'), artifactsDir });
  const baseSize = (await imageLayers(built.base)).reduce((s, l) => s + l.size, 0);
  log(`image: base ${built.base}: ${mb(baseSize)} unpacked${hadBase ? ' (cached)' : ''}`);
  const registry = await startRegistry();
  let pushed: Pushed;
  try {
    pushed = await pushImage(
      built.image,
      registry.host,
      'ml-operator/sklearn-server',
      tag.slice(tag.lastIndexOf(':') + 1),
    );
  } finally {
    await registry.stop();
  }
  process.stdout.write(
    `${built.image} (${built.id.slice(0, 12)}), built in ${built.seconds.toFixed(1)}s; pushed as ${pushed.reference}@${pushed.digest}\n`,
  );
  process.stdout.write(`${sizeReport(await imageLayers(built.image), pushed)}\n`);
  process.stdout.write(`artifacts (trained in ${built.artifactSeconds.toFixed(1)}s), published in ${artifactsDir}:\n`);
  for (const a of built.artifacts)
    process.stdout.write(`  https://${artifactHost}${a.path}  ${a.bytes} bytes  sha256 ${a.sha256}\n`);
  process.stdout.write(`agreement on the 150 iris rows (https://${artifactHost}${sklearnAgreementPath}):\n`);
  for (const [pair, share] of Object.entries(built.agreement)) process.stdout.write(`  ${pair}  ${share}\n`);
  const scratch = mkdtempSync(join(tmpdir(), 'ml-operator-sklearn-run-'));
  let failed = 0;
  try {
    for (const a of built.artifacts) {
      const dir = await fetchArtifact(a, artifactsDir, scratch);
      const server = await startSklearnServer(built.image, dir);
      try {
        const readyMs = await waitReady(`${server.url}/healthz`, server.started, 60_000, server.logs);
        const response = await fetch(`${server.url}/predict`, { signal: AbortSignal.timeout(10_000) });
        const answer = (await response.json()) as { model?: string; labels?: string[] };
        const stopped = await server.stop(30);
        const ok = response.status === 200 && stopped.code === 0;
        if (!ok) failed++;
        process.stdout.write(
          `${ok ? 'ok  ' : 'FAIL'} ${a.name}: ready ${readyMs} ms after podman run; GET /predict ${response.status} ${answer.model} ${JSON.stringify(answer.labels)}; SIGTERM: exit ${stopped.code} in ${stopped.ms} ms\n`,
        );
        if (!ok) process.stdout.write(await server.logs());
      } finally {
        await server.remove();
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  log(`image: done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  process.exit(failed ? 1 : 0);
}
