// What a user sees first with kubectl: the examples as shipped, applied with `kubectl apply -f` of
// their directories (files in name order, so each endpoint before its models), come up with no
// Warning; a reference that stays missing warns after the grace period, one that disappears from a
// serving endpoint at once; the printer columns of the three kinds, as the API server evaluates them
// for kubectl, mean what they say in every state of a rollout; and one label selector lists only
// what the user made.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { kubectl as runKubectl } from '../../ci/cluster/control-plane.ts';
import type { ControllerProcess } from '../../ci/cluster/operator.ts';
import { waitFor } from '../../ci/wait.ts';
import type { MachineLearningEndpoint, MachineLearningEndpointRollout } from '../../controller/src/api/generated.ts';
import { resources } from '../../controller/src/kube/resources.ts';
import { templateGraceMs } from '../../controller/src/reconcile/missing-templates.ts';
import { createNamespace, deleteNamespace, printedTable, type PrintedTable } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  getEndpoint,
  inService,
  k8s,
  runController,
  user,
  waitForEndpoint,
} from './ml.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
/** Its own discovery cache: the CRDs may have changed since another run cached them. */
const cacheDir = mkdtempSync(join(tmpdir(), 'kubectl-view-'));
const kubectl = (args: string[]) => runKubectl(inject('kubeconfigPath'), [`--cache-dir=${cacheDir}`, ...args]);
/** The demo's examples, which the local cluster's nodes can serve (the others need GPUs or real servers), each in a namespace of its own. */
const exampleDirs = ['titanic', 'ab-test'];
/** The label selector the chart's NOTES and the README give to list only your own objects. */
const templatesOnly = 'ml-operator.dev/snapshot!=true';

/** Namespace of each example directory. */
const examples: Record<string, string> = {};
let rollouts: string;
let controller: ControllerProcess;

beforeAll(async () => {
  for (const dir of exampleDirs)
    examples[dir] = await createNamespace(admin, `kubectl-${dir}`, {
      'pod-security.kubernetes.io/enforce': 'restricted',
    });
  rollouts = await createNamespace(admin, 'kubectl-columns', { 'pod-security.kubernetes.io/enforce': 'restricted' });
  controller = await runController([...Object.values(examples), rollouts]);
});
afterAll(async () => {
  await controller?.stop();
  for (const ns of [...Object.values(examples), rollouts]) if (ns) await deleteNamespace(admin, ns);
  rmSync(cacheDir, { recursive: true, force: true });
});

type Event = k8s.CoreV1Event;
async function endpointEvents(namespace: string, name?: string): Promise<Event[]> {
  const selector = [
    'involvedObject.kind=MachineLearningEndpoint',
    ...(name ? [`involvedObject.name=${name}`] : []),
  ].join(',');
  return (await admin.makeApiClient(k8s.CoreV1Api).listNamespacedEvent({ namespace, fieldSelector: selector })).items;
}
const describeEvents = (events: Event[]) =>
  events.map((e) => `${e.type} ${e.reason} ${e.involvedObject.name}: ${e.message}`).join('\n');
const templatesAvailable = (e: MachineLearningEndpoint) =>
  e.status?.conditions?.find((c) => c.type === 'TemplatesAvailable');
const eventTime = (e: Event) => new Date(e.lastTimestamp ?? e.eventTime ?? 0).getTime();

