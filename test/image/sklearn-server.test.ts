// The scikit-learn model server of examples/sklearn-server, built for real with podman on the local
// Debian base (ci/image/sklearn.ts), with the iris models its build trains (two good ones and one
// trained on shuffled labels, with the agreement of each pair computed at build time). Each model is
// fetched and unpacked by the ml-operator fetcher over HTTP (its digest checked), mounted read-only
// at /opt/ml/model, and served by the image run as the chart runs model servers: root filesystem
// read-only, user 65532. Predictions are checked against the iris data set of the image's own
// scikit-learn; the gateway's load client drives the request it sends (GET /predict).
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireDebianPackages } from '../../ci/debian.ts';
import { imageLayers, imagePackages, runReadOnly, sizeReport } from '../../ci/image/build.ts';
import { podman, podmanOk } from '../../ci/image/podman.ts';
import {
  buildSklearnServer,
  fetchArtifact,
  startSklearnServer,
  waitReady,
  type RunningServer,
  type SklearnBuild,
} from '../../ci/image/sklearn.ts';
import { describeReport, startLoad } from '../../ci/traffic/load.ts';

const tag = `localhost/ml-operator/sklearn-server:test-${process.pid}`;
const scratch = mkdtempSync(join(tmpdir(), 'ml-operator-sklearn-test-'));
const artifactsDir = join(scratch, 'artifacts');
let built: SklearnBuild;
const servers = new Map<string, RunningServer>();
const modelDirs = new Map<string, string>();
const readyMs = new Map<string, number>();
let iris: { x: number[][]; y: number[] };
const classes = ['setosa', 'versicolor', 'virginica'];
/** The model trained on shuffled labels: a shadow test's candidate that must fail. */
const badModel = 'iris-permuted-1.0.0';

interface Prediction {
  predictions: number[];
  labels: string[];
  model: string;
  pod: string;
}

