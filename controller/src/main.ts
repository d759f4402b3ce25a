// The controller process: flags and config, then the manager until SIGTERM.
import { loadClusterAccess } from './kube/access.ts';
import { createLogger } from './log.ts';
import { startController } from './manager.ts';
import { UsageError } from './options/config.ts';
import { parseOptions } from './options/flags.ts';

let options;
try {
  options = parseOptions(process.argv.slice(2), process.env);
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`ml-operator: ${err.message}\n`);
  process.exit(2);
}

const logger = createLogger(options.logLevel);
let kc;
try {
  kc = await loadClusterAccess();
} catch (err) {
  logger.fatal(
    { err },
    'cannot reach the cluster: no in-cluster ServiceAccount and no usable kubeconfig (set KUBECONFIG)',
  );
  process.exit(1);
}
logger.info(
  {
    server: kc.getCurrentCluster()?.server,
    identity: options.identity,
    namespaces: options.watchNamespaces.length ? options.watchNamespaces : 'all',
    leaderElect: options.leaderElect,
  },
  'starting',
);

const controller = await startController(options, kc, logger);
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    logger.info({ signal }, 'shutting down');
    void controller.stop().then(() => process.exit(0));
  });
}
process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'));
