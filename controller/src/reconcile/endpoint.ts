// Reconciles one endpoint, whatever event woke it: read the world from the caches (resolve.ts), ask
// what the controller wants (desiredState, pure), apply it (apply.ts), record the status
// (status-writer.ts) and collect what is no longer kept (garbage.ts). The order of the writes is
// what keeps traffic safe: workloads first, then the route (which only ever names Available
// workloads), then the status (which records what drains), and removals last.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { autoscalerResource } from '../desired/autoscaling.ts';
import * as desired from '../desired/objects.ts';
import type { VersionPlan } from '../desired/plan.ts';
import type { ConditionInput } from '../desired/status.ts';
import { resources, type Resource } from '../kube/resources.ts';
import type { Logger } from '../log.ts';
import type { OperatorConfig } from '../options/config.ts';
import { defaults, type RolloutDecision } from '../rollout/decide.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import { routingProvider } from '../routing/providers.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { PrometheusClient } from '../probes/prometheus.ts';
import type { ReconcileResult } from '../runtime/queue.ts';
import { Applier } from './apply.ts';
import { ownedBy, type Caches, type ClusterClient } from './caches.ts';
import {
  agentInstances,
  captureSettings,
  desiredState,
  resolveRollout,
  statusFor,
  type DesiredStateInputs,
  type RolloutReads,
} from './desired-state.ts';
import { askAgents, dataCapturedCondition, dataCapturePollMs, DataCaptureProbe } from '../probes/data-capture.ts';
import type { ComparisonFigures } from '../compare/statistics.ts';
import { comparisonsOf, testFiguresOf, type ShadowComparison } from '../probes/shadows.ts';
import { agentAdminPortName, agentContainerName } from '../desired/agent.ts';
import { labels } from '../desired/labels.ts';
import { collectGarbage } from './garbage.ts';
import { nextCheckInMs } from '../rollout/analysis.ts';
import { SharedLists } from '../probes/capacity.ts';
import { runGates } from './gates.ts';
import { Deletion } from './deletion.ts';
import { HostPathStorage } from './hostpath.ts';
import { logDecision, recordOutcome } from './outcome.ts';
import { PodDiagnostics } from './pods.ts';
import { deploymentAvailable, readiness, Resolver } from './resolve.ts';
import { StatusWriter } from './status-writer.ts';

export interface ReconcilerDeps {
  client: ClusterClient;
  caches: Caches;
  config: OperatorConfig;
  events: EventRecorder;
  logger: Logger;
  metrics?: Metrics;
  /** Where the metric gates are measured (undefined: no Prometheus configured). */
  prometheus?: PrometheusClient;
  /** Optional APIs the cluster does not serve: the autoscalers' (KEDA), the provider's auxiliary objects. */
  missing?: { autoscalers: boolean; auxiliary: boolean };
  now?: () => Date;
}

/** How soon an endpoint blocked by someone else's object looks again. */
const conflictRecheckMs = 15_000;

/**
 * Writes one reconcile sends at once: enough to overlap their round trips, few enough that a burst
 * of reconciles (concurrency x this) stays well inside the API server's in-flight limits.
 */
const writesAtOnce = 8;

/** Runs `work` over the items, at most `limit` at once. */
async function eachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await work(items[next++]);
    }),
  );
}

/** What an endpoint's agents said last: of their sink, and of the shadows they mirror to (by Service). */
interface AgentFacts {
  captured?: ConditionInput;
  comparisons?: Map<string, ShadowComparison>;
  /** Their exact figures since the start, which shadow tests are judged on (none when a pod did not answer). */
  figures?: Map<string, ComparisonFigures>;
}

export class EndpointReconciler {
  private readonly deps: ReconcilerDeps;
  private readonly now: () => Date;
  private readonly provider: RoutingProvider;
  private readonly autoscalerResource: Resource;
  private readonly sharedLists: SharedLists;
  private readonly resolver: Resolver;
  private readonly applier: Applier;
  private readonly status: StatusWriter;
  private readonly hostPath: HostPathStorage;
  private readonly deletion: Deletion;
  private readonly pods: PodDiagnostics;
  private readonly dataCapture = new DataCaptureProbe<AgentFacts>();

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
    this.now = deps.now ?? (() => new Date());
    this.provider = routingProvider(deps.config);
    this.autoscalerResource = autoscalerResource(deps.config);
    this.sharedLists = new SharedLists(deps.client);
    const { client, caches, config, events, logger, missing } = deps;
    this.resolver = new Resolver({ caches, config, provider: this.provider, missing });
    this.applier = new Applier({
      client,
      caches,
      provider: this.provider,
      autoscalerResource: this.autoscalerResource,
    });
    this.status = new StatusWriter({ client, caches, events, now: this.now });
    this.hostPath = new HostPathStorage({ client, caches, config, logger, applier: this.applier });
    this.deletion = new Deletion({
      client,
      config,
      applier: this.applier,
      status: this.status,
      hostPath: this.hostPath,
      now: this.now,
    });
    this.pods = new PodDiagnostics({ client, caches, logger });
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = key.split('/');
    const { caches } = this.deps;
    const cached = caches.endpoints.get(namespace, name);
    if (!cached) {
      this.status.forget(key);
      this.dataCapture.forget(key);
      return;
    }
    const endpoint = this.status.view(key, cached);
    if (endpoint.metadata.deletionTimestamp) return this.deletion.finalize(endpoint);
    if (!(await this.deletion.hold(endpoint))) return;

