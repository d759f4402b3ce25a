// One local control plane for the integration run, with the chart installed from the working tree.
// Tests get its kubeconfig through inject().
import type { TestProject } from 'vitest/node';
import { startControlPlane, type ControlPlane, type GatewayInfo } from '../../ci/cluster/control-plane.ts';
import { installChart } from '../../ci/cluster/operator.ts';
import { log } from '../../ci/log.ts';
import { alive } from '../../ci/processes.ts';
import { auditRbac } from './rbac-audit.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    auditLogPath: string;
    gateway: GatewayInfo;
    artifactsDir: string;
    network: { namespace: string; address: string; hostAddress: string };
    prometheus: { url: string; targetsDir: string; podMetricsUrl: string };
  }
}

let cluster: ControlPlane | undefined;

export async function setup(project: TestProject): Promise<void> {
  cluster = await startControlPlane();
  const started = Date.now();
  await installChart(cluster.kubeconfigPath);
  log(`cluster: chart installed with helm in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  project.provide('kubeconfigPath', cluster.kubeconfigPath);
  project.provide('auditLogPath', cluster.auditLogPath);
  project.provide('gateway', cluster.gateway);
  project.provide('artifactsDir', cluster.artifactsDir);
  project.provide('network', cluster.network);
  project.provide('prometheus', cluster.prometheus);
}

export async function teardown(): Promise<void> {
  if (!cluster) return;
  const { pids } = cluster;
  // The run's RBAC audit: every verb a controller used was granted, and every verb granted was used.
  const audit = auditRbac(cluster.kubeconfigPath, cluster.auditLogPath);
  log(`rbac audit: ${audit.releases} release(s), ${audit.requests} distinct (group, resource, verb) used by their controllers`);
  await cluster.stop();
  const left = pids.filter(alive);
  if (left.length > 0) throw new Error(`control plane processes still running after stop: ${left.join(', ')}`);
  if (audit.missing.length || audit.unused.length) {
    throw new Error(
      [
        'the RBAC audit of this run failed (test/integration/rbac-audit.ts):',
        ...audit.missing.map((m) => `  used but not granted: ${m}`),
        ...audit.unused.map((u) => `  granted but used by no controller in the run: ${u} (remove it from the chart, or add the test that needs it)`),
      ].join('\n'),
    );
  }
}
