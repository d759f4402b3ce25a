// The operator's config file, as the chart's ConfigMap gives it (docs/controller-interface.md): what
// every endpoint's objects are built with. Every mistake is reported at start-up with the key that is
// wrong, before anything touches the cluster.
import type { Toleration } from '../api/generated.ts';

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

/** A mistake in the command line or the config file: reported at start-up, with what is wrong. */
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

export const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const hostName = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const quantity = /^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[kMGTPE])?$/;

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