    // Read.
    const now = this.now();
    const read = this.read(endpoint, now);
    const gates = await runGates(
      { ...this.deps, provider: this.provider, sharedLists: this.sharedLists },
      endpoint,
      resolveRollout(read).rollout,
    );
    const inputs: DesiredStateInputs = { ...read, rollout: { ...read.rollout, ...gates } };

    // What the controller wants, then everything that should run, then the route: it only ever
    // names workloads that are Available.
    let state = desiredState(inputs);
    const { workloads } = state;
    const conflicts: string[] = [];
    await eachLimited(workloads, writesAtOnce, async (d) => {
      if (!(await this.applier.ensure(endpoint, d))) conflicts.push(this.applier.describeConflict(d));
    });
    await this.status.writeSnapshotStatuses(
      key,
      namespace,
      state.decision.deploy.map((d) => d.plan),
    );
    if (state.removeRouting) await this.applier.removeRouting(inputs.ctx.endpoint);
    for (const d of state.routing) {
      if (await this.applier.ensure(endpoint, d)) continue;
      conflicts.push(this.applier.describeConflict(d));
      // The route cannot be written: nothing switches, and the status must not say otherwise.
      const routeBlocked: ConditionInput = {
        type: 'Ready',
        status: 'False',
        reason: 'OwnershipConflict',
        message: conflicts.join('; '),
      };
      state = desiredState({ ...inputs, rollout: { ...inputs.rollout, routeBlocked } });
      break;
    }
    const { decision } = state;
    recordOutcome(this.deps, endpoint, decision);

    // The status, with what only the writes and the pods could tell.
    const deployed = [...new Set(decision.deploy.flatMap((d) => d.plan.variants.map((v) => v.instance)))];
    const pods = await this.pods.problems(namespace, deployed, now);
    const owned: ConditionInput[] = conflicts.length
      ? [{ type: 'ResourcesOwned', status: 'False', reason: 'OwnershipConflict', message: conflicts.join('; ') }]
      : [];
    const agents = await this.askAgents(key, inputs, state.resolved.target, decision, now);
    const captured = agents?.captured;
    const statusDeferredMs = await this.status.write(
      endpoint,
      statusFor(
        inputs,
        decision,
        [...owned, ...pods.conditions, ...(captured ? [captured] : [])],
        agents?.comparisons,
        agents?.figures,
      ),
    );
    logDecision(this.deps.logger, endpoint, inputs, state.resolved.target?.version, decision, statusDeferredMs);

    // Removals come last, once the status records what drains: a restart in between keeps it running.
    const wantedNames = (r: Resource) =>
      new Set(workloads.filter((d) => d.resource === r).map((d) => d.object.metadata.name));
    await collectGarbage(
      {
        ...this.deps,
        provider: this.provider,
        autoscalerResource: this.autoscalerResource,
        status: this.status,
        hostPath: this.hostPath,
      },
      endpoint,
      {
        keepInstances: decision.keepInstances,
        keepVersions: decision.keepVersions,
        keepAutoscalers: wantedNames(this.autoscalerResource),
        keepBudgets: wantedNames(resources.podDisruptionBudget),
      },
    );

