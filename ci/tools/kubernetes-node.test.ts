// The real node's kubelet and kube-proxy (ci/tools/kubernetes-node) are of the control plane's
// release: a kubelet newer than its API server is not supported, and an older one tests another release.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { kubernetesVersion } from './build.ts';

const toolsDir = dirname(fileURLToPath(import.meta.url));

describe("the real node's Kubernetes", () => {
  it('pins the k8s.io/kubernetes version of the control plane', () => {
    const goMod = readFileSync(join(toolsDir, 'kubernetes-node', 'go.mod'), 'utf8');
    expect(goMod).toMatch(
      new RegExp(
        `^\\s*(require\\s+)?k8s\\.io/kubernetes ${kubernetesVersion('current').replaceAll('.', '\\.')}\\b`,
        'm',
      ),
    );
  });
});