describe('the examples as shipped, after a first kubectl apply -f of their directories', () => {
  const endpoints: Record<string, string> = { titanic: 'titanic', 'ab-test': 'titanic-ab' };
  const mine: Record<string, string[]> = {
    titanic: [
      'machinelearningendpoint.ml-operator.dev/titanic',
      'machinelearningendpointconfig.ml-operator.dev/titanic',
      'machinelearningmodel.ml-operator.dev/titanic',
    ],
    'ab-test': [
      'machinelearningendpoint.ml-operator.dev/titanic-ab',
      'machinelearningendpointconfig.ml-operator.dev/titanic-ab',
      'machinelearningmodel.ml-operator.dev/titanic-a',
      'machinelearningmodel.ml-operator.dev/titanic-b',
    ],
  };

  it('come InService with Normal events only: each endpoint, applied before its models, waits for them quietly', async () => {
    // As the README and the chart's NOTES say; kubectl applies the files of a directory in name order.
    await Promise.all(
      exampleDirs.map((dir) => kubectl(['apply', '-n', examples[dir], '-f', join(root, 'examples', dir)])),
    );
    for (const dir of exampleDirs) {
      await waitForEndpoint(examples[dir], endpoints[dir], 'InService', inService, 120_000);
      const events = await waitFor(`a VersionSwitched event for ${endpoints[dir]}`, 30_000, async () => {
        const all = await endpointEvents(examples[dir]);
        return all.some((e) => e.reason === 'VersionSwitched') ? all : undefined;
      });
      process.stdout.write(
        `[kubectl-view] events of endpoint ${endpoints[dir]} after kubectl apply -f examples/${dir}/:\n${describeEvents(events)}\n`,
      );
      expect(
        events.filter((e) => e.type !== 'Normal'),
        describeEvents(events),
      ).toEqual([]);
    }
  });

  it('lists only what the user applied with the documented label selector, across the ml category; snapshot rows say what they are', async () => {
    for (const dir of exampleDirs) {
      const ns = examples[dir];
      const listed = await kubectl(['get', 'ml', '-n', ns, '-l', templatesOnly, '-o', 'name']);
      expect(listed.trim().split('\n').sort()).toEqual(mine[dir]);
      const models = await printedTable(admin, `/apis/ml-operator.dev/v1alpha1/namespaces/${ns}/machinelearningmodels`);
      const snapshots = models.rows.filter((r) => r['SNAPSHOT-OF'] !== '');
      expect(snapshots.map((r) => [r['SNAPSHOT-OF'], r.ENDPOINT]).sort()).toEqual(
        mine[dir].filter((o) => o.startsWith('machinelearningmodel.')).map((o) => [o.split('/')[1], endpoints[dir]]),
      );
      for (const r of snapshots) expect(r.NAME.startsWith(`${r['SNAPSHOT-OF']}-`), r.NAME).toBe(true);
      for (const r of models.rows.filter((x) => x['SNAPSHOT-OF'] === ''))
        expect(mine[dir]).toContain(`machinelearningmodel.ml-operator.dev/${r.NAME}`);
    }
    // What the README shows.
    const ns = examples.titanic;
    const show = async (args: string[]) => `$ kubectl ${args.join(' ')}\n${await kubectl([...args, '-n', ns])}`;
    const described = await kubectl(['describe', 'mle', 'titanic', '-n', ns]);
    process.stdout.write(
      `[kubectl-view] in namespace ${ns}:\n${await show(['get', 'ml', '-l', templatesOnly])}${await show(['get', 'ml'])}$ kubectl describe mle titanic (its events)\n${described.slice(described.indexOf('Events:'))}\n`,
    );
  });

  it('warns at once when a template the serving version was made from disappears', async () => {
    const ns = examples.titanic;
    const deleted = Date.now();
    await user.delete(resources.model, ns, 'titanic');
    const warning = await waitFor('a ModelNotFound Warning on endpoint titanic', templateGraceMs / 2, async () =>
      (await endpointEvents(ns, 'titanic')).find((e) => e.type === 'Warning' && e.reason === 'ModelNotFound'),
    );
    process.stdout.write(
      `[kubectl-view] template deleted under a serving endpoint: Warning ${warning.reason} ${((Date.now() - deleted) / 1000).toFixed(1)} s after the delete\n`,
    );
    expect(warning.message).toContain(`MachineLearningModel ${ns}/titanic named by config titanic does not exist`);
    const e = await getEndpoint(ns, 'titanic');
    expect(e.status?.state).toBe('InService');
    expect(templatesAvailable(e)).toMatchObject({
      status: 'False',
      reason: 'ModelNotFound',
      message: expect.stringContaining('serving from the snapshots of config version'),
    });
  });
});

