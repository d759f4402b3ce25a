// The platform team's first hour on the local cluster's real node: an OCI registry in the cluster's
// network that the node's containerd pulls from, the controller and scikit-learn server images and
// the packaged chart pushed there, the iris artifacts on the artifact server, and what the team then
// does: `helm install` from oci:// into namespaces enforcing PSS restricted (the controller in a pod
// on the real node, routing on the cluster's shared Gateway), models, an 80/20 config and an
// endpoint, and predictions through the gateway. Used by test/integration/real-journey.test.ts and
// `npm start -- --real`.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import type {
  MachineLearningEndpoint,
  MachineLearningEndpointConfigSpec,
  MachineLearningModelSpec,
} from '../../controller/src/api/generated.ts';
import { KubeClient } from '../../controller/src/kube/client.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { copyCheckout, isolatedHelmEnv } from '../release/checkout.ts';
import { buildControllerImage, pushImage, type BuildResult } from '../image/build.ts';
import { buildSklearnServer, type SklearnArtifact, type SklearnBuild } from '../image/sklearn.ts';
import { log } from '../log.ts';
import { publishChart, type Published } from '../release/publish.ts';
import { toolPath } from '../tools/build.ts';
import { startLoad, type LoadOptions, type LoadRun } from '../traffic/load.ts';
import { publishArtifact } from './artifacts.ts';
import { artifactsAddress, type ControlPlane } from './control-plane.ts';
import { helm, type Release } from './operator.ts';
import { realNodeLabel, realNodeTaint } from './real-node.ts';
import { startRegistry, type Registry } from './registry.ts';

const apiVersion = 'ml-operator.dev/v1alpha1';
/**
 * The flowers every prediction asks about: the first of each species in the iris data set, the
 * examples each model's metadata carries, which the image's build refuses a model that misclassifies
 * (examples/sklearn-server/train.py). So each answer must give exactly these labels, in this order.
 */
export const irisExamples: { flower: number[]; label: string }[] = [
  { flower: [5.1, 3.5, 1.4, 0.2], label: 'setosa' },
  { flower: [7.0, 3.2, 4.7, 1.4], label: 'versicolor' },
  { flower: [6.3, 3.3, 6.0, 2.5], label: 'virginica' },
];
/** Where a pod asks to run on the real node: its label, and a toleration of its taint. */
export const onRealNode = {
  nodeSelector: { [realNodeLabel.key]: realNodeLabel.value },
  tolerations: [
    { key: realNodeTaint.key, operator: 'Equal' as const, value: realNodeTaint.value, effect: realNodeTaint.effect },
  ],
};

export interface JourneyImages {
  controller: BuildResult;
  sklearn: SklearnBuild;
  seconds: number;
}

/** Builds (or finds in podman's layer cache) the controller image and the scikit-learn server with its artifacts. */
export async function buildJourneyImages(): Promise<JourneyImages> {
  const started = Date.now();
  const controller = await buildControllerImage();
  const sklearn = await buildSklearnServer();
  return { controller, sklearn, seconds: (Date.now() - started) / 1000 };
}

export interface RealJourney {
  readonly registry: Registry;
  readonly chart: Published;
  readonly release: Release;
  /** The namespace of the models, configs and endpoints. */
  readonly models: string;
  readonly controllerRepository: string;
  readonly sklearnImage: string;
  readonly artifacts: Record<string, SklearnArtifact>;
  readonly user: KubeClient;
  readonly pushSeconds: number;
  /** The artifact's URL on the artifact server's address (real containers have no cluster DNS). */
  artifactUrl(path: string): string;
  /** helm install (or, when installed, upgrade) of the pushed chart with the controller image `<repository>:<tag>`. */
  helmRelease(tag: string, podAnnotations?: Record<string, string>): Promise<void>;
  irisModel(artifact: SklearnArtifact, overrides?: Partial<MachineLearningModelSpec>): MachineLearningModelSpec;
  applyModel(name: string, spec: MachineLearningModelSpec): Promise<unknown>;
  applyConfig(name: string, spec: MachineLearningEndpointConfigSpec): Promise<unknown>;
  applyEndpoint(name: string, config: string): Promise<unknown>;
  endpoint(name: string): Promise<(MachineLearningEndpoint & KubeObject) | undefined>;
  /** The endpoint's host name on the cluster's default domain. */
  host(endpoint: string): string;
  /** POST /predict of the three iris flowers of `irisExamples` through the gateway, bounded by `o`. */
  predictions(endpoint: string, o: Partial<LoadOptions> & Pick<LoadOptions, 'requests' | 'maxDurationMs'>): LoadRun;
  stop(): Promise<void>;
}

/**
 * Starts the registry in the cluster's network and lets the real node pull from it, pushes the
 * images (tag `journey-1` for the controller) and the chart, publishes the iris artifacts and
 * creates the release's and the models' namespaces with PSS restricted enforced.
 */
