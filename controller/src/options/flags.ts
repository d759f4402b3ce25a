// The controller's command line (docs/controller-interface.md). Every mistake is reported at
// start-up with the flag that is wrong, before anything touches the cluster; the config file it names
// is read and checked by config.ts.
import { readFileSync } from 'node:fs';
import { dnsLabel, parseConfig, UsageError, type OperatorConfig } from './config.ts';

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

function port(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new UsageError(`${flag}=${value}: expected a port number 0-65535`);
  return n;
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
