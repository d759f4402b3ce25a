// The controller's command line and config file (docs/controller-interface.md). Every mistake is
// reported at start-up with the flag or key that is wrong, before anything touches the cluster.
import { readFileSync } from 'node:fs';
import type { Toleration } from './api/generated.ts';

export type StorageMode = 'pvc' | 'hostPath' | 'emptyDir';

/** Operator settings from the chart's ConfigMap: what every endpoint's objects are built with. */
export interface OperatorConfig {
  defaultDomain: string;
  gateway: {
    selector: Record<string, string>;
    port: number;
    tls: { enabled: boolean; port: number; credentialName: string; httpsRedirect: boolean };
  };
  storage: { mode: StorageMode; storageClassName: string; defaultSize: string; hostPathRoot: string };
  fetcher: { image: string };
  /** The Prometheus that holds the data plane's metrics: the metric gates query it, and KEDA scales on it. */
  prometheus: {
    /** Its URL (empty: checks are inconclusive, and say why; requests-per-second autoscaling is refused). */
    url: string;
    /** Whose request metrics it holds: Istio's standard metrics or Traefik's (empty: Istio with the istio provider). */
    dataPlane: '' | 'istio' | 'traefik';
  };
  routing: {
    /** Who routes the endpoints' traffic: Istio (Gateway + VirtualService) or a Gateway API implementation (HTTPRoute). */
    provider: 'istio' | 'gatewayAPI';
    gatewayAPI: {
      /** Class of the per-endpoint Gateways, when routes do not attach to a shared Gateway. */
      gatewayClassName: string;
      /** One Gateway that every endpoint's HTTPRoute attaches to (name empty: per-endpoint Gateways). */
      sharedGateway: { name: string; namespace: string; sectionName: string };
      /**
       * How shadow variants get their mirror: the standard RequestMirror filter, Traefik's
       * TraefikService mirroring (Traefik lacks the filter), or None (shadows are not routed).
       */
      mirroring: 'RequestMirror' | 'TraefikService' | 'None';
    };
  };
  /** Who scales autoscaled variants: a HorizontalPodAutoscaler, or a KEDA ScaledObject. */
  autoscaling: { engine: 'hpa' | 'keda' };
  /** Cluster-wide settings of model pods (a model or variant may add to them or replace them). */
  models: {
    /** Tolerations of variants with GPUs that give no tolerations of their own. */
    gpuTolerations: Toleration[];
    /** Pull secrets of every model pod, before the model's own. */
    imagePullSecrets: string[];
  };
}

/** A pod toleration, as the chart's config and a variant give it: the CRD schema's type. */
export type { Toleration };

export interface Options {
  configPath: string;
  config: OperatorConfig;
  watchNamespaces: string[];
  leaderElect: boolean;
  leaderElectionNamespace: string;
  leaderElectionId: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  metricsPort: number;
  healthPort: number;
  concurrency: number;
  /** Client-side rate limit of API requests (watches aside): average per second, and burst. */
  kubeApiQps: number;
  kubeApiBurst: number;
  identity: string;
}

export class UsageError extends Error {}

export const defaultConfig: OperatorConfig = {
  defaultDomain: 'models.example.com',
  gateway: {
    selector: { istio: 'ingressgateway' },
    port: 80,
    tls: { enabled: false, port: 443, credentialName: '', httpsRedirect: false },
  },
  storage: { mode: 'emptyDir', storageClassName: '', defaultSize: '1Gi', hostPathRoot: '/mnt/ml-operator' },
  fetcher: { image: '' },
  prometheus: { url: '', dataPlane: '' },
  routing: {
    provider: 'istio',
    gatewayAPI: {
      gatewayClassName: '',
      sharedGateway: { name: '', namespace: '', sectionName: '' },
      mirroring: 'None',
    },
  },
  autoscaling: { engine: 'hpa' },
  models: {
    gpuTolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
    imagePullSecrets: [],
  },
};

