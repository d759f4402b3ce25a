// One local control plane for the integration run, with the chart installed from the working tree.
// Tests get its kubeconfig through inject().
import type { TestProject } from 'vitest/node';
import { startControlPlane, type ControlPlane, type GatewayInfo } from '../../ci/cluster/control-plane.ts';
import { installChart } from '../../ci/cluster/operator.ts';
import { log } from '../../ci/log.ts';
import { alive } from '../../ci/processes.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    auditLogPath: string;
    gateway: GatewayInfo;
    artifactsDir: string;
    network: { namespace: string; address: string; hostAddress: string };
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
}

export async function teardown(): Promise<void> {
  if (!cluster) return;
  const { pids } = cluster;
  await cluster.stop();
  const left = pids.filter(alive);
  if (left.length > 0) throw new Error(`control plane processes still running after stop: ${left.join(', ')}`);
}
