import { describe, expect, it } from 'vitest';
import type { ComparisonFigures } from './statistics.ts';
import { criteriaError, verdict, wilsonUpper, type ShadowTestCriteria } from './verdict.ts';

const hour = 3_600_000;
const criteria: ShadowTestCriteria = {
  durationMs: 24 * hour,
  minCompared: 100,
  minAgreement: 0.97,
  maxErrorRateDelta: 0.01,
  maxLatencyP99Ratio: 1.2,
};

/** Figures of `requests` mirrored requests, one prediction each. */
function figures({
  requests = 1000,
  agreeing = 990,
  servingErrors = 0,
  shadowErrors = 0,
  servingP99 = 10,
  shadowP99 = 11,
} = {}): ComparisonFigures {
  const compared = requests - Math.max(servingErrors, shadowErrors);
  return {
    requests,
    compared,
    predictions: compared,
    agreeing,
    agreement: compared > 0 ? agreeing / compared : undefined,
    shadowUnreadable: 0,
    servingUnreadable: 0,
    serving: {
      errors: servingErrors,
      errorRate: requests ? servingErrors / requests : undefined,
      latencyP50Ms: 5,
      latencyP99Ms: requests ? servingP99 : undefined,
    },
    shadow: {
      errors: shadowErrors,
      errorRate: requests ? shadowErrors / requests : undefined,
      latencyP50Ms: 6,
      latencyP99Ms: requests ? shadowP99 : undefined,
    },
  };
}

