// Test helpers for the product's objects: write models, configs and endpoints as a user would
// (server-side apply as the cluster admin), and wait for what the controller should make of them.
import * as k8s from '@kubernetes/client-node';
import { inject } from 'vitest';
import { publishArtifact } from '../../ci/cluster/artifacts.ts';
import {
  chartConfig,
  serviceAccountKubeconfig,
  startControllerProcess,
  type ControllerProcess,
  type Release,
} from '../../ci/cluster/operator.ts';
import { writesSince as auditWrites } from '../../ci/chaos/soak.ts';
import { waitFor } from '../../ci/wait.ts';
import type {
  MachineLearningEndpoint,
  MachineLearningEndpointConfigSpec,
  MachineLearningEndpointSpec,
  MachineLearningModelSpec,
} from '../../controller/src/api/generated.ts';
import { KubeClient } from '../../controller/src/kube/client.ts';
import { resources, type KubeObject, type Resource } from '../../controller/src/kube/resources.ts';
import { adminConfig } from './kube.ts';

export const admin = adminConfig();
export const user = new KubeClient(admin, { fieldManager: 'integration-test' });

const apiVersion = 'ml-operator.dev/v1alpha1';

export async function applyModel(namespace: string, name: string, spec: MachineLearningModelSpec): Promise<void> {
  await user.apply(resources.model, { apiVersion, kind: 'MachineLearningModel', metadata: { name, namespace }, spec });
}
export async function applyConfig(
  namespace: string,
  name: string,
  spec: MachineLearningEndpointConfigSpec,
): Promise<void> {
  await user.apply(resources.endpointConfig, {
    apiVersion,
    kind: 'MachineLearningEndpointConfig',
    metadata: { name, namespace },
    spec,
  });
}
export async function applyEndpoint(namespace: string, name: string, spec: MachineLearningEndpointSpec): Promise<void> {
  await user.apply(resources.endpoint, {
    apiVersion,
    kind: 'MachineLearningEndpoint',
    metadata: { name, namespace },
    spec,
  });
}

export async function getEndpoint(namespace: string, name: string): Promise<MachineLearningEndpoint & KubeObject> {
  const e = await user.get<MachineLearningEndpoint & KubeObject>(resources.endpoint, namespace, name);
  if (!e) throw new Error(`endpoint ${namespace}/${name} does not exist`);
  return e;
}

export async function list(r: Resource, namespace: string): Promise<KubeObject[]> {
  return (await user.list(r, namespace)).items;
}

/** Polls the endpoint until `ok` holds; on time-out the error shows the endpoint's status. */
export async function waitForEndpoint(
  namespace: string,
  name: string,
  what: string,
  ok: (e: MachineLearningEndpoint) => boolean,
  timeoutMs = 60_000,
): Promise<MachineLearningEndpoint> {
  let last: MachineLearningEndpoint | undefined;
  return waitFor(
    `endpoint ${namespace}/${name}: ${what}`,
    timeoutMs,
    async () => {
      last = await getEndpoint(namespace, name);
      return ok(last) ? last : undefined;
    },
    () => `last status: ${JSON.stringify(last?.status, null, 2)}`,
  );
}

export const inService = (e: MachineLearningEndpoint) =>
  e.status?.state === 'InService' &&
  e.status.observedGeneration === e.metadata.generation &&
  e.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';

/** Runs the controller locally as the chart's ServiceAccount, watching only the given namespaces. */
export async function runController(
  namespaces: string[],
  options: {
    leaderElect?: boolean;
    identity?: string;
    echo?: boolean;
    release?: Release;
    via?: { server: string; caData: string };
    logLevel?: string;
  } = {},
): Promise<ControllerProcess> {
  let kubeconfig = await serviceAccountKubeconfig(admin, options.release);
  if (options.via) {
    // Through a proxy of the test's (fault injection): its address, and the CA that signed its certificate.
    const parsed = JSON.parse(kubeconfig);
    parsed.clusters[0].cluster = { server: options.via.server, 'certificate-authority-data': options.via.caData };
    kubeconfig = JSON.stringify(parsed);
  }
  const config = await chartConfig(admin, {}, options.release);
  return startControllerProcess({
    kubeconfig,
    config,
    namespaces,
    leaderElect: options.leaderElect,
    identity: options.identity,
    release: options.release,
    // In the cluster's network namespace, as the controller's pod would run.
    network: { namespace: inject('network').namespace, address: inject('network').address },
    logLevel: options.logLevel ?? process.env.ML_OPERATOR_TEST_LOG_LEVEL,
    echo: options.echo ?? process.env.ML_OPERATOR_TEST_LOGS === '1',
  });
}

export const auditLogPath = () => inject('auditLogPath');

/** Publishes `<name>.tar.gz` on the cluster's artifact server (https://models.example.com/) and returns its URL. */
export function artifact(name: string): string {
  const path = `/${name}.tar.gz`;
  publishArtifact(inject('artifactsDir'), path, { name, format: 'demo' });
  return `https://models.example.com${path}`;
}

/** Write requests in the run's audit log made by `user` in `namespace` since byte `offset`. */
export async function writesSince(
  offset: number,
  username: string,
  namespace: string,
): Promise<{ verb: string; uri: string }[]> {
  return auditWrites(auditLogPath(), offset, username, namespace);
}

export { k8s };
