// The oldest Kubernetes the chart claims is the one the `oldest` test project runs on: the minor of
// ci/tools/kubernetes-oldest's pin is the one in both Chart.yaml kubeVersion fields and the README.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { kubernetesVersion } from './build.ts';

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const minorOf = (version: string) => Number(version.replace(/^v/, '').split('.')[1]);
const oldest = minorOf(kubernetesVersion('oldest'));

describe('the oldest supported Kubernetes', () => {
  it('is older than the current release the tests run on', () => {
    expect(oldest).toBeLessThan(minorOf(kubernetesVersion('current')));
  });

  it.each(['Chart.yaml', 'charts/controller/Chart.yaml'])('%s kubeVersion claims the minor that is tested', (file) => {
    const chart = parse(readFileSync(join(root, file), 'utf8')) as { kubeVersion: string };
    expect(chart.kubeVersion).toBe(`>=1.${oldest}.0-0`);
  });

  it('the README names the minor that is tested', () => {
    expect(readFileSync(join(root, 'README.md'), 'utf8')).toContain(`Kubernetes 1.${oldest} or newer`);
  });
});
