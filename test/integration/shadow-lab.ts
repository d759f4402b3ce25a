// What the test files of shadows on the real node share: a local cluster with a real node, the
// scikit-learn image's iris models on it, the iris rows their agreement was computed on, and the
// helpers to declare endpoints, wait on their status and load them through the gateway.
import * as k8s from '@kubernetes/client-node';
import { expect } from 'vitest';
import { startControlPlane, type ControlPlane } from '../../ci/cluster/control-plane.ts';
import { buildJourneyImages, onRealNode, prepareRealJourney, type RealJourney } from '../../ci/cluster/real-journey.ts';
import { runReadOnly } from '../../ci/image/build.ts';
import { waitFor } from '../../ci/wait.ts';
import type { MachineLearningEndpoint, ShadowEntry } from '../../controller/src/api/generated.ts';
import { resources } from '../../controller/src/kube/resources.ts';

export const compare = { path: '$.predictions' };

/** A variant of `model` in real containers on the real node, sized as the real journey's. */
export const onNode = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  instances: 1,
  cpus: '100m',
  memory: '256Mi',
  size: '64Mi',
  ...onRealNode,
  ...extra,
});

export const shadow = (e: MachineLearningEndpoint, variant: string): ShadowEntry | undefined =>
  e.status?.shadows?.find((s) => s.variant === variant);

/** The scikit-learn server names its pod `<instance>-<hash>-<hash>`: the instance of a pod name. */
export const instanceOf = (pod: string | undefined) => pod?.split('-').slice(0, -2).join('-');

export interface ShadowLab {
  cluster: ControlPlane;
  journey: RealJourney;
  core: k8s.CoreV1Api;
  /** The iris data set, as the image's scikit-learn ships it: the rows agreement.json was computed on. */
  rows: number[][];
  /** The offline agreement of each pair of models on those rows ("iris-1.0.0|iris-2.0.0", names sorted). */
  offline: Record<string, number>;
  applyEndpoint: (name: string, rollout?: Record<string, unknown>) => Promise<void>;
  endpoint: (name: string) => Promise<MachineLearningEndpoint>;
  /** Polls endpoint `name` until `check` gives a value, within `ms`; the endpoint's status explains a time-out. */
  until: <T>(
    name: string,
    what: string,
    ms: number,
    check: (e: MachineLearningEndpoint) => T | undefined,
  ) => Promise<T>;
  /** Waits until the gateway answers a prediction of `name` (InService comes with the route accepted, a moment before Traefik serves it). */
  firstAnswer: (name: string) => Promise<void>;
  /** One request a row of the iris data set (row i % 150, or `order[i % 150]`), through the gateway, open loop. */
  rowLoad: (
    name: string,
    o: { requests: number; rate: number; maxDurationMs: number; order?: readonly number[] },
  ) => ReturnType<RealJourney['predictions']>;
  stop: () => Promise<void>;
}

/** Starts the cluster with its real node and the journey's Helm release, the images built meanwhile. */
export async function startShadowLab(): Promise<ShadowLab> {
  const images = buildJourneyImages();
  const cluster = await startControlPlane({ realNode: true, observability: false, nodes: 1 });
  let journey: RealJourney | undefined;
  try {
    const core = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
    const built = await images;
    const dump = await runReadOnly(
      built.sklearn.image,
      ['-c', 'import json; from sklearn.datasets import load_iris; print(json.dumps(load_iris().data.tolist()))'],
      ['--entrypoint=python3'],
    );
    if (dump.code !== 0) throw new Error(`load_iris in the image: exit ${dump.code}: ${dump.stderr}`);
    const rows = JSON.parse(dump.stdout) as number[][];
    expect(rows).toHaveLength(150);
    const j = await prepareRealJourney(cluster, built);
    journey = j;
    await j.helmRelease('journey-1');
    const endpoint = async (name: string) => (await j.endpoint(name))!;
    const until = <T>(name: string, what: string, ms: number, check: (e: MachineLearningEndpoint) => T | undefined) =>
      waitFor(
        `${name} ${what}`,
        ms,
        async () => check(await endpoint(name)),
        async () => JSON.stringify((await endpoint(name))?.status, null, 1),
      );
    return {
      cluster,
      journey: j,
      core,
      rows,
      offline: built.sklearn.agreement,
      endpoint,
      until,
      applyEndpoint: async (name, rollout) => {
        await j.user.apply(resources.endpoint, {
          apiVersion: 'ml-operator.dev/v1alpha1',
          kind: 'MachineLearningEndpoint',
          metadata: { name, namespace: j.models },
          spec: { config: name, ...(rollout ? { rollout } : {}) },
        });
      },
      firstAnswer: async (name) => {
        await waitFor(`a first prediction of ${name} through the gateway`, 60_000, async () => {
          const r = await j.predictions(name, { requests: 1, maxDurationMs: 10_000, concurrency: 1 }).done;
          return r.failed === 0 ? true : undefined;
        });
      },
      rowLoad: (name, { requests, rate, maxDurationMs, order }) =>
        j.predictions(name, {
          requests,
          rate,
          maxDurationMs,
          requestFor: (i) => ({ body: JSON.stringify({ instances: [rows[order ? order[i % 150] : i % 150]] }) }),
        }),
      stop: async () => {
        await j.stop().catch(() => undefined);
        await cluster.stop();
      },
    };
  } catch (e) {
    await journey?.stop().catch(() => undefined);
    await cluster.stop();
    throw e;
  }
}