async function post(server: RunningServer, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${server.url}/predict`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  requireDebianPackages(imagePackages, 'the image test');
  built = await buildSklearnServer({ tag, artifactsDir });
  // The data set, as the image's scikit-learn ships it (the server never sees it).
  const dump = await runReadOnly(
    tag,
    [
      '-c',
      'import json; from sklearn.datasets import load_iris; d = load_iris(); print(json.dumps({"x": d.data.tolist(), "y": d.target.tolist()}))',
    ],
    ['--entrypoint=python3'],
  );
  if (dump.code !== 0) throw new Error(`load_iris in the image: exit ${dump.code}: ${dump.stderr}`);
  iris = JSON.parse(dump.stdout);
  mkdirSync(join(scratch, 'models'));
  for (const a of built.artifacts) modelDirs.set(a.name, await fetchArtifact(a, artifactsDir, join(scratch, 'models')));
  await Promise.all(
    built.artifacts.map(async (a) => {
      const server = await startSklearnServer(tag, modelDirs.get(a.name)!);
      servers.set(a.name, server);
      readyMs.set(a.name, await waitReady(`${server.url}/healthz`, server.started, 90_000, server.logs));
    }),
  );
  process.stderr.write(
    `sklearn server: built in ${built.seconds.toFixed(1)}s, artifacts in ${built.artifactSeconds.toFixed(1)}s (${built.artifacts.map((a) => `${a.name} ${a.bytes} B`).join(', ')}); ready after podman run: ${[...readyMs].map(([k, v]) => `${k} ${v} ms`).join(', ')}\n`,
  );
}, 900_000);

afterAll(async () => {
  for (const s of servers.values()) await s.remove();
  if (built) await podman(['rmi', tag]);
  rmSync(scratch, { recursive: true, force: true });
});

describe('examples/sklearn-server built with podman', () => {
  it('runs python3 server.py as user 65532 on the plain Debian base, MODEL_PATH /opt/ml/model, without Node.js', async () => {
    const [config] = JSON.parse(await podmanOk(['image', 'inspect', tag])) as {
      Config: { User: string; Entrypoint: string[]; Env: string[] };
    }[];
    expect(config.Config.User).toBe('65532:65532');
    expect(config.Config.Entrypoint).toEqual(['python3', '-u', '/app/server.py']);
    expect(config.Config.Env).toContain('MODEL_PATH=/opt/ml/model');
    expect(built.base).toMatch(/^localhost\/ml-operator\/debian:/);
    const node = await runReadOnly(tag, ['-c', 'command -v node || echo none'], ['--entrypoint=sh']);
    expect(node.stdout.trim()).toBe('none');
    const layers = await imageLayers(tag);
    process.stderr.write(`${sizeReport(layers)}\n`);
    // Without the Pythran compiler's dependencies (g++, Boost, Python's headers) the packages take
    // about 230 MB, with them about 770 MB.
    const total = layers.reduce((s, l) => s + l.size, 0);
    expect(total).toBeLessThan(450e6);
  });

  it('trains three models at build time, each a .tar.gz whose digest is published beside it and which the fetcher unpacks into metadata.json and model.joblib', () => {
    expect(built.artifacts.map((a) => a.path)).toEqual([
      '/sklearn-iris/iris-1.0.0.tar.gz',
      '/sklearn-iris/iris-2.0.0.tar.gz',
      '/sklearn-iris/iris-permuted-1.0.0.tar.gz',
    ]);
    for (const a of built.artifacts) {
      expect(readFileSync(`${a.file}.sha256`, 'utf8')).toBe(`${a.sha256}  ${a.name}.tar.gz\n`);
      expect(a.bytes).toBeLessThan(100_000);
      expect(
        readdirSync(modelDirs.get(a.name)!)
          .filter((f) => !f.startsWith('.'))
          .sort(),
      ).toEqual(['metadata.json', 'model.joblib']);
      const metadata = JSON.parse(readFileSync(join(modelDirs.get(a.name)!, 'metadata.json'), 'utf8')) as {
        name: string;
        version: string;
        classes: string[];
      };
      expect(`${metadata.name}-${metadata.version}`).toBe(a.name);
      expect(metadata.classes).toEqual(classes);
    }
  });

  it('is ready once the model is loaded: /healthz names the model and the artifact the fetcher fetched', async () => {
    for (const a of built.artifacts) {
      const r = await fetch(`${servers.get(a.name)!.url}/healthz`, { signal: AbortSignal.timeout(10_000) });
      expect(r.status).toBe(200);
      const body = (await r.json()) as {
        status: string;
        model: string;
        classes: string[];
        artifact: { uri: string; sha256: string };
      };
      expect(body).toMatchObject({ status: 'ready', model: a.name.replace(/-(?=\d)/, '/'), classes });
      expect(body.artifact.sha256).toBe(a.sha256);
      expect(body.artifact.uri).toMatch(new RegExp(`${a.path.replaceAll('.', '\\.')}$`));
    }
  });

  it('predicts the iris data set mostly right with each good model, the setosa rows right with both, and says which model answered', async () => {
    const answers = new Map<string, Prediction>();
    for (const a of built.artifacts.filter((x) => x.name !== badModel)) {
      const { status, json } = await post(servers.get(a.name)!, { instances: iris.x });
      expect(status, JSON.stringify(json)).toBe(200);
      const p = json as unknown as Prediction;
      expect(p.model).toBe(a.name.replace(/-(?=\d)/, '/'));
      expect(p.predictions).toHaveLength(iris.x.length);
      for (const [i, c] of p.predictions.entries()) {
        expect([0, 1, 2]).toContain(c);
        expect(p.labels[i]).toBe(classes[c]);
      }
      const right = p.predictions.filter((c, i) => c === iris.y[i]).length;
      process.stderr.write(`${p.model}: ${right}/${iris.x.length} iris rows right\n`);
      expect(right / iris.x.length).toBeGreaterThan(0.9);
      iris.y.forEach((c, i) => {
        if (c === 0) expect(p.predictions[i], `row ${i} (setosa)`).toBe(0);
      });
      answers.set(a.name, p);
    }
    const models = [...answers.values()].map((p) => p.model);
    expect(new Set(models).size).toBe(2);
  });

  it('serves the bad model (trained on shuffled labels) wrong on most rows, and each pair agrees on the served rows exactly as agreement.json says', async () => {
    const predictions = new Map<string, number[]>();
    for (const a of built.artifacts) {
      const { status, json } = await post(servers.get(a.name)!, { instances: iris.x });
      expect(status).toBe(200);
      predictions.set(a.name, (json as unknown as Prediction).predictions);
    }
    const right = predictions.get(badModel)!.filter((c, i) => c === iris.y[i]).length;
    process.stderr.write(`${badModel}: ${right}/${iris.x.length} iris rows right\n`);
    expect(right / iris.x.length).toBeLessThan(0.6);
    const names = [...predictions.keys()].sort();
    const served: Record<string, number> = {};
    for (const [i, a] of names.entries()) {
      for (const b of names.slice(i + 1)) {
        const pa = predictions.get(a)!;
        served[`${a}|${b}`] = pa.filter((c, row) => c === predictions.get(b)![row]).length / pa.length;
      }
    }
    process.stderr.write(`agreement on the served rows: ${JSON.stringify(served)}\n`);
    expect(served).toEqual(built.agreement);
    expect(JSON.parse(readFileSync(join(artifactsDir, 'sklearn-iris', 'agreement.json'), 'utf8'))).toEqual(
      built.agreement,
    );
    expect(built.agreement[`iris-1.0.0|${badModel}`]).toBeLessThan(0.6);
    expect(built.agreement['iris-1.0.0|iris-2.0.0']).toBeGreaterThan(0.9);
  });

  it('refuses what is not a batch of four numbers with 400, and a batch over its limit with 413, and stays ready', async () => {
    const server = servers.get(built.artifacts[0].name)!;
    for (const body of [
      {},
      { instances: [] },
      { instances: [[5.1, 3.5, 1.4]] },
      { instances: [[5.1, 3.5, 1.4, 'x']] },
      { instances: 'abc' },
    ]) {
      const { status, json } = await post(server, body);
      expect(status, JSON.stringify(body)).toBe(400);
      expect(json.error).toBeTypeOf('string');
    }
    const raw = await fetch(`${server.url}/predict`, {
      method: 'POST',
      body: 'not json',
      signal: AbortSignal.timeout(10_000),
    });
    expect(raw.status).toBe(400);
    const tooMany = await post(server, { instances: Array.from({ length: 1001 }, () => [5.1, 3.5, 1.4, 0.2]) });
    expect(tooMany.status).toBe(413);
    expect((await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(10_000) })).status).toBe(200);
  });

  it('answers the load client of the gateway tests (GET /predict, and POST with instances) every time, naming its pod', async () => {
    for (const a of built.artifacts) {
      const server = servers.get(a.name)!;
      const get = startLoad({
        url: `${server.url}/predict`,
        host: 'iris.example.com',
        requests: 200,
        concurrency: 8,
        maxDurationMs: 30_000,
        timeoutMs: 10_000,
      });
      const body = JSON.stringify({ instances: [[6.3, 3.3, 6.0, 2.5]] });
      const postRun = startLoad({
        url: `${server.url}/predict`,
        host: 'iris.example.com',
        method: 'POST',
        body,
        requests: 200,
        concurrency: 8,
        maxDurationMs: 30_000,
        timeoutMs: 10_000,
      });
      for (const [what, run] of [
        ['GET', get],
        ['POST', postRun],
      ] as const) {
        const report = await run.done;
        process.stderr.write(`${a.name} ${what} /predict: ${describeReport(report)}\n`);
        expect(report.sent).toBe(200);
        expect(report.failed, report.errors.join('; ')).toBe(0);
        expect(
          run.samples.every(
            (s) => typeof s.backend?.pod === 'string' && s.backend.model === a.name.replace(/-(?=\d)/, '/'),
          ),
        ).toBe(true);
      }
    }
  });

  it('exits 1 without ever being ready when MODEL_PATH holds no model', async () => {
    const empty = join(scratch, 'empty');
    mkdirSync(empty, { mode: 0o755 });
    const server = await startSklearnServer(tag, empty);
    try {
      const state = await (async () => {
        const deadline = Date.now() + 60_000;
        while (Date.now() < deadline) {
          const [status, code] = (
            await podmanOk(['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', server.name])
          )
            .trim()
            .split(' ');
          if (status === 'exited') return Number(code);
          const r = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
          if (r) expect(r.status).toBe(503);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        throw new Error(`still running after 60 s:\n${await server.logs()}`);
      })();
      expect(state).toBe(1);
      expect(await server.logs()).toMatch(/cannot load the model.*metadata\.json/);
    } finally {
      await server.remove();
    }
  });

  it('stops on SIGTERM well within the grace period, with exit code 0 (not killed), and no longer answers', async () => {
    const grace = 10;
    for (const a of built.artifacts) {
      const server = servers.get(a.name)!;
      const stopped = await server.stop(grace);
      process.stderr.write(`${a.name}: SIGTERM to exit ${stopped.ms} ms (podman stop)\n`);
      expect(stopped.code, await server.logs()).toBe(0);
      expect(stopped.ms).toBeLessThan(grace * 1000);
      expect(await server.logs()).toMatch(/"msg": "shutting down", "signal": "SIGTERM"[\s\S]*"msg": "stopped"/);
      await expect(fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
    }
  });
});