describe('verdict of a shadow test', () => {
  it('is Pending while the duration runs, with the progress and the agreement so far', () => {
    const v = verdict(criteria, figures({ requests: 40, agreeing: 39 }), 0, 2 * hour);
    expect(v).toMatchObject({ phase: 'Pending', reason: 'Observing', failed: [] });
    expect(v.message).toBe('observing: 40 requests compared (at least 100 needed), 2h of 24h; agreement so far 0.975');
  });

  it('says no prediction was compared yet before the first pair', () => {
    expect(verdict(criteria, figures({ requests: 0, agreeing: 0 }), 0, 60_000).message).toContain(
      'no prediction compared yet',
    );
  });

  it('passes at the end of the duration when every criterion holds, with the numbers', () => {
    const v = verdict(
      criteria,
      figures({ agreeing: 980, servingErrors: 1, shadowErrors: 5, shadowP99: 12 }),
      0,
      24 * hour,
    );
    expect(v.phase).toBe('Passed');
    expect(v.measured).toMatchObject({
      compared: 995,
      errorRateDelta: 0.004,
      latencyP99Ratio: 1.2,
      elapsedMs: 24 * hour,
    });
    expect(v.message).toBe(
      'every criterion holds after 995 requests compared (at least 100 needed), 24h of 24h: agreement 0.9849 >= 0.97, errorRateDelta 0.004 <= 0.01, latencyP99Ratio 1.2 <= 1.2',
    );
  });

  it('does not pass before the end, however good the figures', () => {
    expect(verdict(criteria, figures({ requests: 100_000, agreeing: 100_000 }), 0, 24 * hour - 1).phase).toBe(
      'Pending',
    );
  });

  it.each<[string, Parameters<typeof figures>[0], string]>([
    ['agreement under its bound', { agreeing: 960 }, 'agreement 0.96 (960/1000) < 0.97'],
    [
      'errorRateDelta over its bound',
      { servingErrors: 2, shadowErrors: 20, agreeing: 975 },
      'errorRateDelta 0.018 (shadow 20/1000 - serving 2/1000) > 0.01',
    ],
    [
      'latencyP99Ratio over its bound',
      { shadowP99: 12.5 },
      'latencyP99Ratio 1.25 (shadow p99 12.5 ms / serving p99 10 ms) > 1.2',
    ],
  ])('fails at the end with %s, naming the measured figure and the bound', (_, f, failure) => {
    const v = verdict(criteria, figures(f), 0, 24 * hour);
    expect(v).toMatchObject({ phase: 'Failed', reason: 'CriteriaNotMet', failed: [failure] });
    expect(v.message).toBe(
      `${failure} after ${v.measured.compared} requests compared (at least 100 needed), 24h of 24h`,
    );
  });

  it('lists every criterion that does not hold', () => {
    const v = verdict(criteria, figures({ agreeing: 930, shadowErrors: 30, shadowP99: 20 }), 0, 25 * hour);
    expect(v.failed).toHaveLength(3);
  });

  it('fails at the end with too few requests compared', () => {
    const v = verdict(criteria, figures({ requests: 99, agreeing: 99 }), 0, 24 * hour);
    expect(v).toMatchObject({ phase: 'Failed', reason: 'TooFewCompared', failed: ['compared 99 < 100'] });
    expect(v.message).toBe(
      'the test ended with too few requests compared: 99 requests compared (at least 100 needed), 24h of 24h',
    );
  });

  it('fails early when the agreement is under its bound beyond doubt: the bad iris model (49/150) after the minimum', () => {
    const bad: ShadowTestCriteria = { durationMs: 7 * 24 * hour, minCompared: 150, minAgreement: 0.9 };
    const v = verdict(bad, figures({ requests: 150, agreeing: 49 }), 0, 10 * 60_000);
    expect(v).toMatchObject({
      phase: 'Failed',
      reason: 'AgreementTooLow',
      failed: ['agreement 0.3267 (49/150) < 0.9'],
    });
    expect(v.message).toBe(
      'agreement 0.3267 (49/150) < 0.9, beyond doubt (99.9%) after 150 requests compared (at least 150 needed), 10m of 7d',
    );
  });

  it('does not fail early before the minimum of compared requests, nor on an agreement merely under the bound', () => {
    const c: ShadowTestCriteria = { durationMs: 24 * hour, minCompared: 100, minAgreement: 0.97 };
    expect(verdict(c, figures({ requests: 99, agreeing: 0 }), 0, hour).phase).toBe('Pending');
    // 0.96 over 1000: under 0.97, but within the 99.9% interval of a model that agrees 97% of the time.
    expect(verdict(c, figures({ requests: 1000, agreeing: 960 }), 0, hour).phase).toBe('Pending');
  });

  it('fails an unmeasurable criterion at the end rather than passing it', () => {
    const c: ShadowTestCriteria = { durationMs: hour, minCompared: 1, maxLatencyP99Ratio: 1.2 };
    const f = figures({ requests: 10, agreeing: 10 });
    const v = verdict(c, { ...f, serving: { ...f.serving, latencyP99Ms: 0 } }, 0, hour);
    expect(v).toMatchObject({ phase: 'Failed', failed: ['latencyP99Ratio unmeasured > 1.2'] });
  });

  it('passes with no bound but the duration and the minimum', () => {
    expect(
      verdict({ durationMs: hour, minCompared: 10 }, figures({ requests: 10, agreeing: 0 }), 0, hour),
    ).toMatchObject({ phase: 'Passed', message: expect.stringContaining('no bound given') as string });
  });
});

describe('wilsonUpper', () => {
  it.each([
    [0, 0, 1],
    [150, 150, 1],
    [49, 150, 0.4606],
    [960, 1000, 0.9759],
  ])('%i of %i: at most %f', (k, n, upper) => {
    expect(wilsonUpper(k, n)).toBeCloseTo(upper, 3);
  });
});

describe('criteriaError', () => {
  it.each<[Partial<ShadowTestCriteria>, string | undefined]>([
    [{}, undefined],
    [{ durationMs: 0 }, 'the duration must be positive'],
    [{ minCompared: 0 }, 'minCompared must be an integer >= 1'],
    [{ minCompared: 1.5 }, 'minCompared must be an integer >= 1'],
    [{ minAgreement: 1.2 }, 'the agreement bound must be within [0, 1]'],
    [{ maxErrorRateDelta: 2 }, 'the errorRateDelta bound must be within [-1, 1]'],
    [{ maxLatencyP99Ratio: 0 }, 'the latencyP99Ratio bound must be positive'],
  ])('%j: %s', (change, error) => {
    const e = criteriaError({ ...criteria, ...change });
    if (error === undefined) expect(e).toBeUndefined();
    else expect(e).toContain(error);
  });
});
