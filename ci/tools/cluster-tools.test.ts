// A first `npm start` builds only the tools a local cluster runs: every one it starts must be among
// them (or it would fail on a fresh machine), and none of the test suite's others.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { binaries, clusterTools } from './build.ts';

const controlPlane = readFileSync(new URL('../cluster/control-plane.ts', import.meta.url), 'utf8');
const helpers = ['../cluster/operator.ts'].map((f) => readFileSync(new URL(f, import.meta.url), 'utf8'));

describe("the local cluster's tools", () => {
  it('are all built by a first npm start, and nothing the cluster does not run', () => {
    const started = [controlPlane, ...helpers].flatMap((text) =>
      [...text.matchAll(/(?:toolPath|startTool)\(\s*'([a-z0-9-]+)'/g)].map((m) => m[1]),
    );
    const tools = new Set(started.map((b) => binaries[b as keyof typeof binaries]));
    // The real node's tools come with the real node (ensureTools({ realNode: true })).
    for (const realNode of ['kubernetes-node', 'containerd', 'cni-plugins', 'coredns'] as const) tools.delete(realNode);
    expect([...tools].sort()).toEqual([...clusterTools('current')].sort());
    expect(clusterTools('oldest')).toEqual(expect.arrayContaining(['kubernetes', 'kubernetes-oldest']));
    for (const other of ['helm3', 'helm-unittest', 'istioctl', 'minio', 'fake-gcs-server'])
      expect(clusterTools('current')).not.toContain(other);
  });
});
