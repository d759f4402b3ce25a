// The real model server examples (examples/mlserver, sklearn-server, triton, tf-serving, torchserve, vllm), rendered
// into the Deployment the controller would write, with the controller's own functions, and checked
// against what each server's documentation says: the port it serves HTTP on, the path that answers
// once the model is loaded, how it is pointed at the model directory (/opt/ml/model, where the
// artifact is unpacked), and what its image needs to start (shared memory, a non-root user, a GPU).
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type {
  MachineLearningEndpoint,
  MachineLearningEndpointConfigSpec,
  MachineLearningModelSpec,
} from '../../controller/src/api/generated.ts';
import { quantityValue } from '../../controller/src/desired/compare.ts';
import { deployment, modelMountPath } from '../../controller/src/desired/objects.ts';
import { planFromTemplates } from '../../controller/src/desired/plan.ts';
import { defaultConfig, type OperatorConfig } from '../../controller/src/options/config.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** The examples the local demo serves with its own model server; every other directory is a real server's. */
const demoExamples = new Set(['titanic', 'ab-test']);

interface ServerDocs {
  /** Where the facts below come from. */
  docs: string[];
  /** The image's repository (the example pins a version of it). */
  image: string;
  /** Port of the HTTP API. */
  port: number;
  /** Path that answers 2xx once the model is loaded. */
  readinessPath: string;
  /** Paths that answer 2xx while the server lives (liveness and startup probes may use them). */
  healthPaths: string[];
  /** How the server is told where the model is: a command-line argument, or an environment variable. */
  modelDirectory: { arg: string } | { env: string; value: string };
  /** The image's user: root (or none set), a name the kubelet cannot check, or a uid. */
  imageUser: 'root' | 'name' | number;
  /** Its docs ask for more /dev/shm than the runtime's 64Mi: at least this much. */
  shm?: string;
  /** It loads slowly enough to need a startup probe: at least this many seconds before liveness counts. */
  startupSeconds?: number;
  /** It needs a GPU. */
  gpu?: boolean;
}

const servers: Record<string, ServerDocs> = {
  mlserver: {
    docs: [
      'https://docs.seldon.ai/mlserver/reference/settings',
      'https://docs.seldon.ai/mlserver/reference/model-settings',
      'https://docs.seldon.ai/mlserver/api-reference',
    ],
    image: 'docker.io/seldonio/mlserver',
    port: 8080,
    readinessPath: '/v2/health/ready',
    healthPaths: ['/v2/health/ready', '/v2/health/live'],
    modelDirectory: { env: 'MLSERVER_MODELS_DIR', value: modelMountPath },
    imageUser: 1000,
  },
  'sklearn-server': {
    // Built in this repository: its documentation is its source.
    docs: ['examples/sklearn-server/server.py', 'examples/sklearn-server/Dockerfile'],
    image: 'localhost/ml-operator/sklearn-server',
    port: 8080,
    readinessPath: '/healthz',
    healthPaths: ['/healthz', '/livez'],
    modelDirectory: { env: 'MODEL_PATH', value: modelMountPath },
    imageUser: 65532,
  },
  triton: {
    docs: [
      'https://docs.nvidia.com/deeplearning/triton-inference-server/archives/tensorrt_inference_server_0110_beta/tensorrt-inference-server-guide/docs/run.html',
      'https://github.com/triton-inference-server/server/blob/main/docs/protocol/README.md',
      'https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/customization_guide/deploy.html',
    ],
    image: 'nvcr.io/nvidia/tritonserver',
    port: 8000,
    readinessPath: '/v2/health/ready',
    healthPaths: ['/v2/health/ready', '/v2/health/live'],
    modelDirectory: { arg: `--model-repository=${modelMountPath}` },
    imageUser: 'root',
    shm: '1Gi',
    startupSeconds: 300,
  },
  'tf-serving': {
    docs: ['https://www.tensorflow.org/tfx/serving/docker', 'https://www.tensorflow.org/tfx/serving/api_rest'],
    image: 'docker.io/tensorflow/serving',
    port: 8501,
    readinessPath: '/v1/models/half_plus_two',
    healthPaths: ['/v1/models/half_plus_two'],
    modelDirectory: { arg: `--model_base_path=${modelMountPath}` },
    imageUser: 'root',
  },
  torchserve: {
    docs: [
      'https://pytorch.org/serve/inference_api.html',
      'https://pytorch.org/serve/configuration.html',
      'https://github.com/pytorch/serve/blob/master/docker/README.md',
    ],
    image: 'docker.io/pytorch/torchserve',
    port: 8080,
    readinessPath: '/ping',
    healthPaths: ['/ping'],
    modelDirectory: { arg: `--model-store=${modelMountPath}` },
    imageUser: 'name',
    shm: '1Gi',
  },
  vllm: {
    docs: [
      'https://docs.vllm.ai/en/stable/deployment/docker/',
      'https://docs.vllm.ai/en/v0.6.3/serving/deploying_with_k8s.html',
      'https://docs.vllm.ai/en/latest/serving/deploying_with_docker.html',
    ],
    image: 'docker.io/vllm/vllm-openai',
    port: 8000,
    readinessPath: '/health',
    healthPaths: ['/health'],
    modelDirectory: { arg: `--model=${modelMountPath}` },
    imageUser: 'root',
    shm: '1Gi',
    startupSeconds: 600,
    gpu: true,
  },
};

