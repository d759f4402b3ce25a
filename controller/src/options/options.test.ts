import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from './config.ts';
import { parseOptions } from './flags.ts';

function configFile(content: unknown): string {
  const path = join(mkdtempSync(join(tmpdir(), 'options-')), 'config.json');
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}
const good = { defaultDomain: 'models.acme.io', fetcher: { image: 'ml-operator/controller:1' } };

describe('parseOptions', () => {
  it('reads the flags the chart sets', () => {
    const o = parseOptions(
      [
        `--config=${configFile(good)}`,
        '--watch-namespaces=team-a,team-b',
        '--leader-elect=true',
        '--leader-election-namespace=ops',
        '--leader-election-id=mlop',
        '--log-level=debug',
        '--metrics-port=9090',
        '--health-port=9091',
        '--concurrency=8',
        '--kube-api-qps=20.5',
        '--kube-api-burst=30',
      ],
      { POD_NAME: 'pod-1' },
    );
    expect(o).toMatchObject({
      watchNamespaces: ['team-a', 'team-b'],
      leaderElect: true,
      leaderElectionNamespace: 'ops',
      leaderElectionId: 'mlop',
      logLevel: 'debug',
      metricsPort: 9090,
      healthPort: 9091,
      concurrency: 8,
      kubeApiQps: 20.5,
      kubeApiBurst: 30,
      identity: 'pod-1',
    });
    expect(o.config.defaultDomain).toBe('models.acme.io');
    expect(o.config.storage.mode).toBe('emptyDir');
  });
  it('takes the Lease namespace from POD_NAMESPACE', () => {
    expect(
      parseOptions([`--config=${configFile(good)}`], { POD_NAMESPACE: 'ml-operator' }).leaderElectionNamespace,
    ).toBe('ml-operator');
  });
  it.each([
    [['--colour=red'], /unknown flag --colour/],
    [['--log-level=loud'], /--log-level=loud: expected debug, info, warn or error/],
    [['--metrics-port=http'], /--metrics-port=http: expected a port number/],
    [['--concurrency=0'], /--concurrency=0: expected an integer 1-64/],
    [['--kube-api-qps=0'], /--kube-api-qps=0: expected a number of requests per second/],
    [['--kube-api-burst=1.5'], /--kube-api-burst=1.5: expected an integer 1-10000/],
    [['--watch-namespaces=Team_A'], /"Team_A" is not a namespace name/],
    [['--leader-elect=maybe'], /--leader-elect=maybe: expected true or false/],
    [['verbose'], /unexpected argument "verbose"/],
  ])('rejects %j with a message naming the flag', (argv, message) => {
    expect(() => parseOptions([`--config=${configFile(good)}`, ...argv], { POD_NAMESPACE: 'x' })).toThrow(message);
  });
  it('needs a Lease namespace when leader election is on', () => {
    expect(() => parseOptions([`--config=${configFile(good)}`], {})).toThrow(
      /--leader-elect needs --leader-election-namespace/,
    );
  });
  it('needs the fetcher image', () => {
    expect(() => parseOptions([`--config=${configFile({})}`, '--leader-elect=false'], {})).toThrow(
      /fetcher.image must be set/,
    );
  });
  it('says which config file cannot be read or parsed', () => {
    expect(() => parseOptions(['--config=/nonexistent/config.json', '--leader-elect=false'], {})).toThrow(
      /cannot read the config file \/nonexistent\/config.json/,
    );
    expect(() => parseOptions([`--config=${configFile('{oops')}`, '--leader-elect=false'], {})).toThrow(
      /is not valid JSON/,
    );
  });
});

