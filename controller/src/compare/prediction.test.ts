import { describe, expect, it } from 'vitest';
import { extractPrediction, parsePath, type Answer, type PathSegment } from './prediction.ts';

const json = (body: unknown, contentType = 'application/json'): Answer => ({
  status: 200,
  contentType,
  body: new TextEncoder().encode(JSON.stringify(body)),
  latencyMs: 1,
});
const segments = (path: string): PathSegment[] => {
  const p = parsePath(path);
  if (!p.ok) throw new Error(p.error);
  return p.segments;
};

describe('parsePath: the subset of JSON path a prediction is found by', () => {
  it.each([
    ['$', []],
    ['$.predictions', [{ member: 'predictions' }]],
    ['$.a.b', [{ member: 'a' }, { member: 'b' }]],
    ['$.a[0]', [{ member: 'a' }, { index: 0 }]],
    ['$.predictions[*]', [{ member: 'predictions' }, { every: true }]],
    ['$.items[*].label', [{ member: 'items' }, { every: true }, { member: 'label' }]],
    ["$['odd name']", [{ member: 'odd name' }]],
    ['$["x"][12]', [{ member: 'x' }, { index: 12 }]],
  ])('reads %s', (path, expected) => {
    expect(parsePath(path)).toEqual({ ok: true, segments: expected });
  });

  it('defaults to the whole answer', () => {
    expect(parsePath()).toEqual({ ok: true, segments: [] });
  });

  it.each(['', 'predictions', '$.', '$..a', '$[-1]', '$.a[', '$.a[?(@.x)]', '$ .a'])(
    'refuses %j and says where',
    (path) => {
      const p = parsePath(path);
      expect(p.ok).toBe(false);
      if (!p.ok) expect(p.error).toContain(JSON.stringify(path));
    },
  );
});

describe('extractPrediction', () => {
  const body = {
    predictions: [0, 2, 1],
    labels: ['setosa', 'virginica', 'versicolor'],
    model: 'iris/1.0.0',
    items: [{ label: 'a' }, { label: 'b' }],
  };

  it.each([
    ['$', body],
    ['$.predictions', [0, 2, 1]],
    ['$.predictions[*]', [0, 2, 1]],
    ['$.predictions[1]', 2],
    ['$.model', 'iris/1.0.0'],
    ['$.items[*].label', ['a', 'b']],
  ])('%s finds %j', (path, expected) => {
    expect(extractPrediction(json(body), segments(path))).toEqual({ ok: true, value: expected });
  });

  it('reads JSON of a +json type, and an answer with no content type as JSON', () => {
    expect(extractPrediction(json([1], 'application/vnd.model+json; charset=utf-8'), [])).toEqual({
      ok: true,
      value: [1],
    });
    expect(extractPrediction({ status: 200, body: '[1]', latencyMs: 1 }, [])).toEqual({ ok: true, value: [1] });
  });

  it('takes the text of a non-JSON answer as the prediction of the whole-answer path', () => {
    expect(extractPrediction({ status: 200, contentType: 'text/plain', body: 'setosa', latencyMs: 1 }, [])).toEqual({
      ok: true,
      value: 'setosa',
    });
  });

  it.each<[string, Answer, string, string]>([
    [
      'a JSON answer that is not JSON',
      { status: 200, contentType: 'application/json', body: '<html>oops</html>', latencyMs: 1 },
      '$',
      'not JSON',
    ],
    ['an empty answer', { status: 200, contentType: 'application/json', body: '', latencyMs: 1 }, '$', 'not JSON'],
    [
      'bytes that are not UTF-8',
      { status: 200, contentType: 'application/json', body: new Uint8Array([0xff, 0xfe]), latencyMs: 1 },
      '$',
      'not UTF-8',
    ],
    [
      'a text answer with a path into it',
      { status: 200, contentType: 'text/plain', body: 'setosa', latencyMs: 1 },
      '$.predictions',
      'text/plain, not JSON',
    ],
    ['a missing member', json(body), '$.scores', '$ has no member "scores"'],
    ['a member of an array', json([1]), '$.predictions', '$ has no member'],
    ['an index past the end', json(body), '$.predictions[3]', '$.predictions has no element 3'],
    ['[*] over an object', json(body), '$.model[*]', '$.model is not an array'],
    [
      'a member missing in one element',
      json({ items: [{ label: 'a' }, {}] }),
      '$.items[*].label',
      '$.items[1] has no member "label"',
    ],
    ['a member of null', json({ predictions: null }), '$.predictions.x', '$.predictions has no member'],
  ])('%s is unreadable, with the reason, and never throws', (_, answer, path, reason) => {
    const got = extractPrediction(answer, segments(path));
    expect(got.ok).toBe(false);
    if (!got.ok) expect(got.unreadable).toContain(reason);
  });
});
