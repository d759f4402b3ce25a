// What every model pod shares, whichever object holds it: the containers' names and mount points,
// the fetcher's entry point and user, the restricted container security context, the workload labels. Pure.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { labels } from './labels.ts';
import { commonLabels } from './common.ts';
import type { VariantPlan } from './plan.ts';

export const modelMountPath = '/opt/ml/model';
export const artifactSourceRoot = '/mnt/artifact-source';
export const fetcherEntrypoint = ['node', '/app/dist/fetcher/main.js'];
export const fetcherContainerName = 'fetch-artifact';
/** The model server's container. */
export const serverContainerName = 'server';
/**
 * How long a model pod being removed keeps serving (its preStop sleep): longer than the Service's
 * endpoints take to drop it and the data plane to reload (Traefik throttles reloads to 2 s; Istio
 * pushes endpoints within about a second).
 */
export const preStopSleepSeconds = 5;
/** Numeric user of the controller image, which the fetcher runs as. */
export const fetcherUser = 65532;

export function workloadLabels(endpoint: MachineLearningEndpoint, v: VariantPlan): Record<string, string> {
  return {
    ...commonLabels(endpoint, 'model-server', v.variant.model),
    [labels.modelInstance]: v.instance,
    [labels.version]: v.version,
  };
}

export const restrictedContainer = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  runAsNonRoot: true,
  seccompProfile: { type: 'RuntimeDefault' },
};