describe('parseConfig', () => {
  it.each([
    [{ defaultDomain: 'Not A Domain' }, /defaultDomain must be a DNS name/],
    [{ storage: { mode: 'nfs' } }, /storage.mode must be one of pvc, hostPath, emptyDir, got "nfs"/],
    [{ storage: { defaultSize: 'big' } }, /storage.defaultSize must be a quantity/],
    [{ gateway: { port: 0 } }, /gateway.port must be a port number/],
    [
      { gateway: { tls: { enabled: true } } },
      /gateway.tls.credentialName must be set when gateway.tls.enabled is true/,
    ],
    [{ gateway: { selector: {} } }, /gateway.selector must be a non-empty map/],
    [
      { stroage: {} },
      /stroage must be one of defaultDomain, gateway, storage, fetcher, routing, prometheus, autoscaling, models \(unknown key\)/,
    ],
    [
      { models: { gpuTolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', value: 'x' }] } },
      /models.gpuTolerations\[0\].value must be empty with operator Exists/,
    ],
    [
      { models: { gpuTolerations: [{ operator: 'Equal', value: 'x' }] } },
      /models.gpuTolerations\[0\].operator must be Exists when there is no key/,
    ],
    [
      { models: { gpuTolerations: [{ key: 'gpu', effect: 'NoRun' }] } },
      /models.gpuTolerations\[0\].effect must be NoSchedule, PreferNoSchedule or NoExecute/,
    ],
    [
      { models: { gpuTolerations: [{ key: 'gpu', effect: 'NoSchedule', tolerationSeconds: 30 }] } },
      /models.gpuTolerations\[0\].tolerationSeconds must be a whole number of seconds >= 0, with effect NoExecute/,
    ],
    [{ models: { imagePullSecrets: ['Registry_Creds'] } }, /models.imagePullSecrets must be a list of Secret names/],
    [{ models: { pullSecrets: [] } }, /models.pullSecrets must be gpuTolerations or imagePullSecrets \(unknown key\)/],
    [{ routing: { provider: 'envoy' } }, /routing.provider must be istio or gatewayAPI, got "envoy"/],
    [{ prometheus: { url: 'prometheus:9090' } }, /prometheus.url must be an http\(s\):\/\/ URL of Prometheus/],
    [{ prometheus: { dataPlane: 'datadog' } }, /prometheus.dataPlane must be istio, traefik or empty/],
    [{ autoscaling: { engine: 'vpa' } }, /autoscaling.engine must be hpa or keda/],
    [
      { routing: { provider: 'gatewayAPI', gatewayAPI: { gatewayClassName: 'eg', mirroring: 'Envoy' } } },
      /routing.gatewayAPI.mirroring must be RequestMirror, TraefikService or None/,
    ],
    [
      { routing: { provider: 'gatewayAPI' } },
      /routing.gatewayAPI must be a sharedGateway.name .* or a gatewayClassName/,
    ],
    [
      { routing: { provider: 'gatewayAPI', gatewayAPI: { gatewayClassName: 'a', sharedGateway: { name: 'b' } } } },
      /either sharedGateway.name or gatewayClassName, not both/,
    ],
    [
      { routing: { gatewayAPI: { sharedGateway: { namespace: 'Gateway_System' } } } },
      /routing.gatewayAPI.sharedGateway.namespace must be a namespace name/,
    ],
  ])('rejects %j, naming the key', (config, message) => {
    expect(() => parseConfig(config, 'config.json')).toThrow(message);
  });
  it('takes a shared Gateway for the Gateway API provider', () => {
    const routing = {
      provider: 'gatewayAPI',
      gatewayAPI: { sharedGateway: { name: 'ml-gateway', namespace: 'gateway-system', sectionName: 'http' } },
    };
    expect(parseConfig({ routing }, 'config.json').routing).toEqual({
      provider: 'gatewayAPI',
      gatewayAPI: {
        gatewayClassName: '',
        sharedGateway: { name: 'ml-gateway', namespace: 'gateway-system', sectionName: 'http' },
        mirroring: 'None',
      },
    });
  });
  it('fills defaults for what is not given', () => {
    expect(parseConfig({}, 'config.json').gateway).toEqual({
      selector: { istio: 'ingressgateway' },
      port: 80,
      tls: { enabled: false, port: 443, credentialName: '', httpsRedirect: false },
    });
  });
});
