import { describe, expect, it } from 'vitest';
import { compareAnswers, comparer, type CompareSpec, type Comparer, type PairOutcome } from './compare.ts';
import type { Answer } from './prediction.ts';

const ok = (body: unknown, latencyMs = 5): Answer => ({
  status: 200,
  contentType: 'application/json',
  body: JSON.stringify(body),
  latencyMs,
});
const make = (spec: CompareSpec = {}): Comparer => {
  const c = comparer(spec);
  if (!c.ok) throw new Error(c.error);
  return c.comparer;
};
const agreement = (o: PairOutcome) => [o.agreeing, o.predictions];

describe('comparer: a spec checked once', () => {
  it('defaults to labels over the whole answer with no tolerance', () => {
    expect(make().spec).toEqual({ path: '$', kind: 'labels', absoluteTolerance: 0, relativeTolerance: 0 });
  });

  it.each<[CompareSpec, string]>([
    [{ path: 'predictions' }, 'does not start with $'],
    [{ absoluteTolerance: -0.1 }, 'absoluteTolerance is -0.1'],
    [{ relativeTolerance: Number.NaN }, 'relativeTolerance is NaN'],
  ])('refuses %j', (spec, error) => {
    const c = comparer(spec);
    expect(c.ok).toBe(false);
    if (!c.ok) expect(c.error).toContain(error);
  });
});

describe('compareAnswers: labels', () => {
  const labels = make({ path: '$.predictions' });

  it.each<[string, unknown, unknown, [number, number]]>([
    ['equal scalars agree', 1, 1, [1, 1]],
    ['different scalars disagree', 1, 2, [0, 1]],
    ['a number and its string disagree', 1, '1', [0, 1]],
    ['arrays are compared element by element', [0, 1, 2, 2], [0, 1, 1, 2], [3, 4]],
    ['arrays of different lengths: every prediction disagrees', [0, 1, 2], [0, 1], [0, 3]],
    ['an array against a scalar disagrees', [1], 1, [0, 1]],
    ['two empty arrays: nothing to compare', [], [], [0, 0]],
    ['objects agree whatever the order of their members', [{ a: 1, b: [2] }], [{ b: [2], a: 1 }], [1, 1]],
    ['objects with another member disagree', [{ a: 1 }], [{ a: 1, b: 2 }], [0, 1]],
    ['null agrees with null only', [null, null], [null, 0], [1, 2]],
  ])('%s', (_, serving, shadow, expected) => {
    const o = compareAnswers(
      labels,
      ok({ predictions: serving, model: 'iris/1.0.0' }),
      ok({ predictions: shadow, model: 'iris/2.0.0' }),
    );
    expect(o.compared).toBe(true);
    expect(agreement(o)).toEqual(expected);
    expect(o.unreadable).toBeUndefined();
  });

  it('compares the whole answer by default: a field that differs (the model name) is a disagreement', () => {
    expect(
      agreement(
        compareAnswers(
          make(),
          ok({ predictions: [0], model: 'iris/1.0.0' }),
          ok({ predictions: [0], model: 'iris/2.0.0' }),
        ),
      ),
    ).toEqual([0, 1]);
  });

  it('compares text answers of the whole-answer path as strings', () => {
    const text = (body: string): Answer => ({ status: 200, contentType: 'text/plain', body, latencyMs: 1 });
    expect(agreement(compareAnswers(make(), text('setosa'), text('setosa')))).toEqual([1, 1]);
    expect(agreement(compareAnswers(make(), text('setosa'), text('virginica')))).toEqual([0, 1]);
  });
});