describe('a reference that is not there yet', () => {
  it('is waited for quietly (WaitingForTemplates), then warned about once the grace period is over', async () => {
    await applyConfig(rollouts, 'orphan', { models: [{ model: 'nowhere', cpus: '100m', memory: '64Mi' }] });
    await applyEndpoint(rollouts, 'orphan', { config: 'orphan' });
    const waiting = await waitForEndpoint(
      rollouts,
      'orphan',
      'WaitingForTemplates',
      (e) => templatesAvailable(e)?.reason === 'WaitingForTemplates',
    );
    expect(waiting.status?.state).toBe('Creating');
    expect(waiting.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'WaitingForTemplates',
    });
    expect(await endpointEvents(rollouts, 'orphan')).toEqual([]);
    const since = new Date(templatesAvailable(waiting)!.lastTransitionTime).getTime();
    const warning = await waitFor('a ModelNotFound Warning on endpoint orphan', templateGraceMs + 20_000, async () =>
      (await endpointEvents(rollouts, 'orphan')).find((e) => e.type === 'Warning' && e.reason === 'ModelNotFound'),
    );
    const after = (eventTime(warning) - since) / 1000;
    process.stdout.write(
      `[kubectl-view] a model that never comes: Warning ModelNotFound ${after.toFixed(0)} s after the endpoint first waited (grace ${templateGraceMs / 1000} s)\n`,
    );
    // Event and condition times are whole seconds.
    expect(after).toBeGreaterThanOrEqual(templateGraceMs / 1000 - 1);
    expect(after).toBeLessThanOrEqual(templateGraceMs / 1000 + 10);
    expect(templatesAvailable(await getEndpoint(rollouts, 'orphan'))).toMatchObject({
      status: 'False',
      reason: 'ModelNotFound',
    });
  }, 120_000);
});

