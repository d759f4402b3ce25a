// The model agent: an HTTP proxy in front of the model server of a model pod, which keeps a sample of
// requests and answers (Data Capture). Run from the controller image:
//   node /app/dist/agent/main.js --model=http://127.0.0.1:8081 [--listen=0.0.0.0:8080] [--admin-listen=0.0.0.0:9090] ...
// Flags, config.json and the records are described in docs/agent.md.
//
// Logs: JSON lines on stderr, credentials masked. Exit codes: 0 after a drain, 1 failure to start,
// 2 bad usage.
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { pathToFileURL } from 'node:url';
import { makeLog, type Env, type Log } from '../fetcher/log.ts';
import { createAdmin } from './admin.ts';
import { Capture } from './capture.ts';
import {
  identityFrom,
  parseCaptureConfig,
  parseCopyToken,
  parseFlags,
  parseShadowsConfig,
  usage,
  UsageError,
  type Flags,
} from './config.ts';
import { agentMetrics, type AgentMetrics } from './metrics.ts';
import { createProxy, type Proxy } from './proxy.ts';
import { Shadows } from './shadow.ts';
import { fileSink, type Sink } from './sink.ts';

export interface Agent {
  dataPort: number;
  adminPort: number;
  capture: Capture;
  shadows: Shadows;
  metrics: AgentMetrics;
  proxy: Proxy;
  /** Reads the config file now (as the poll does). */
  reload(): Promise<void>;
  /** SIGTERM's work: stop taking connections, finish requests in flight, flush capture. */
  stop(): Promise<void>;
}

/** Opens the sink a destination names; object stores through the fetcher's clients and credential chains. */
export async function openSink(destination: string, env: Env, log: Log, timeoutMs = 10_000): Promise<Sink> {
  if (destination.startsWith('file://')) return fileSink(destination);
  // Loaded only when used: an agent that writes to a volume never loads the cloud SDKs.
  const { storeSink } = await import('./stores.ts');
  return storeSink(destination, env, log, timeoutMs);
}

const listen = (server: Server, host: string, port: number) =>
  new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as { port: number }).port);
    });
  });

export async function startAgent(
  flags: Flags,
  env: Env,
  log: Log,
  sinkOpener: (destination: string) => Promise<Sink> = (d) => openSink(d, env, log),
): Promise<Agent> {
  const identity = identityFrom(env);
  const metrics = agentMetrics(identity);
  const capture = new Capture({
    identity,
    bufferBytes: flags.bufferBytes,
    openSink: sinkOpener,
    onWritten: (n) => metrics.captureRecords.inc({ result: 'written' }, n),
    onDropped: (n) => metrics.captureRecords.inc({ result: 'dropped' }, n),
    onError: (message, destination) =>
      log('warn', 'capture sink failing: records wait in the buffer, dropped once it is full', {
        destination,
        error: message,
      }),
  });
  const shadows = new Shadows({ metrics });
  let lastText: string | undefined;
  let lastError: string | null = null;
  const reload = async () => {
    let text: string;
    try {
      text = await readFile(flags.configPath, 'utf8');
    } catch (e) {
      const message = `cannot read ${flags.configPath} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): the capture config keeps its last good value`;
      if (message !== lastError) log('warn', message);
      lastError = message;
      capture.reportConfigError(message);
      lastText = undefined;
      return;
    }
    if (text === lastText) return;
    lastText = text;
    try {
      const config = parseCaptureConfig(text);
      // The shadows this pod mirrors to: those of the serving version, when this pod is one of its variants.
      const shadowConfigs = parseShadowsConfig(text).filter(
        (s) => !s.sources || s.sources.includes(identity.modelVersion),
      );
      capture.configure(config);
      shadows.configure(shadowConfigs, parseCopyToken(text));
      lastError = null;
      log('info', 'capture config', {
        enabled: config.enabled,
        samplingPercent: config.samplingPercent,
        destination: config.destination,
        shadows: shadowConfigs.map((s) => `${s.name} ${s.percent}% ${s.url}`),
      });
    } catch (e) {
      lastError = `${flags.configPath}: ${(e as Error).message}; the last good capture config stays in use`;
      capture.reportConfigError(lastError);
      log('warn', lastError);
    }
  };
  await reload();
  // An object store's SDK loads before the first request rather than under it.
  await capture.opened();
  // One read at a time: a slow read finishing after a newer one would apply the older text.
  let reading: Promise<void> | undefined;
  const poll = setInterval(() => {
    reading ??= reload().finally(() => (reading = undefined));
  }, flags.configPollMs);
  poll.unref();

  const proxy = createProxy({ model: flags.model, capture, shadows, metrics, log });
  let draining = false;
  const admin = createAdmin({
    model: flags.model,
    modelReadyPath: flags.modelReadyPath,
    capture,
    shadows,
    metrics,
    draining: () => draining,
  });
  const adminPort = await listen(admin, flags.adminListen.host, flags.adminListen.port);
  const dataPort = await listen(proxy.server, flags.listen.host, flags.listen.port);
  log('info', 'serving', {
    listen: `${flags.listen.host}:${dataPort}`,
    admin: `${flags.adminListen.host}:${adminPort}`,
    model: flags.model.origin,
  });

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      draining = true;
      clearInterval(poll);
      const started = Date.now();
      const inFlight = proxy.inFlight();
      const drained = await proxy.drain(flags.drainTimeoutMs);
      // One deadline for what is left to write: copies in flight to shadows end first (a captured
      // request's record waits for them), within half of it; then the records.
      const deadline = Date.now() + flags.flushTimeoutMs;
      await shadows.stop(flags.flushTimeoutMs / 2);
      const before = capture.status();
      await capture.flush(Math.max(0, deadline - Date.now()));
      const after = capture.status();
      log(drained ? 'info' : 'warn', 'stopped', {
        inFlightAtSigterm: inFlight,
        unfinishedRequests: proxy.inFlight(),
        recordsFlushed: after.written - before.written,
        recordsDropped: after.dropped,
        seconds: (Date.now() - started) / 1000,
      });
      proxy.close();
      admin.closeAllConnections();
      await new Promise((r) => admin.close(r));
    })());
  return { dataPort, adminPort, capture, shadows, metrics, proxy, reload, stop };
}

/** Entry point: `argv` without node and the script. Resolves with the agent, or the exit code when it cannot start. */
export async function main(argv: readonly string[], env: Env): Promise<Agent | number> {
  const log = makeLog(env, (line) => process.stderr.write(`${line}\n`), 'agent');
  let flags: Flags;
  try {
    flags = parseFlags(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    log('error', `${e.message}\n${usage}`);
    return 2;
  }
  try {
    return await startAgent(flags, env, log);
  } catch (e) {
    log('error', `the agent could not start: ${(e as Error).message}`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const started = await main(process.argv.slice(2), process.env);
  if (typeof started === 'number') process.exit(started);
  process.once('SIGTERM', () => void started.stop().then(() => process.exit(0)));
  process.once('SIGINT', () => void started.stop().then(() => process.exit(0)));
}
