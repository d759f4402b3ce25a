// The integration tests' shared fixtures: the models they serve and the suite they run in. A test file
// says what it does with them; how they are made lives here once.
import { afterAll, beforeAll } from 'vitest';
import type { ControllerProcess, Release } from '../../ci/cluster/operator.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import { admin, artifact, runController } from './ml.ts';
import { installGatewayRelease, uninstallRelease } from './traffic.ts';

/**
 * A test file's namespace (restricted pods), a release of the chart with the Gateway API provider
 * watching it, and that release's controller, set up before the file's tests and removed after.
 */
export function gatewaySuite(
  name: string,
  values: string[] = [],
): {
  readonly namespace: string;
  readonly release: Release;
  controller: ControllerProcess;
  host(endpoint: string): string;
} {
  const suite = {} as {
    namespace: string;
    release: Release;
    controller: ControllerProcess;
    host(endpoint: string): string;
  };
  suite.host = (endpoint) => `${endpoint}.${suite.namespace}.models.example.com`;
  beforeAll(async () => {
    suite.namespace = await createNamespace(admin, name, { 'pod-security.kubernetes.io/enforce': 'restricted' });
    suite.release = await installGatewayRelease(suite.namespace, 'shared', values);
    suite.controller = await runController([suite.namespace], { release: suite.release });
  });
  afterAll(async () => {
    await suite.controller?.stop();
    if (suite.namespace) await deleteNamespace(admin, suite.namespace);
    if (suite.release) await uninstallRelease(suite.release);
  });
  return suite;
}

/** Model specs served by the local model server, with an artifact of the given name and DEMO_* settings. */
export const servedModel =
  (artifactName: string) =>
  (image: string, env: Record<string, string> = {}) => ({
    image,
    artifact: artifact(artifactName),
    readinessPath: '/healthz',
    ...(Object.keys(env).length ? { env: Object.entries(env).map(([name, value]) => ({ name, value })) } : {}),
  });