describe('the printer columns, in every state of a rollout', () => {
  const name = 'columns';
  const host = () => `${name}.${rollouts}.models.example.com`;
  const model = (image: string, env: Record<string, string> = {}) => ({
    image,
    artifact: 'https://models.example.com/titanic.tar.gz',
    readinessPath: '/ping',
    ...(Object.keys(env).length ? { env: Object.entries(env).map(([n, value]) => ({ name: n, value })) } : {}),
  });
  const endpoint = (rollout: MachineLearningEndpointRollout = {}) =>
    applyEndpoint(rollouts, name, { config: name, rollout: { drainSeconds: 1, ...rollout } });
  const canary = { strategy: 'Canary' as const, canary: { percent: 20, bakeSeconds: 600 } };
  const linear = { strategy: 'Linear' as const, linear: { stepPercent: 25, intervalSeconds: 600 } };
  const table = (plural: string) =>
    printedTable(admin, `/apis/ml-operator.dev/v1alpha1/namespaces/${rollouts}/${plural}`);
  const withoutAge = (r: Record<string, string>) => Object.fromEntries(Object.entries(r).filter(([k]) => k !== 'AGE'));

  /**
   * The endpoint's row, once it shows `want`; then every model and config row: a template's snapshot
   * columns are empty, a snapshot's name the template it was taken from and the endpoint it belongs
   * to, and its version one the endpoint keeps.
   */
  async function expectColumns(what: string, want: Record<string, string>): Promise<MachineLearningEndpoint> {
    let last: PrintedTable | undefined;
    await waitFor(
      `the ${name} row of kubectl get mle to read ${what}`,
      90_000,
      async () => {
        last = await table('machinelearningendpoints');
        const row = last.rows.find((r) => r.NAME === name);
        return row && JSON.stringify(withoutAge(row)) === JSON.stringify({ NAME: name, ...want }) ? row : undefined;
      },
      () => `last table: ${JSON.stringify(last?.rows.find((r) => r.NAME === name))}`,
    );
    expect(last!.columns).toEqual([
      { name: 'NAME', priority: 0 },
      { name: 'STATE', priority: 0 },
      { name: 'VERSION', priority: 0 },
      { name: 'HOST', priority: 0 },
      { name: 'READY', priority: 0 },
      { name: 'ROLLOUT', priority: 0 },
      { name: 'CONFIG', priority: 1 },
      { name: 'AGE', priority: 0 },
    ]);
    const e = await getEndpoint(rollouts, name);
    const configs = await table('machinelearningendpointconfigs');
    expect(configs.columns.map((c) => c.name)).toEqual([
      'NAME',
      'SNAPSHOT-OF',
      'ENDPOINT',
      'VERSION',
      'FIRST-MODEL',
      'AGE',
    ]);
    for (const r of configs.rows) {
      if (r.NAME === name || r.NAME === 'orphan')
        expect(withoutAge(r), `${what}: template ${r.NAME}`).toEqual({
          NAME: r.NAME,
          'SNAPSHOT-OF': '',
          ENDPOINT: '',
          VERSION: '',
          'FIRST-MODEL': r.NAME === name ? name : 'nowhere',
        });
      else {
        expect(r, `${what}: config snapshot`).toMatchObject({
          NAME: `${name}-${r.VERSION}`,
          'SNAPSHOT-OF': name,
          ENDPOINT: name,
          'FIRST-MODEL': name,
        });
        expect(r.VERSION).toMatch(/^[0-9a-f]{10}$/);
      }
    }
    const models = await table('machinelearningmodels');
    expect(models.columns).toEqual([
      { name: 'NAME', priority: 0 },
      { name: 'SNAPSHOT-OF', priority: 0 },
      { name: 'ENDPOINT', priority: 0 },
      { name: 'CONFIG-VERSION', priority: 0 },
      { name: 'IMAGE', priority: 0 },
      { name: 'ARTIFACT', priority: 1 },
      { name: 'AGE', priority: 0 },
    ]);
    const live = (await user.list(resources.model, rollouts)).items as {
      metadata: { name: string };
      spec: { image: string };
    }[];
    for (const r of models.rows) {
      const image = live.find((m) => m.metadata.name === r.NAME)?.spec.image;
      expect(r.IMAGE, `${what}: IMAGE of ${r.NAME}`).toBe(image);
      if (r.NAME === name) {
        expect(r, `${what}: template`).toMatchObject({
          'SNAPSHOT-OF': '',
          ENDPOINT: '',
          'CONFIG-VERSION': '',
          ARTIFACT: 'https://models.example.com/titanic.tar.gz',
        });
      } else {
        expect(r, `${what}: model snapshot`).toMatchObject({
          'SNAPSHOT-OF': name,
          ENDPOINT: name,
          'CONFIG-VERSION': expect.stringMatching(/^[0-9a-f]{10}$/),
        });
        expect(r.NAME).toMatch(new RegExp(`^${name}-[0-9a-f]{10}$`));
      }
    }
    return e;
  }

  it('Creating, then InService: no rollout column for a first version, READY counts it coming up', async () => {
    await applyModel(rollouts, name, model('acme/columns:1', { DEMO_READY_DELAY_SECONDS: '6' }));
    await applyConfig(rollouts, name, { models: [{ model: name, cpus: '100m', memory: '64Mi' }] });
    await endpoint();
    await expectColumns('Creating', {
      STATE: 'Creating',
      VERSION: '',
      HOST: host(),
      READY: '0/1',
      ROLLOUT: '',
      CONFIG: name,
    });
    await waitForEndpoint(rollouts, name, 'InService', inService);
    const v1 = (await getEndpoint(rollouts, name)).status!.endpointConfigVersion!;
    await expectColumns('InService', {
      STATE: 'InService',
      VERSION: v1,
      HOST: host(),
      READY: '1/1',
      ROLLOUT: '',
      CONFIG: name,
    });
  });

  it('BlueGreen: the rollout while the new version deploys, nothing once it serves', async () => {
    const v1 = (await getEndpoint(rollouts, name)).status!.endpointConfigVersion!;
    await applyModel(rollouts, name, model('acme/columns:2', { DEMO_READY_DELAY_SECONDS: '6' }));
    await expectColumns('Updating (BlueGreen)', {
      STATE: 'Updating',
      VERSION: v1,
      HOST: host(),
      READY: '1/1',
      ROLLOUT: 'BlueGreen 0/1 0%',
      CONFIG: name,
    });
    const e = await waitForEndpoint(
      rollouts,
      name,
      'the new version serving',
      (x) => inService(x) && x.status!.endpointConfigVersion !== v1,
    );
    await expectColumns('InService after BlueGreen', {
      STATE: 'InService',
      VERSION: e.status!.endpointConfigVersion!,
      HOST: host(),
      READY: '1/1',
      ROLLOUT: '',
      CONFIG: name,
    });
  });

  it('Canary: the step and the share, Paused while it waits for approval, nothing once promoted', async () => {
    const v2 = (await getEndpoint(rollouts, name)).status!.endpointConfigVersion!;
    await endpoint(canary);
    await applyModel(rollouts, name, model('acme/columns:3'));
    // Both versions take traffic: READY counts both.
    await expectColumns('Canary step 1', {
      STATE: 'Updating',
      VERSION: v2,
      HOST: host(),
      READY: '2/2',
      ROLLOUT: 'Canary 1/2 20%',
      CONFIG: name,
    });
    await endpoint({ ...canary, canary: { percent: 20, bakeSeconds: 1 }, approval: { beforePromotion: true } });
    const paused = await expectColumns('Canary paused', {
      STATE: 'Updating',
      VERSION: v2,
      HOST: host(),
      READY: '2/2',
      ROLLOUT: 'Canary 1/2 20% Paused',
      CONFIG: name,
    });
    const v3 = paused.status!.rollout!.version!;
    await endpoint({
      ...canary,
      canary: { percent: 20, bakeSeconds: 1 },
      approval: { beforePromotion: true },
      approvedVersion: v3,
    });
    await expectColumns('promoted', {
      STATE: 'InService',
      VERSION: v3,
      HOST: host(),
      READY: '1/1',
      ROLLOUT: '',
      CONFIG: name,
    });
  });

  it('an aborted canary says so; a dry run says Planned; Linear its step', async () => {
    const v3 = (await getEndpoint(rollouts, name)).status!.endpointConfigVersion!;
    await endpoint(canary);
    await applyModel(rollouts, name, model('acme/columns:4'));
    const step = await expectColumns('Canary step 1 again', {
      STATE: 'Updating',
      VERSION: v3,
      HOST: host(),
      READY: '2/2',
      ROLLOUT: 'Canary 1/2 20%',
      CONFIG: name,
    });
    await endpoint({ ...canary, abortVersion: step.status!.rollout!.version });
    await expectColumns('aborted', {
      STATE: 'InService',
      VERSION: v3,
      HOST: host(),
      READY: '1/1',
      ROLLOUT: 'Canary Aborted',
      CONFIG: name,
    });
    await endpoint({ ...canary, dryRun: true });
    await applyModel(rollouts, name, model('acme/columns:5'));
    await expectColumns('dry run', {
      STATE: 'InService',
      VERSION: v3,
      HOST: host(),
      READY: '1/1',
      ROLLOUT: 'Canary Planned',
      CONFIG: name,
    });
    await endpoint(linear);
    await expectColumns('Linear step 1', {
      STATE: 'Updating',
      VERSION: v3,
      HOST: host(),
      READY: '2/2',
      ROLLOUT: 'Linear 1/4 25%',
      CONFIG: name,
    });
  });

  it('a version that never becomes Available: the rollout Failed, the serving one InService', async () => {
    const v3 = (await getEndpoint(rollouts, name)).status!.endpointConfigVersion!;
    await endpoint({ ...linear, progressDeadlineSeconds: 10 });
    // A newer version replaces the one at 25%, which leaves the route.
    await applyModel(rollouts, name, model('acme/columns:6', { DEMO_READY: 'false' }));
    await expectColumns('deadline exceeded', {
      STATE: 'InService',
      VERSION: v3,
      HOST: host(),
      READY: '1/1',
      ROLLOUT: 'Linear Failed',
      CONFIG: name,
    });
  });
});
