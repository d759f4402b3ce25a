// Shadow tests (shadow.test), pure: each tested shadow of the serving version is judged on the
// figures its serving pods' agents report (compare/verdict.ts), and its record is carried from one
// status to the next. A test belongs to a subject, the serving instance and the shadow's: when
// either changes, a new test begins; changing only the criteria or the actions (a new config
// version over the same instances) keeps the test and re-judges it. A verdict, once reached,
// stands for its subject. Its actions: Stop (the shadow is no longer mirrored to and runs no pod)
// and Promote (a version derived from the tested one, with the shadow as its serving variant,
// rolled out by the endpoint's strategy; the user's config is never rewritten).
import type {
  MachineLearningEndpointConfigVariant,
  MachineLearningEndpointStatus,
  ShadowTest,
  ShadowTestStatus,
} from '../api/generated.ts';
import { figuresOf, type ComparisonFigures } from '../compare/statistics.ts';
import { verdict, type ShadowTestCriteria } from '../compare/verdict.ts';
import { contentVersion, versionedName } from '../desired/names.ts';
import { isShadow, type VariantPlan, type VersionPlan } from '../desired/plan.ts';
import type { ConditionInput } from '../desired/status.ts';

export const shadowTestDefaults = {
  durationSeconds: 7 * 86_400,
  minCompared: 100,
  onPass: 'Report',
  onFail: 'Stop',
} as const;

/** A tested shadow of a version: a shadow variant with a test. */
const testOf = (v: VariantPlan): ShadowTest | undefined => (isShadow(v) ? v.variant.shadow?.test : undefined);

export const onPassOf = (t: ShadowTest) => t.onPass ?? shadowTestDefaults.onPass;
export const onFailOf = (t: ShadowTest) => t.onFail ?? shadowTestDefaults.onFail;

/** What a test judges: the version's serving instances and the shadow's (`serving>shadow`). */
export function testSubject(plan: VersionPlan, shadow: VariantPlan): string {
  const serving = plan.variants
    .filter((v) => !isShadow(v))
    .map((v) => v.instance)
    .sort()
    .join(',');
  return `${serving}>${shadow.instance}`;
}

export function criteriaOf(t: ShadowTest): ShadowTestCriteria {
  const c = t.criteria ?? {};
  return {
    durationMs: (t.durationSeconds ?? shadowTestDefaults.durationSeconds) * 1000,
    minCompared: t.minCompared ?? shadowTestDefaults.minCompared,
    ...(c.agreement !== undefined ? { minAgreement: c.agreement } : {}),
    ...(c.errorRateDelta !== undefined ? { maxErrorRateDelta: c.errorRateDelta } : {}),
    ...(c.latencyP99Ratio !== undefined ? { maxLatencyP99Ratio: c.latencyP99Ratio } : {}),
  };
}

/** The record of a shadow's test in the last status, if it is of this subject. */
export function recorded(
  status: MachineLearningEndpointStatus | undefined,
  shadow: VariantPlan,
  subject: string,
): ShadowTestStatus | undefined {
  const test = status?.shadows?.find((s) => s.service === shadow.instance)?.test;
  return test?.subject === subject ? test : undefined;
}

const round = (x: number | undefined, digits: number) =>
  x === undefined || !Number.isFinite(x) ? undefined : Number(x.toFixed(digits));

export interface JudgeInput {
  serving: VersionPlan | undefined;
  previous: MachineLearningEndpointStatus | undefined;
  /** Whether the serving version's agents mirror to a shadow now (by its instance). */
  mirrored: (instance: string) => boolean;
  /**
   * The figures since the start that the serving pods' agents report, by the shadow's instance;
   * undefined when they are not known this round (not every pod answered): no verdict then.
   */
  figures?: ReadonlyMap<string, ComparisonFigures>;
  now: Date;
}

/** The record of each tested shadow of the serving version (by its instance). */
export function judgeShadowTests(input: JudgeInput): Map<string, ShadowTestStatus> {
  const { serving, previous, now } = input;
  const out = new Map<string, ShadowTestStatus>();
  for (const shadow of serving?.variants ?? []) {
    const test = testOf(shadow);
    if (!test) continue;
    const subject = testSubject(serving!, shadow);
    const before = recorded(previous, shadow, subject);
    // A verdict stands; the action follows the config (changing onFail to Report brings the shadow back).
    if (before && before.phase !== 'Pending') {
      out.set(shadow.instance, { ...before, action: before.phase === 'Passed' ? onPassOf(test) : onFailOf(test) });
      continue;
    }
    const startedAt = before?.startedAt ?? (input.mirrored(shadow.instance) ? now.toISOString() : undefined);
    if (!startedAt) {
      out.set(shadow.instance, {
        phase: 'Pending',
        reason: 'Waiting',
        message: 'waiting for the shadow to be ready and mirrored to: the test begins then',
        subject,
      });
      continue;
    }
    // A test whose time is up is judged even when no agent reports on its shadow (one that stopped
    // being ready, say; every pod answered): on nothing compared, it fails as too few.
    const over = now.getTime() - Date.parse(startedAt) >= criteriaOf(test).durationMs;
    const figures = input.figures?.get(shadow.instance) ?? (over && input.figures ? figuresOf([]) : undefined);
    if (!figures) {
      out.set(
        shadow.instance,
        before?.startedAt
          ? before
          : {
              phase: 'Pending',
              reason: 'Observing',
              message: 'observing: no agent has reported a comparison yet',
              subject,
              startedAt,
            },
      );
      continue;
    }
    const v = verdict(criteriaOf(test), figures, Date.parse(startedAt), now.getTime());
    const m = v.measured;
    out.set(shadow.instance, {
      phase: v.phase,
      reason: v.reason,
      message: v.message,
      subject,
      startedAt,
      ...(v.phase !== 'Pending'
        ? { decidedAt: now.toISOString(), action: v.phase === 'Passed' ? onPassOf(test) : onFailOf(test) }
        : {}),
      compared: m.compared,
      ...(m.agreement !== undefined ? { agreement: round(m.agreement, 6) } : {}),
      ...(m.errorRateDelta !== undefined ? { errorRateDelta: round(m.errorRateDelta, 6) } : {}),
      ...(m.latencyP99Ratio !== undefined ? { latencyP99Ratio: round(m.latencyP99Ratio, 4) } : {}),
    });
  }
  return out;
}