const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const hostName = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const quantity = /^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[kMGTPE])?$/;

function port(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new UsageError(`${flag}=${value}: expected a port number 0-65535`);
  return n;
}

/** Validates a parsed config file, naming the first key that is wrong. */
export function parseConfig(raw: unknown, source: string): OperatorConfig {
  // Annotated (not inferred) so that a call narrows the value it rejected.
  const fail: (key: string, want: string, got: unknown) => never = (key, want, got) => {
    throw new UsageError(`${source}: ${key} must be ${want}, got ${JSON.stringify(got)}`);
  };
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(raw)) fail('the config', 'a JSON object', raw);
  const c = raw;
  const known = new Set([
    'defaultDomain',
    'gateway',
    'storage',
    'fetcher',
    'routing',
    'prometheus',
    'autoscaling',
    'models',
  ]);
  for (const key of Object.keys(c))
    if (!known.has(key)) fail(key, `one of ${[...known].join(', ')} (unknown key)`, c[key]);
  const config = structuredClone(defaultConfig);
  if (c.defaultDomain !== undefined) {
    if (typeof c.defaultDomain !== 'string' || !hostName.test(c.defaultDomain))
      fail('defaultDomain', 'a DNS name such as models.example.com', c.defaultDomain);
    config.defaultDomain = c.defaultDomain;
  }
  if (c.gateway !== undefined) {
    const g = c.gateway;
    if (!isObject(g)) fail('gateway', 'an object', g);
    if (g.selector !== undefined) {
      if (
        !isObject(g.selector) ||
        Object.values(g.selector).some((v) => typeof v !== 'string') ||
        Object.keys(g.selector).length === 0
      )
        fail('gateway.selector', 'a non-empty map of label names to strings', g.selector);
      config.gateway.selector = g.selector as Record<string, string>;
    }
    if (g.port !== undefined) {
      if (typeof g.port !== 'number' || !Number.isInteger(g.port) || g.port < 1 || g.port > 65535)
        fail('gateway.port', 'a port number 1-65535', g.port);
      config.gateway.port = g.port;
    }
    if (g.tls !== undefined) {
      const t = g.tls;
      if (!isObject(t)) fail('gateway.tls', 'an object', t);
      for (const key of ['enabled', 'httpsRedirect'] as const) {
        if (t[key] !== undefined) {
          if (typeof t[key] !== 'boolean') fail(`gateway.tls.${key}`, 'true or false', t[key]);
          config.gateway.tls[key] = t[key];
        }
      }
      if (t.port !== undefined) {
        if (!Number.isInteger(t.port) || (t.port as number) < 1 || (t.port as number) > 65535)
          fail('gateway.tls.port', 'a port number 1-65535', t.port);
        config.gateway.tls.port = t.port as number;
      }
      if (t.credentialName !== undefined) {
        if (typeof t.credentialName !== 'string') fail('gateway.tls.credentialName', 'a Secret name', t.credentialName);
        config.gateway.tls.credentialName = t.credentialName;
      }
      if (config.gateway.tls.enabled && !config.gateway.tls.credentialName)
        fail('gateway.tls.credentialName', 'set when gateway.tls.enabled is true', '');
    }
  }
  if (c.storage !== undefined) {
    const s = c.storage;
    if (!isObject(s)) fail('storage', 'an object', s);
    if (s.mode !== undefined) {
      if (!['pvc', 'hostPath', 'emptyDir'].includes(s.mode as string))
        fail('storage.mode', 'one of pvc, hostPath, emptyDir', s.mode);
      config.storage.mode = s.mode as StorageMode;
    }
    if (s.storageClassName !== undefined) {
      if (typeof s.storageClassName !== 'string')
        fail('storage.storageClassName', 'a StorageClass name', s.storageClassName);
      config.storage.storageClassName = s.storageClassName;
    }
    if (s.defaultSize !== undefined) {
      if (typeof s.defaultSize !== 'string' || !quantity.test(s.defaultSize))
        fail('storage.defaultSize', 'a quantity such as 1Gi', s.defaultSize);
      config.storage.defaultSize = s.defaultSize;
    }
    if (s.hostPathRoot !== undefined) {
      if (typeof s.hostPathRoot !== 'string' || !s.hostPathRoot.startsWith('/'))
        fail('storage.hostPathRoot', 'an absolute path', s.hostPathRoot);
      config.storage.hostPathRoot = s.hostPathRoot;
    }
  }
  if (c.fetcher !== undefined) {
    if (!isObject(c.fetcher) || (c.fetcher.image !== undefined && typeof c.fetcher.image !== 'string'))
      fail('fetcher.image', 'an image reference', c.fetcher);
    config.fetcher.image = c.fetcher.image ?? '';
  }
  if (c.prometheus !== undefined) {
    const p = c.prometheus;
    if (!isObject(p)) fail('prometheus', 'an object', p);
    if (p.url !== undefined) {
      if (typeof p.url !== 'string' || (p.url !== '' && !/^https?:\/\/[^\s/]+/.test(p.url)))
        fail('prometheus.url', 'an http(s):// URL of Prometheus', p.url);
      config.prometheus.url = p.url;
    }
    if (p.dataPlane !== undefined) {
      if (!['', 'istio', 'traefik'].includes(p.dataPlane as string))
        fail('prometheus.dataPlane', 'istio, traefik or empty', p.dataPlane);
      config.prometheus.dataPlane = p.dataPlane as '' | 'istio' | 'traefik';
    }
  }
  if (c.autoscaling !== undefined) {
    const a = c.autoscaling;
    if (!isObject(a)) fail('autoscaling', 'an object', a);
    if (a.engine !== undefined) {
      if (a.engine !== 'hpa' && a.engine !== 'keda') fail('autoscaling.engine', 'hpa or keda', a.engine);
      config.autoscaling.engine = a.engine;
    }
  }
  if (c.models !== undefined) {
    const m = c.models;
    if (!isObject(m)) fail('models', 'an object', m);
    for (const key of Object.keys(m))
      if (key !== 'gpuTolerations' && key !== 'imagePullSecrets')
        fail(`models.${key}`, 'gpuTolerations or imagePullSecrets (unknown key)', m[key]);
    if (m.gpuTolerations !== undefined) {
      if (!Array.isArray(m.gpuTolerations)) fail('models.gpuTolerations', 'a list of tolerations', m.gpuTolerations);
      config.models.gpuTolerations = (m.gpuTolerations as unknown[]).map((t, i) =>
        parseToleration(t, `models.gpuTolerations[${i}]`, fail),
      );
    }
    if (m.imagePullSecrets !== undefined) {
      const names = m.imagePullSecrets;
      if (!Array.isArray(names) || !names.every((n) => typeof n === 'string' && dnsSubdomain.test(n)))
        fail('models.imagePullSecrets', 'a list of Secret names', names);
      config.models.imagePullSecrets = names as string[];
    }
  }
  if (c.routing !== undefined) {
    const r = c.routing;
    if (!isObject(r)) fail('routing', 'an object', r);
    if (r.provider !== undefined) {
      if (r.provider !== 'istio' && r.provider !== 'gatewayAPI')
        fail('routing.provider', 'istio or gatewayAPI', r.provider);
      config.routing.provider = r.provider;
    }
    if (r.gatewayAPI !== undefined) {
      const g = r.gatewayAPI;
      if (!isObject(g)) fail('routing.gatewayAPI', 'an object', g);
      if (g.gatewayClassName !== undefined) {
        if (
          typeof g.gatewayClassName !== 'string' ||
          (g.gatewayClassName !== '' && !dnsSubdomain.test(g.gatewayClassName))
        )
          fail('routing.gatewayAPI.gatewayClassName', 'a GatewayClass name', g.gatewayClassName);
        config.routing.gatewayAPI.gatewayClassName = g.gatewayClassName;
      }
      if (g.sharedGateway !== undefined) {
        const sg = g.sharedGateway;
        if (!isObject(sg)) fail('routing.gatewayAPI.sharedGateway', 'an object', sg);
        for (const key of ['name', 'namespace', 'sectionName'] as const) {
          if (sg[key] === undefined) continue;
          const pattern = key === 'name' ? dnsSubdomain : dnsLabel;
          if (typeof sg[key] !== 'string' || (sg[key] !== '' && !pattern.test(sg[key])))
            fail(
              `routing.gatewayAPI.sharedGateway.${key}`,
              key === 'name' ? 'a Gateway name' : key === 'namespace' ? 'a namespace name' : 'a listener name',
              sg[key],
            );
          config.routing.gatewayAPI.sharedGateway[key] = sg[key];
        }
      }
      if (g.mirroring !== undefined) {
        if (!['RequestMirror', 'TraefikService', 'None'].includes(g.mirroring as string))
          fail('routing.gatewayAPI.mirroring', 'RequestMirror, TraefikService or None', g.mirroring);
        config.routing.gatewayAPI.mirroring = g.mirroring as 'RequestMirror' | 'TraefikService' | 'None';
      }
    }
    const { gatewayAPI } = config.routing;
    if (config.routing.provider === 'gatewayAPI' && !gatewayAPI.gatewayClassName && !gatewayAPI.sharedGateway.name) {
      fail(
        'routing.gatewayAPI',
        'a sharedGateway.name (routes attach to that Gateway) or a gatewayClassName (each endpoint gets a Gateway of that class) when routing.provider is gatewayAPI',
        gatewayAPI,
      );
    }
    if (gatewayAPI.gatewayClassName && gatewayAPI.sharedGateway.name) {
      fail('routing.gatewayAPI', 'either sharedGateway.name or gatewayClassName, not both', gatewayAPI);
    }
  }
  return config;
}

