// One local control plane for the integration run, with the chart installed from the working tree.
// Tests get its kubeconfig through inject(). The `integration` project runs every test file on the
// current Kubernetes release; the `oldest` project (oldest-setup.ts) runs a subset on the oldest
// minor the chart supports.
import type { TestProject } from 'vitest/node';
import type { KubernetesRelease } from '../../ci/tools/build.ts';
import { startControlPlane, type ControlPlane, type GatewayInfo } from '../../ci/cluster/control-plane.ts';
import { installChart } from '../../ci/cluster/operator.ts';
import { log } from '../../ci/log.ts';
import { alive } from '../../ci/processes.ts';
import { auditRbac } from './rbac-audit.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    /** Which Kubernetes release the control plane runs: the current one, or the oldest the chart supports. */
    kubernetesRelease: KubernetesRelease;
    auditLogPath: string;
    gateway: GatewayInfo;
    artifactsDir: string;
    network: { namespace: string; address: string; hostAddress: string };
    prometheus: { url: string; targetsDir: string; podMetricsUrl: string };
  }
}

export interface ClusterSetupOptions {
  kubernetes: KubernetesRelease;
  /**
   * The RBAC audit at teardown. `full`: every verb a controller used was granted, and every verb
   * granted was used (needs every test file). `missing`: only the first; a run of a subset of the
   * files leaves verbs unused, but a verb used and not granted is a fault on any cluster.
   */
  rbacAudit: 'full' | 'missing';
}

/**
 * One control plane per Kubernetes release for the whole vitest run, whichever projects use it: the
 * `soak` project runs the chaos soak alone, after the `integration` project's files, on the same
 * cluster. Global setups of all projects run in vitest's main process, so the cluster is kept on
 * globalThis; the last project to tear down stops it and audits RBAC over every file that used it.
 */
interface SharedCluster {
  started: Promise<ControlPlane>;
  users: number;
  /** `full` when any project using it runs every file of the integration suite. */
  rbacAudit: ClusterSetupOptions['rbacAudit'];
}
const shared = ((globalThis as { [k: symbol]: Map<KubernetesRelease, SharedCluster> | undefined })[
  Symbol.for('ml-operator.integration-clusters')
] ??= new Map<KubernetesRelease, SharedCluster>());

export function clusterSetup(options: ClusterSetupOptions): {
  setup: (project: TestProject) => Promise<void>;
  teardown: () => Promise<void>;
} {
  let cluster: ControlPlane | undefined;

  async function setup(project: TestProject): Promise<void> {
    let entry = shared.get(options.kubernetes);
    if (entry) {
      entry.users++;
      if (options.rbacAudit === 'full') entry.rbacAudit = 'full';
    } else {
      entry = {
        users: 1,
        rbacAudit: options.rbacAudit,
        started: (async () => {
          const c = await startControlPlane({ kubernetes: options.kubernetes });
          const started = Date.now();
          await installChart(c.kubeconfigPath);
          log(`cluster: chart installed with helm in ${((Date.now() - started) / 1000).toFixed(1)}s`);
          return c;
        })(),
      };
      shared.set(options.kubernetes, entry);
    }
    cluster = await entry.started;
    project.provide('kubeconfigPath', cluster.kubeconfigPath);
    project.provide('kubernetesRelease', options.kubernetes);
    project.provide('auditLogPath', cluster.auditLogPath);
    project.provide('gateway', cluster.gateway);
    project.provide('artifactsDir', cluster.artifactsDir);
    project.provide('network', cluster.network);
    project.provide('prometheus', cluster.prometheus);
  }

  async function teardown(): Promise<void> {
    if (!cluster) return;
    const entry = shared.get(options.kubernetes)!;
    if (--entry.users > 0) return;
    shared.delete(options.kubernetes);
    const { pids } = cluster;
    // The run's RBAC audit: every verb a controller used was granted, and every verb granted was used.
    const audit = auditRbac(cluster.kubeconfigPath, cluster.auditLogPath);
    log(
      `rbac audit (Kubernetes ${cluster.kubernetesVersion}): ${audit.releases} release(s), ${audit.requests} distinct (group, resource, verb) used by their controllers${entry.rbacAudit === 'full' ? '' : '; a run of part of the files: only that each was granted is checked'}`,
    );
    await cluster.stop();
    const left = pids.filter(alive);
    if (left.length > 0) throw new Error(`control plane processes still running after stop: ${left.join(', ')}`);
    const unused = entry.rbacAudit === 'full' ? audit.unused : [];
    if (audit.missing.length || unused.length) {
      throw new Error(
        [
          `the RBAC audit of this run on Kubernetes ${cluster.kubernetesVersion} failed (test/integration/rbac-audit.ts):`,
          ...audit.missing.map((m) => `  used but not granted: ${m}`),
          ...unused.map(
            (u) =>
              `  granted but used by no controller in the run: ${u} (remove it from the chart, or add the test that needs it)`,
          ),
        ].join('\n'),
      );
    }
  }

  return { setup, teardown };
}

/**
 * A run of some files or tests only (`npm test -- test/integration/<file>`, or `-t`) leaves granted
 * verbs unused: ci/test.ts says so (ML_OPERATOR_RBAC_AUDIT=missing), and the audit then checks only
 * that every verb used was granted.
 */
const subsetAudit = () => process.env.ML_OPERATOR_RBAC_AUDIT === 'missing';

export const { setup, teardown } = clusterSetup({
  kubernetes: 'current',
  rbacAudit: subsetAudit() ? 'missing' : 'full',
});
