// `npm run traffic -- --host=HOST [--gateway=ADDRESS[:PORT]] [--rate=20] [--seconds=60]`: steady
// requests to an endpoint through the local cluster's gateway, printing each second how many each
// model instance answered and how many failed, so a rollout can be watched as it happens.
// The gateway address defaults to the one `npm start` wrote into its cluster directory.
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeReport, startLoad, type Sample } from './load.ts';

const flag = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const host = flag('host');
const rate = Number(flag('rate') ?? 20);
const seconds = Number(flag('seconds') ?? 60);
if (!host || !(rate > 0 && rate <= 500) || !(seconds > 0 && seconds <= 3600)) {
  process.stderr.write(
    'usage: npm run traffic -- --host=HOST [--gateway=ADDRESS[:PORT]] [--rate=1..500] [--seconds=1..3600]\n',
  );
  process.exit(2);
}

function defaultGateway(): string | undefined {
  for (const dir of readdirSync(tmpdir()).filter((d) => d.startsWith('ml-operator-cluster-'))) {
    try {
      return readFileSync(join(tmpdir(), dir, 'gateway.address'), 'utf8').trim();
    } catch {
      // Not a demo's cluster.
    }
  }
  return undefined;
}
const gateway = flag('gateway') ?? defaultGateway();
if (!gateway) {
  process.stderr.write(
    'no --gateway given and no running `npm start` found: start the demo first, or pass --gateway=ADDRESS\n',
  );
  process.exit(2);
}

const run = startLoad({
  url: `http://${gateway}/predict`,
  host,
  requests: Math.ceil(rate * seconds),
  rate,
  concurrency: 64,
  maxDurationMs: seconds * 1000 + 1000,
});
process.once('SIGINT', () => run.stop());
// Samples before `firstOpen` are all reported; later ones are reported once they end.
let firstOpen = 0;
const reported = new Set<number>();
const tick = setInterval(() => {
  const window: Sample[] = [];
  for (let i = firstOpen; i < run.samples.length; i++) {
    const s = run.samples[i];
    if (s.end > 0 && !reported.has(i)) {
      reported.add(i);
      window.push(s);
    }
  }
  while (firstOpen < run.samples.length && reported.has(firstOpen)) reported.delete(firstOpen++);
  const counts = new Map<string, number>();
  for (const s of window) {
    const key =
      s.status === 200
        ? (s.backend?.instance ?? '?')
        : s.status === 0
          ? `failed (${s.error ?? 'no answer'})`
          : `status ${s.status}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const line = [...counts]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ${v}`)
    .join('  ');
  process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line || '(no answers)'}\n`);
}, 1000);
const r = await run.done;
clearInterval(tick);
process.stdout.write(`${describeReport(r)}\n`);
