// Requests straight to model pods, bypassing every gateway: for checks that must hold whatever
// routes the data plane has (pod addresses are reachable only inside the local cluster's network
// namespace, so this runs there as its own process):
//   ip netns exec NS node ci/traffic/direct.ts --rate=10 --seconds=300 --requests=5000 \
//     --target=NAME=http://198.18.1.7:8080/predict [--target=...]
// Each target gets its own open-loop load at --rate per second, bounded by --requests and --seconds.
// It prints `sending` once every load has started; on SIGTERM (or when every load has ended) it
// stops sending, waits for the requests in flight, and prints one JSON line: per target, the report
// of ci/traffic/load.ts plus the answers per pod and the first failures with their times.
import { startLoad, type LoadReport, type LoadRun } from './load.ts';

export interface DirectTargetReport extends LoadReport {
  url: string;
  /** Answers (any status) per pod that named itself. */
  byPod: Record<string, number>;
  /** Up to 20 failed requests: ms since the start, status (0: no answer), error. */
  failures: { at: number; status: number; error?: string }[];
}

export type DirectReport = Record<string, DirectTargetReport>;

function parse(argv: string[]): { rate: number; seconds: number; requests: number; targets: [string, string][] } {
  const flag = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const rate = Number(flag('rate') ?? 10);
  const seconds = Number(flag('seconds') ?? 60);
  const requests = Number(flag('requests') ?? rate * seconds);
  const targets = argv
    .filter((a) => a.startsWith('--target='))
    .map((a) => {
      const spec = a.slice('--target='.length);
      const eq = spec.indexOf('=');
      return [spec.slice(0, eq), spec.slice(eq + 1)] as [string, string];
    });
  const bad =
    !(rate > 0 && rate <= 500) ||
    !(seconds > 0 && seconds <= 3600) ||
    !(requests > 0 && requests <= 1_000_000) ||
    targets.length === 0 ||
    targets.some(([n, u]) => !n || !URL.canParse(u));
  if (bad) {
    process.stderr.write(
      'usage: direct.ts --rate=1..500 --seconds=1..3600 [--requests=N] --target=NAME=URL [--target=NAME=URL ...]\n',
    );
    process.exit(2);
  }
  return { rate, seconds, requests, targets };
}

async function main(): Promise<void> {
  const { rate, seconds, requests, targets } = parse(process.argv.slice(2));
  const runs = new Map<string, { url: string; run: LoadRun }>();
  for (const [name, url] of targets) {
    runs.set(name, {
      url,
      run: startLoad({
        url,
        host: new URL(url).host,
        requests,
        rate,
        concurrency: 16,
        maxDurationMs: seconds * 1000,
        timeoutMs: 10_000,
      }),
    });
  }
  const stopAll = () => {
    for (const { run } of runs.values()) run.stop();
  };
  process.once('SIGTERM', stopAll);
  process.once('SIGINT', stopAll);
  process.stdout.write('sending\n');
  const result: DirectReport = {};
  for (const [name, { url, run }] of runs) {
    const r = await run.done;
    const byPod: Record<string, number> = {};
    for (const s of run.samples) if (s.backend?.pod) byPod[s.backend.pod] = (byPod[s.backend.pod] ?? 0) + 1;
    const failures = run.samples
      .filter((s) => s.status < 200 || s.status >= 300)
      .slice(0, 20)
      .map((s) => ({ at: Math.round(s.start), status: s.status, ...(s.error ? { error: s.error } : {}) }));
    result[name] = { ...r, url, byPod, failures };
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