export async function prepareRealJourney(
  cluster: ControlPlane,
  images: JourneyImages,
  release: Release = { name: 'journey', namespace: 'ml-platform' },
  models = 'ml-models',
): Promise<RealJourney> {
  if (!cluster.realNode)
    throw new Error('the journey needs a cluster with the real node (startControlPlane({ realNode: true }))');
  const registry = await startRegistry(join(cluster.dir, 'registry'), {
    inNetwork: { namespace: cluster.network.namespace, address: cluster.network.address },
  });
  // An owner that exits without stop() leaves no registry behind in a namespace that is gone.
  let stopped = false;
  const killRegistry = () => {
    if (stopped) return;
    try {
      process.kill(registry.pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  };
  process.on('exit', killRegistry);
  cluster.realNode.pullFrom(registry.host);
  log(`journey: registry in the cluster's network at ${registry.host}; the real node pulls from it over plain HTTP`);

  const pushStarted = Date.now();
  const controllerRepository = `${registry.host}/ml-operator/controller`;
  await pushImage(images.controller.image, registry.host, 'ml-operator/controller', 'journey-1');
  const sklearnImage = (await pushImage(images.sklearn.image, registry.host, 'ml-operator/sklearn-server', '1.0.0'))
    .reference;
  // Packaged from a copy of the chart with Helm's homes of its own: `helm dependency build` writes
  // into the chart's directory, which other runs install from.
  const scratch = join(cluster.dir, 'journey');
  const helmEnv = isolatedHelmEnv(scratch);
  const chart = await publishChart({
    registry: `oci://${registry.host}/charts`,
    root: copyCheckout(join(scratch, 'chart')),
    plainHttp: true,
    helm: toolPath('helm'),
    env: helmEnv,
    force: true,
  });
  const pushSeconds = (Date.now() - pushStarted) / 1000;
  log(
    `journey: pushed the controller and scikit-learn images and the chart (${chart.chart}:${chart.version}) in ${pushSeconds.toFixed(1)}s`,
  );

  const artifacts = Object.fromEntries(images.sklearn.artifacts.map((a) => [a.name, a]));
  for (const a of images.sklearn.artifacts) publishArtifact(cluster.artifactsDir, a.path, readFileSync(a.file));

  const core = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
  for (const name of [release.namespace, models]) {
    await core.createNamespace({
      body: { metadata: { name, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } },
    });
  }
  const user = new KubeClient(cluster.kubeConfig(), { fieldManager: 'platform-team' });
  let installed = false;
  const g = cluster.gateway;
  const host = (endpoint: string) => `${endpoint}.${models}.models.example.com`;
  const artifactUrl = (path: string) => `http://${artifactsAddress}${path}`;

  return {
    registry,
    chart,
    release,
    models,
    controllerRepository,
    sklearnImage,
    artifacts,
    user,
    pushSeconds,
    artifactUrl,
    async helmRelease(tag, podAnnotations = {}) {
      const values = join(cluster.dir, `journey-values-${tag}.json`);
      writeFileSync(
        values,
        JSON.stringify({
          namespace: { create: false, name: models },
          controller: {
            image: { repository: controllerRepository, tag },
            ...onRealNode,
            podAnnotations,
            config: {
              routing: {
                provider: 'gatewayAPI',
                gatewayAPI: {
                  sharedGateway: {
                    name: g.shared.name,
                    namespace: g.shared.namespace,
                    sectionName: g.shared.sectionName,
                  },
                },
              },
            },
          },
        }),
      );
      await helm(
        cluster.kubeconfigPath,
        [
          installed ? 'upgrade' : 'install',
          release.name,
          chart.chart,
          '--version',
          chart.version,
          '--plain-http',
          '--namespace',
          release.namespace,
          '-f',
          values,
          '--wait',
          '--timeout',
          '5m',
        ],
        helmEnv,
      );
      installed = true;
    },
    irisModel(a, overrides = {}) {
      return {
        image: sklearnImage,
        artifact: artifactUrl(a.path),
        artifactSha256: a.sha256,
        port: 8080,
        readinessPath: '/healthz',
        ...overrides,
      };
    },
    applyModel: (name, spec) =>
      user.apply(resources.model, {
        apiVersion,
        kind: 'MachineLearningModel',
        metadata: { name, namespace: models },
        spec,
      }),
    applyConfig: (name, spec) =>
      user.apply(resources.endpointConfig, {
        apiVersion,
        kind: 'MachineLearningEndpointConfig',
        metadata: { name, namespace: models },
        spec,
      }),
    applyEndpoint: (name, config) =>
      user.apply(resources.endpoint, {
        apiVersion,
        kind: 'MachineLearningEndpoint',
        metadata: { name, namespace: models },
        spec: { config },
      }),
    endpoint: (name) => user.get<MachineLearningEndpoint & KubeObject>(resources.endpoint, models, name),
    host,
    predictions: (endpoint, o) =>
      startLoad({
        url: `http://${g.address}:${g.port}/predict`,
        host: host(endpoint),
        method: 'POST',
        body: JSON.stringify({ instances: irisExamples.map((e) => e.flower) }),
        concurrency: 64,
        timeoutMs: 5000,
        ...o,
      }),
    async stop() {
      await registry.stop();
      stopped = true;
      process.off('exit', killRegistry);
    },
  };
}