type Doc = { kind: string; metadata: { name: string }; spec: Record<string, unknown> };

function load(dir: string): { docs: Doc[]; text: string } {
  const files = readdirSync(join(root, 'examples', dir)).filter((f) => f.endsWith('.yaml'));
  const text = files.map((f) => readFileSync(join(root, 'examples', dir, f), 'utf8')).join('\n');
  return {
    docs: files
      .flatMap((f) =>
        parseAllDocuments(readFileSync(join(root, 'examples', dir, f), 'utf8')).map((d) => d.toJS() as Doc),
      )
      .filter(Boolean),
    text,
  };
}

const operatorConfig: OperatorConfig = { ...defaultConfig, fetcher: { image: 'ghcr.io/ml-operator/controller:1' } };

/** The Deployment the controller writes for the example's endpoint (its one variant). */
function render(dir: string) {
  const { docs } = load(dir);
  const of = (kind: string) => docs.filter((d) => d.kind === kind);
  const [endpoint] = of('MachineLearningEndpoint');
  const [config] = of('MachineLearningEndpointConfig');
  const models = new Map(
    of('MachineLearningModel').map((m) => [m.metadata.name, m.spec as unknown as MachineLearningModelSpec]),
  );
  const spec = endpoint.spec as { config: string };
  expect(spec.config).toBe(config.metadata.name);
  const resolved = planFromTemplates(
    endpoint.metadata.name,
    config.metadata.name,
    config.spec as unknown as MachineLearningEndpointConfigSpec,
    models,
  );
  if (!resolved.ok) throw new Error(`${dir}: models missing: ${resolved.missing.join(', ')}`);
  expect(resolved.plan.variants).toHaveLength(1);
  const ep: MachineLearningEndpoint = {
    metadata: { name: endpoint.metadata.name, namespace: 'machine-learning', uid: 'uid-1', generation: 1 },
    spec: spec,
  };
  const d = deployment({ endpoint: ep, config: operatorConfig }, resolved.plan.variants[0], 600).object as any;
  const pod = d.spec.template.spec;
  return {
    pod,
    server: pod.containers.find((c: { name: string }) => c.name === 'server'),
    model: resolved.plan.variants[0].model,
  };
}