const labelKey =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

function parseToleration(
  raw: unknown,
  key: string,
  fail: (key: string, want: string, got: unknown) => never,
): Toleration {
  const want =
    'a toleration: {key, operator: Equal|Exists, value, effect: NoSchedule|PreferNoSchedule|NoExecute, tolerationSeconds}';
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail(key, want, raw);
  const t = raw as Record<string, unknown>;
  for (const k of Object.keys(t))
    if (!['key', 'operator', 'value', 'effect', 'tolerationSeconds'].includes(k)) fail(`${key}.${k}`, want, t[k]);
  if (t.key !== undefined && (typeof t.key !== 'string' || (t.key !== '' && !labelKey.test(t.key))))
    fail(`${key}.key`, 'a taint key such as nvidia.com/gpu', t.key);
  if (t.operator !== undefined && t.operator !== 'Equal' && t.operator !== 'Exists')
    fail(`${key}.operator`, 'Equal or Exists', t.operator);
  if (t.value !== undefined && typeof t.value !== 'string') fail(`${key}.value`, 'a string', t.value);
  if (t.operator === 'Exists' && t.value) fail(`${key}.value`, 'empty with operator Exists', t.value);
  if (!t.key && t.operator !== 'Exists') fail(`${key}.operator`, 'Exists when there is no key', t.operator);
  if (t.effect !== undefined && !['NoSchedule', 'PreferNoSchedule', 'NoExecute'].includes(t.effect as string))
    fail(`${key}.effect`, 'NoSchedule, PreferNoSchedule or NoExecute', t.effect);
  if (
    t.tolerationSeconds !== undefined &&
    (!Number.isInteger(t.tolerationSeconds) || (t.tolerationSeconds as number) < 0 || t.effect !== 'NoExecute')
  )
    fail(`${key}.tolerationSeconds`, 'a whole number of seconds >= 0, with effect NoExecute', t.tolerationSeconds);
  return t;
}