    // Objects of someone else's are not watched: look again in a while, in case they went away. And
    // the metric gates of a bake, and the data plane's loading of new objects, come due on their own clock.
    const rollout = decision.outcome.rollout;
    const checkDue =
      rollout?.phase === 'Progressing' && rollout.weight
        ? nextCheckInMs(endpoint.spec.rollout?.analysis?.checks ?? [], rollout.analysis, rollout.stepStartedAt, now)
        : undefined;
    const primaries = decision.deploy.flatMap((d) =>
      d.plan.variants.filter((v) => !v.variant.shadow).map((v) => v.instance),
    );
    const loadDue = this.resolver.auxiliaryWaitMs(namespace, primaries, now);
    const due = [
      decision.requeueAfterMs,
      state.resolved.recheckMs,
      conflicts.length ? conflictRecheckMs : undefined,
      checkDue,
      loadDue,
      statusDeferredMs,
      pods.recheckMs,
      agents ? dataCapturePollMs : undefined,
    ].filter((n): n is number => n !== undefined);
    return due.length ? { requeueAfterMs: Math.min(...due) } : undefined;
  }

  /**
   * While the endpoint runs model agents, what they say, asked at most every 10 s: of their sink (the
   * DataCaptured condition, with a dataCapture block) and of the shadows they mirror to.
   */
  private async askAgents(
    key: string,
    inputs: DesiredStateInputs,
    target: VersionPlan | undefined,
    decision: RolloutDecision,
    now: Date,
  ): Promise<AgentFacts | undefined> {
    const instances = agentInstances(decision);
    const capture = captureSettings(target, decision);
    // The shadows mirrored to now, and those under test that are not (not ready, or stopped): the
    // agents keep a shadow listed at 0% with its figures, which its test is judged on.
    const mirrored = (decision.agentMirrors ?? []).map((m) => ({ name: m.variant, service: m.service }));
    for (const v of decision.outcome.serving?.variants ?? [])
      if (v.variant.shadow?.test && !mirrored.some((m) => m.service === v.instance))
        mirrored.push({ name: v.variant.model, service: v.instance });
    if (!instances.length || (!capture && !mirrored.length)) {
      this.dataCapture.forget(key);
      return undefined;
    }
    const enabled = capture?.enabled ?? true;
    const namespace = inputs.ctx.endpoint.metadata.namespace!;
    return this.dataCapture.condition(key, JSON.stringify([capture, instances, mirrored]), now, async () => {
      let answers: Awaited<ReturnType<typeof askAgents>>;
      try {
        answers =
          capture && !enabled && !mirrored.length
            ? []
            : await askAgents(
                this.deps.client,
                namespace,
                instances,
                agentContainerName,
                agentAdminPortName,
                labels.modelInstance,
              );
      } catch (err) {
        return {
          // The comparisons stay as they were: the pods could not be listed, not the agents asked.
          comparisons: this.dataCapture.previous(key)?.comparisons,
          figures: this.dataCapture.previous(key)?.figures,
          captured: capture && {
            type: 'DataCaptured',
            status: 'Unknown',
            reason: 'AgentsNotListed',
            message: `the model agents' pods could not be listed: ${(err as Error).message}`,
          },
        };
      }
      return {
        captured: capture && dataCapturedCondition(capture.destination, enabled, enabled ? answers : []),
        comparisons: comparisonsOf(answers, mirrored),
        // A verdict needs every serving pod's tallies: with one pod unreachable, none this round.
        figures: answers.some((a) => a.unreachable) ? undefined : testFiguresOf(answers, mirrored),
      };
    });
  }

  /** Everything the decision reads, from the caches: the templates, kept versions, the live route and workloads. */
  private read(endpoint: MachineLearningEndpoint, now: Date): DesiredStateInputs {
    const { caches, config } = this.deps;
    const namespace = endpoint.metadata.namespace!;
    const ctx: desired.EndpointContext = { endpoint, config };
    const deadlineSeconds = endpoint.spec.rollout?.progressDeadlineSeconds ?? defaults.progressDeadlineSeconds;
    const resolver = this.resolver;
    const liveRoute = caches.routes.get(namespace, this.provider.routeName(ctx));
    const hostBlocked = resolver.hostConflict(ctx);
    const rollout: RolloutReads = {
      generation: endpoint.metadata.generation ?? 0,
      spec: endpoint.spec,
      status: endpoint.status ?? {},
      route: liveRoute ? resolver.readRoute(ctx, liveRoute) : undefined,
      routeBlocked: hostBlocked,
      workload: (v, replicas) => {
        const live = caches.deployments.get(namespace, v.instance);
        // The route names the Service: it must be this endpoint's too, not a namesake of someone else's.
        const service = caches.services.get(namespace, v.instance);
        const available =
          deploymentAvailable(live, desired.deployment(ctx, v, deadlineSeconds, replicas)) &&
          !!service &&
          ownedBy(endpoint, service) &&
          ownedBy(endpoint, live!) &&
          (v.variant.shadow !== undefined || resolver.auxiliaryLoaded(namespace, v.instance, now));
        return { ready: readiness(live), available };
      },
      now,
    };
    const autoscaled = (instance: string) =>
      (caches.deployments.get(namespace, instance)?.spec as { replicas?: number } | undefined)?.replicas;
    return {
      ctx,
      provider: this.provider,
      templates: resolver.templates(endpoint),
      rollout,
      deadlineSeconds,
      live: {
        startReplicas: (v, serving) => resolver.startReplicas(namespace, v, serving),
        hostNodes: (instance) => this.hostPath.hostNodes(namespace, instance),
        loaded: (service) => resolver.auxiliaryLoaded(namespace, service, now),
        auxiliaryMissing: this.deps.missing?.auxiliary ?? false,
      },
      routed: liveRoute !== undefined,
      hostBlocked: hostBlocked !== undefined,
      observed: {
        readyOf: (instance) => readiness(caches.deployments.get(namespace, instance)),
        autoscaledReplicas: autoscaled,
        routeStatus: liveRoute ? this.provider.observe(ctx, liveRoute).status : undefined,
        mirroringUnavailable:
          this.provider.dataPlane.mirroringUnavailable ??
          (this.deps.missing?.auxiliary ? this.provider.kinds.auxiliary?.missing : undefined),
      },
    };
  }
}