/** The ShadowTested condition over the tests' records: False while one has failed, True once all passed. */
export function shadowTestedCondition(
  serving: VersionPlan | undefined,
  tests: ReadonlyMap<string, ShadowTestStatus>,
): ConditionInput | undefined {
  if (!serving || tests.size === 0) return undefined;
  const named = serving.variants.filter((v) => tests.has(v.instance)).map((v) => ({ v, t: tests.get(v.instance)! }));
  const describe = ({ v, t }: (typeof named)[number]) => {
    const what =
      t.action === 'Stop'
        ? '; stopped: no longer mirrored to, scaled to 0'
        : t.action === 'Promote'
          ? '; promoted: the version with it serving rolls out through the strategy (unless spec.serveVersion pins another)'
          : '';
    return `shadow ${v.variant.model} (${v.instance}): ${t.message}${what}`;
  };
  const failed = named.filter((n) => n.t.phase === 'Failed');
  if (failed.length > 0)
    return {
      type: 'ShadowTested',
      status: 'False',
      reason: failed[0].t.reason,
      message: failed.map(describe).join('; '),
    };
  const pending = named.filter((n) => n.t.phase === 'Pending');
  if (pending.length > 0)
    return {
      type: 'ShadowTested',
      status: 'Unknown',
      reason: pending[0].t.reason,
      message: named.map(describe).join('; '),
    };
  return { type: 'ShadowTested', status: 'True', reason: 'Passed', message: named.map(describe).join('; ') };
}

/** The shadows of a version whose test failed with onFail: Stop, by the last status (their instances). */
export function stoppedShadows(
  plan: VersionPlan | undefined,
  status: MachineLearningEndpointStatus | undefined,
): Set<string> {
  const out = new Set<string>();
  for (const shadow of plan?.variants ?? []) {
    const test = testOf(shadow);
    if (!test || onFailOf(test) !== 'Stop') continue;
    if (recorded(status, shadow, testSubject(plan!, shadow))?.phase === 'Failed') out.add(shadow.instance);
  }
  return out;
}

/** The shadow of a version whose test promotes it (onPass: Promote), if it has one. */
export const promotingShadow = (plan: VersionPlan): VariantPlan | undefined =>
  plan.variants.find((v) => {
    const t = testOf(v);
    return t !== undefined && onPassOf(t) === 'Promote';
  });

/** The mark a promoted version's config snapshot carries (its `promoted` label): of the subject it passed on. */
export const promotionMark = (plan: VersionPlan, shadow: VariantPlan): string =>
  contentVersion({ promoted: testSubject(plan, shadow) });

/** The record of the test of the version's promoting shadow in the last status, if any. */
export function promotionRecord(
  plan: VersionPlan,
  status: MachineLearningEndpointStatus | undefined,
): ShadowTestStatus | undefined {
  const shadow = promotingShadow(plan);
  return shadow ? recorded(status, shadow, testSubject(plan, shadow)) : undefined;
}

/**
 * The promoted variant's replicas: never fewer than the variant it replaces could run, since it
 * takes all of that variant's traffic (a shadow is often sized for a mirror of a share of it).
 * Neither count is part of the model version, so the shadow's pods are scaled in place.
 */
function withCapacityOf(
  v: MachineLearningEndpointConfigVariant,
  replaced: MachineLearningEndpointConfigVariant,
): MachineLearningEndpointConfigVariant {
  const least = replaced.autoscaling?.minInstances ?? replaced.instances ?? 1;
  const most = replaced.autoscaling?.maxInstances ?? replaced.instances ?? 1;
  if (v.autoscaling)
    return {
      ...v,
      autoscaling: {
        ...v.autoscaling,
        minInstances: Math.max(v.autoscaling.minInstances, least),
        maxInstances: Math.max(v.autoscaling.maxInstances, most),
      },
    };
  return { ...v, instances: Math.max(v.instances ?? 1, most) };
}

/**
 * The version a passed test promotes to: the tested version with the shadow as its one serving
 * variant, with at least the replicas of the serving variant it replaces, which goes (other shadows
 * stay). Every instance is the tested version's own, so the shadow's running pods take the traffic
 * and no new model version is made. Deterministic: the same tested version, the same promoted one.
 */
export function promotedPlan(endpoint: string, plan: VersionPlan, shadow: VariantPlan): VersionPlan {
  const { shadow: _, ...rest } = shadow.variant;
  const replaced = plan.variants.find((v) => !isShadow(v));
  const variant: MachineLearningEndpointConfigVariant = replaced ? withCapacityOf(rest, replaced.variant) : rest;
  const promoted: VariantPlan = { ...shadow, variant };
  const others = plan.variants.filter((v) => isShadow(v) && v.instance !== shadow.instance);
  const variants = [promoted, ...others];
  const spec = { ...plan.spec, models: variants.map((v) => v.variant) };
  const version = contentVersion({
    endpoint,
    config: spec,
    models: variants.map((v) => [v.variant.model, v.version]),
  });
  return {
    config: plan.config,
    spec,
    version,
    instance: versionedName(plan.config, version),
    variants,
    promoted: promotionMark(plan, shadow),
  };
}
