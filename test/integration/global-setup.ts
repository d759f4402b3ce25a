// One local control plane for the integration run. Tests get its kubeconfig through inject().
import type { TestProject } from 'vitest/node';
import { startControlPlane, type ControlPlane } from '../../ci/cluster/control-plane.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    auditLogPath: string;
  }
}

let cluster: ControlPlane | undefined;

export async function setup(project: TestProject): Promise<void> {
  cluster = await startControlPlane();
  project.provide('kubeconfigPath', cluster.kubeconfigPath);
  project.provide('auditLogPath', cluster.auditLogPath);
}

export async function teardown(): Promise<void> {
  if (!cluster) return;
  const { pids } = cluster;
  await cluster.stop();
  const left = pids.filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  if (left.length > 0) throw new Error(`control plane processes still running after stop: ${left.join(', ')}`);
}