export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): Options {
  const options: Omit<Options, 'config'> & { config?: OperatorConfig } = {
    configPath: '/etc/ml-operator/config.json',
    watchNamespaces: [],
    leaderElect: true,
    leaderElectionNamespace: env.POD_NAMESPACE ?? '',
    leaderElectionId: 'ml-operator',
    logLevel: 'info',
    metricsPort: 8080,
    healthPort: 8081,
    concurrency: 16,
    kubeApiQps: 100,
    kubeApiBurst: 200,
    identity: env.POD_NAME ?? `${env.HOSTNAME ?? 'ml-operator'}-${process.pid}`,
  };
  for (const arg of argv) {
    const match = arg.match(/^--([a-z-]+)(?:=(.*))?$/);
    if (!match) throw new UsageError(`unexpected argument ${JSON.stringify(arg)}: flags take the form --name=value`);
    const [, name, value = ''] = match;
    switch (name) {
      case 'config':
        options.configPath = value;
        break;
      case 'watch-namespaces':
        options.watchNamespaces = value
          .split(',')
          .map((n) => n.trim())
          .filter(Boolean);
        for (const ns of options.watchNamespaces)
          if (!dnsLabel.test(ns))
            throw new UsageError(`--watch-namespaces: ${JSON.stringify(ns)} is not a namespace name`);
        break;
      case 'leader-elect':
        if (value !== 'true' && value !== 'false' && value !== '')
          throw new UsageError(`--leader-elect=${value}: expected true or false`);
        options.leaderElect = value !== 'false';
        break;
      case 'leader-election-namespace':
        options.leaderElectionNamespace = value;
        break;
      case 'leader-election-id':
        if (!dnsLabel.test(value)) throw new UsageError(`--leader-election-id=${value}: expected a DNS label`);
        options.leaderElectionId = value;
        break;
      case 'log-level':
        if (!['debug', 'info', 'warn', 'error'].includes(value))
          throw new UsageError(`--log-level=${value}: expected debug, info, warn or error`);
        options.logLevel = value as Options['logLevel'];
        break;
      case 'metrics-port':
        options.metricsPort = port('--metrics-port', value);
        break;
      case 'health-port':
        options.healthPort = port('--health-port', value);
        break;
      case 'concurrency': {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 1 || n > 64)
          throw new UsageError(`--concurrency=${value}: expected an integer 1-64`);
        options.concurrency = n;
        break;
      }
      case 'kube-api-qps': {
        const n = Number(value);
        if (!(n > 0 && n <= 10_000))
          throw new UsageError(
            `--kube-api-qps=${value}: expected a number of requests per second, above 0 and at most 10000`,
          );
        options.kubeApiQps = n;
        break;
      }
      case 'kube-api-burst': {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 1 || n > 10_000)
          throw new UsageError(`--kube-api-burst=${value}: expected an integer 1-10000`);
        options.kubeApiBurst = n;
        break;
      }
      default:
        throw new UsageError(
          `unknown flag --${name}; known flags: --config, --watch-namespaces, --leader-elect, --leader-election-namespace, --leader-election-id, --log-level, --metrics-port, --health-port, --concurrency, --kube-api-qps, --kube-api-burst`,
        );
    }
  }
  if (options.leaderElect && !options.leaderElectionNamespace) {
    throw new UsageError(
      '--leader-elect needs --leader-election-namespace (or the POD_NAMESPACE environment variable)',
    );
  }
  let text: string;
  try {
    text = readFileSync(options.configPath, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the config file ${options.configPath} (--config): ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${options.configPath} is not valid JSON: ${(err as Error).message}`);
  }
  const config = parseConfig(raw, options.configPath);
  if (!config.fetcher.image) {
    throw new UsageError(
      `${options.configPath}: fetcher.image must be set: the image of the init container that fetches model artifacts (the chart sets the controller's own image)`,
    );
  }
  return { ...options, config };
}