describe('compareAnswers: numbers', () => {
  it.each<[string, CompareSpec, unknown, unknown, [number, number], number]>([
    ['equal numbers agree with no tolerance', {}, [1.5], [1.5], [1, 1], 0],
    ['any difference disagrees with no tolerance', {}, [1.5], [1.5000001], [0, 1], 1e-7],
    ['within the absolute tolerance', { absoluteTolerance: 0.025 }, [1, 2], [1.01, 1.95], [1, 2], 0.03],
    [
      'within the relative tolerance of the serving value',
      { relativeTolerance: 0.1 },
      [100, 10],
      [109, 11.5],
      [1, 2],
      5.25,
    ],
    ['both tolerances add', { absoluteTolerance: 0.5, relativeTolerance: 0.1 }, [10], [11.5], [1, 1], 1.5],
    [
      'nested arrays (class probabilities) agree only when every value does',
      { absoluteTolerance: 0.05 },
      [
        [0.9, 0.1],
        [0.2, 0.8],
      ],
      [
        [0.92, 0.08],
        [0.4, 0.6],
      ],
      [1, 2],
      0.11,
    ],
    ['a scalar', { absoluteTolerance: 1 }, 3, 3.5, [1, 1], 0.5],
  ])('%s', (_, spec, serving, shadow, expected, mad) => {
    const o = compareAnswers(make({ ...spec, kind: 'numbers', path: '$.p' }), ok({ p: serving }), ok({ p: shadow }));
    expect(agreement(o)).toEqual(expected);
    expect(o.absDiffCount > 0 ? o.absDiffSum / o.absDiffCount : 0).toBeCloseTo(mad, 9);
  });

  it.each<[string, unknown, unknown]>([
    ['a string where a number is expected', [1], ['1']],
    ['a null', [1], [null]],
    ['arrays of different shapes inside an element', [[1, 2]], [[1, 2, 3]]],
  ])('%s disagrees and adds no difference', (_, serving, shadow) => {
    const o = compareAnswers(
      make({ kind: 'numbers', path: '$.p', absoluteTolerance: 10 }),
      ok({ p: serving }),
      ok({ p: shadow }),
    );
    expect(agreement(o)).toEqual([0, 1]);
    expect(o.absDiffCount).toBe(0);
  });
});

describe('compareAnswers: errors and unreadable answers (never thrown)', () => {
  const c = make({ path: '$.predictions' });

  it.each<[string, Answer, Answer, Partial<PairOutcome>]>([
    [
      'a shadow answering 500 counts as its error, not compared',
      ok({ predictions: [1] }),
      { status: 500, body: 'boom', latencyMs: 3 },
      { servingError: false, shadowError: true, compared: false, predictions: 0 },
    ],
    [
      'a shadow that did not answer (status 0) counts as its error',
      ok({ predictions: [1] }),
      { status: 0, body: '', latencyMs: 2000 },
      { shadowError: true, compared: false, shadowLatencyMs: 2000 },
    ],
    [
      'a serving error leaves nothing to compare against',
      { status: 503, body: '', latencyMs: 1 },
      ok({ predictions: [1] }),
      { servingError: true, shadowError: false, compared: false },
    ],
    [
      'both failing count on both sides',
      { status: 502, body: '', latencyMs: 1 },
      { status: 504, body: '', latencyMs: 1 },
      { servingError: true, shadowError: true, compared: false },
    ],
  ])('%s', (_, serving, shadow, expected) => {
    expect(compareAnswers(c, serving, shadow)).toMatchObject(expected);
  });

  it.each<[string, Answer]>([
    ['non-JSON', { status: 200, contentType: 'application/json', body: 'Internal error', latencyMs: 1 }],
    ['HTML', { status: 200, contentType: 'text/html', body: '<h1>hi</h1>', latencyMs: 1 }],
    ['JSON without the prediction', ok({ error: 'no model' })],
    ['truncated JSON', { status: 200, contentType: 'application/json', body: '{"predictions": [1, 2', latencyMs: 1 }],
    ['not UTF-8', { status: 200, contentType: 'application/json', body: new Uint8Array([0xc3, 0x28]), latencyMs: 1 }],
  ])(
    'a 2xx shadow answer that is %s is compared as a disagreement of each serving prediction, and reported',
    (_, shadow) => {
      const o = compareAnswers(c, ok({ predictions: [0, 1, 2] }), shadow);
      expect(o).toMatchObject({ compared: true, shadowError: false, predictions: 3, agreeing: 0 });
      expect(o.unreadable?.side).toBe('shadow');
      expect(o.unreadable?.reason).toBeTypeOf('string');
    },
  );

  it('an unreadable serving answer is reported and not compared: there is no reference prediction', () => {
    const o = compareAnswers(
      c,
      { status: 200, contentType: 'application/json', body: 'nope', latencyMs: 1 },
      ok({ predictions: [1] }),
    );
    expect(o).toMatchObject({ compared: false, predictions: 0, servingError: false, unreadable: { side: 'serving' } });
  });

  it('keeps both latencies', () => {
    expect(compareAnswers(c, ok({ predictions: [1] }, 4), ok({ predictions: [1] }, 9))).toMatchObject({
      servingLatencyMs: 4,
      shadowLatencyMs: 9,
    });
  });
});
