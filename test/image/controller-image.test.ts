// The controller image, built for real from controller/Dockerfile with podman on the local Node.js 24
// base (ci/image/), run as the chart runs it (read-only root filesystem, user 65532), and pushed to a
// real OCI registry on loopback. The base image is cached by content; podman's layer cache makes a
// build of unchanged sources take seconds, and a changed controller/src recompiles only.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireDebianPackages } from '../../ci/debian.ts';
import { requireRegistryBinary, startRegistry } from '../../ci/cluster/registry.ts';
import {
  buildControllerImage,
  checkImage,
  imageLayers,
  imagePackages,
  pushImage,
  runReadOnly,
  sizeReport,
  type BuildResult,
  type Layer,
  type RunCheck,
} from '../../ci/image/build.ts';
import { nodeVersion } from '../../ci/image/base.ts';
import { podman, podmanOk } from '../../ci/image/podman.ts';
import { repositoryRoot } from '../../ci/release/checkout.ts';

const tag = `localhost/ml-operator/controller:test-${process.pid}`;
let built: BuildResult;
let layers: Layer[];
let checks: RunCheck[];

beforeAll(async () => {
  requireDebianPackages(imagePackages, 'the image test');
  requireRegistryBinary();
  built = await buildControllerImage({ tag });
  layers = await imageLayers(tag);
  checks = await checkImage(tag);
}, 900_000);

afterAll(async () => {
  if (built) await podman(['rmi', tag]);
});

const check = (what: string) => {
  const found = checks.find((c) => c.what === what);
  if (!found) throw new Error(`no run ${what}`);
  return found;
};

describe('controller/Dockerfile built with podman', () => {
  it('is based on the local Node.js of .nvmrc, runs node as user 65532 with the controller as entrypoint', async () => {
    const [config] = JSON.parse(await podmanOk(['image', 'inspect', tag])) as {
      Config: { User: string; Entrypoint: string[]; Env: string[] };
    }[];
    expect(config.Config.User).toBe('65532:65532');
    expect(config.Config.Entrypoint[0]).toBe('node');
    expect(config.Config.Entrypoint.at(-1)).toBe('/app/dist/main.js');
    expect(config.Config.Env).toContain('NODE_ENV=production');
    const version = await runReadOnly(tag, ['--version'], ['--entrypoint=node']);
    expect(version.stdout.trim(), version.stderr).toBe(`v${nodeVersion()}`);
    expect(nodeVersion()).toBe(readFileSync(join(repositoryRoot, '.nvmrc'), 'utf8').trim().replace(/^v/, ''));
  });

  it('starts the controller read-only as user 65532: its whole module graph loads and an unknown flag is refused with exit 2', () => {
    const run = check('controller --no-such-flag');
    expect(run.output).toMatch(/unknown flag --no-such-flag; known flags: --config/);
    expect(run.output).not.toMatch(/ERR_MODULE_NOT_FOUND|not allowed in NODE_OPTIONS|EROFS|EACCES/);
    expect(run.code, run.output).toBe(2);
  });

  it('starts the fetcher read-only as user 65532: without arguments it prints its usage and exits with 2', () => {
    const run = check('fetcher without arguments');
    expect(run.output).toMatch(/usage: fetcher/);
    expect(run.code, run.output).toBe(2);
  });

  it('starts the model agent read-only as user 65532: without --model it prints its usage and exits with 2', () => {
    const run = check('agent without arguments');
    expect(run.output).toMatch(/--model is required[\s\S]*usage: agent/);
    expect(run.code, run.output).toBe(2);
  });

  it.each(['model.tar.gz', 'model.zip'])(
    'unpacks %s from a read-only claim into a volume of user 65532 (the image carries tar, gzip and unzip)',
    (archive) => {
      const run = check(`fetcher pvc://models/${archive}`);
      expect(run.output).toMatch(/"msg":"done"/);
      expect(run.output).toMatch(/unpacked: config\.json, weights\.bin$/);
      expect(run.code, run.output).toBe(0);
    },
  );

  it('writes nothing at run time outside its volumes: the runs above had a read-only root filesystem', async () => {
    const write = await runReadOnly(
      tag,
      ['-e', "require('node:fs').writeFileSync('/app/probe', 'x')"],
      ['--entrypoint=node'],
    );
    expect(write.stderr).toMatch(/EROFS/);
    expect(write.code).not.toBe(0);
  });

  it('keeps its layers lean: apt leaves no caches, and nothing but the base and node_modules passes 30 MB', () => {
    process.stderr.write(`${sizeReport(layers)}\n`);
    const apt = layers.find((l) => l.createdBy.includes('apt-get install'));
    expect(apt, layers.map((l) => l.createdBy).join('\n')).toBeDefined();
    expect(apt!.size).toBeLessThan(30e6);
    const large = layers.slice(1).filter((l) => l.size > 30e6 && !l.createdBy.includes('./node_modules'));
    expect(large).toEqual([]);
  });

  it('is pushed to a local OCI registry, which serves the manifest podman pushed with every layer', async () => {
    const registry = await startRegistry();
    try {
      const pushed = await pushImage(tag, registry.host, 'ml-operator/controller', 'test');
      process.stderr.write(`${sizeReport(layers, pushed)}\n`);
      expect(pushed.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(pushed.layerSizes).toHaveLength(layers.length);
      // Compressed, every layer is smaller than unpacked.
      pushed.layerSizes.forEach((size, i) =>
        expect(size, layers[i].createdBy).toBeLessThanOrEqual(Math.max(layers[i].size, 1024)),
      );
    } finally {
      await registry.stop();
    }
  });
});