describe('the real model server examples', () => {
  it('are every example directory besides the demo ones, each with a model, a config and an endpoint', () => {
    const dirs = readdirSync(join(root, 'examples')).filter((d) => !demoExamples.has(d));
    expect(dirs.sort()).toEqual(Object.keys(servers).sort());
    for (const dir of dirs)
      expect(
        load(dir)
          .docs.map((d) => d.kind)
          .sort(),
        dir,
      ).toEqual(['MachineLearningEndpoint', 'MachineLearningEndpointConfig', 'MachineLearningModel']);
  });

  describe.each(Object.entries(servers))('%s', (dir, server) => {
    const { pod, server: container, model } = render(dir);
    const env = Object.fromEntries((container.env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
    const args: string[] = [...(container.command ?? []), ...(container.args ?? [])];

    it('cites the documentation its settings come from', () => {
      const { text } = load(dir);
      for (const url of server.docs) expect(text, url).toContain(url);
    });

    it('runs a real image of the server, pinned to a version', () => {
      const image = container.image as string;
      const [repository, tag] = [image.slice(0, image.lastIndexOf(':')), image.slice(image.lastIndexOf(':') + 1)];
      expect(repository).toBe(server.image);
      expect(tag).toMatch(/^v?\d+\.\d+(\.\d+)?(-[a-z0-9]+)?$/);
    });

    it('serves on the documented port, which the container and PORT name', () => {
      expect(container.ports).toEqual([{ name: 'http', containerPort: server.port, protocol: 'TCP' }]);
      expect(env.PORT).toBe(String(server.port));
      // A flag that names a port names this one.
      for (const a of args.filter(
        (x) => /^--(http[-_]port|rest_api_port|port)=/.test(x) && !x.startsWith('--port=8500'),
      ))
        expect(a.split('=')[1], a).toBe(String(server.port));
    });

    it('is ready on the documented readiness path, and probed on documented health paths only', () => {
      expect(container.readinessProbe.httpGet).toEqual({ path: server.readinessPath, port: 'http' });
      for (const probe of ['livenessProbe', 'startupProbe']) {
        if (container[probe]) expect(server.healthPaths, probe).toContain(container[probe].httpGet.path);
      }
    });

    it('reads the model from the artifact unpacked read-only at /opt/ml/model', () => {
      expect(env.MODEL_PATH).toBe(modelMountPath);
      expect(container.volumeMounts).toContainEqual({ name: 'model', mountPath: modelMountPath, readOnly: true });
      expect(pod.initContainers.map((c: { name: string }) => c.name)).toEqual(['fetch-artifact']);
      expect(model.artifact).toMatch(/^https:\/\/models\.example\.com\/.+\.tar\.gz$/);
      if ('arg' in server.modelDirectory) expect(args).toContain(server.modelDirectory.arg);
      else expect(env[server.modelDirectory.env]).toBe(server.modelDirectory.value);
    });

    it('runs as a user the kubelet accepts: a numeric non-root uid, or root allowed explicitly', () => {
      const podSc = pod.securityContext;
      const sc = container.securityContext;
      const uid =
        sc.runAsUser ?? podSc.runAsUser ?? (typeof server.imageUser === 'number' ? server.imageUser : undefined);
      const nonRoot = sc.runAsNonRoot ?? podSc.runAsNonRoot;
      if (nonRoot) {
        // runAsNonRoot: the kubelet refuses a root image and one whose user is a name it cannot check.
        expect(uid, 'a numeric user').toBeTypeOf('number');
        expect(uid).toBeGreaterThan(0);
      } else {
        expect(uid).toBe(0);
        expect(server.imageUser).toBe('root');
      }
      // Only what the image needs is loosened: privileges stay dropped.
      expect(sc).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
      // No securityContext at all when the image's own user passes.
      if (typeof server.imageUser === 'number') expect(model.securityContext).toBeUndefined();
    });

    it('gets the shared memory its docs ask for, and only then', () => {
      const shm = (pod.volumes ?? []).find((v: { name: string }) => v.name === 'dshm');
      if (!server.shm) {
        expect(shm).toBeUndefined();
        return;
      }
      expect(shm.emptyDir.medium).toBe('Memory');
      expect(quantityValue(shm.emptyDir.sizeLimit)).toBeGreaterThanOrEqual(quantityValue(server.shm)!);
      expect(container.volumeMounts).toContainEqual({ name: 'dshm', mountPath: '/dev/shm' });
      // It counts against the pod's memory: the limit leaves room for the server beside it.
      expect(quantityValue(container.resources.limits.memory)).toBeGreaterThan(
        2 * quantityValue(shm.emptyDir.sizeLimit)!,
      );
    });

    it('has a startup probe long enough for a slow loader, and only then', () => {
      const p = container.startupProbe as
        { initialDelaySeconds?: number; failureThreshold?: number; periodSeconds?: number } | undefined;
      if (!server.startupSeconds) {
        expect(p).toBeUndefined();
        return;
      }
      expect(p).toBeDefined();
      expect(
        (p!.initialDelaySeconds ?? 0) + (p!.failureThreshold ?? 3) * (p!.periodSeconds ?? 10),
      ).toBeGreaterThanOrEqual(server.startupSeconds);
    });

    it('asks for a GPU and lands on a GPU node only when the server needs one', () => {
      const gpus = container.resources.limits?.['nvidia.com/gpu'];
      if (!server.gpu) {
        expect(gpus).toBeUndefined();
        expect(pod.nodeSelector).toBeUndefined();
        return;
      }
      expect(gpus).toBe('1');
      expect(container.resources.requests['nvidia.com/gpu']).toBe('1');
      expect(pod.nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
      expect(pod.tolerations).toContainEqual({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' });
    });
  });
});
