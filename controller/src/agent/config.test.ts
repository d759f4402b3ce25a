// config.json's shadows, as the controller writes them and as a person editing it by hand might get
// them wrong: every mistake names the field and what is expected.
import { describe, expect, it } from 'vitest';
import { parseShadowsConfig, shadowDefaults } from './config.ts';

const one = (shadow: Record<string, unknown>) => JSON.stringify({ shadows: [shadow] });
const good = { name: 'b', url: 'http://titanic-b.ns1.svc:80/', percent: 10 };

describe('parseShadowsConfig', () => {
  it('reads none when config.json has no shadows', () => {
    expect(parseShadowsConfig('{"capture":{"enabled":false}}')).toEqual([]);
  });

  it('fills in the defaults: the whole answer compared as labels, the timeout and the in-flight cap', () => {
    expect(parseShadowsConfig(one(good))).toEqual([
      {
        name: 'b',
        url: 'http://titanic-b.ns1.svc',
        percent: 10,
        compare: { path: '$', kind: 'labels', absoluteTolerance: 0, relativeTolerance: 0 },
        timeoutMs: shadowDefaults.timeoutMs,
        maxInFlight: shadowDefaults.maxInFlight,
        reference: 'own',
      },
    ]);
    expect(parseShadowsConfig(one({ ...good, reference: 'copy' }))[0].reference).toBe('copy');
    expect(
      parseShadowsConfig(
        one({ ...good, compare: { path: '$.scores[*]', kind: 'numbers', absoluteTolerance: 0.01 }, timeoutMs: 500 }),
      )[0],
    ).toMatchObject({
      compare: { path: '$.scores[*]', kind: 'numbers', absoluteTolerance: 0.01, relativeTolerance: 0 },
      timeoutMs: 500,
    });
  });

  it.each([
    ['{"shadows":{}}', 'shadows must be a list'],
    [JSON.stringify({ shadows: [good, good] }), 'shadows[1].name "b" is given twice'],
    [one({ ...good, name: '' }), "shadows[0].name must be the shadow variant's name"],
    [one({ ...good, url: 'titanic-b' }), 'shadows[0].url must be the shadow\'s http:// URL, not "titanic-b"'],
    [one({ ...good, url: 'https://b' }), 'shadows[0].url must be an http:// URL'],
    [one({ ...good, percent: 101 }), 'shadows[0].percent must be a number from 0 to 100, not 101'],
    [
      one({ ...good, compare: { path: 'predictions' } }),
      'shadows[0].compare: the prediction path "predictions" does not start with $',
    ],
    [one({ ...good, compare: { path: 3 } }), 'shadows[0].compare.path must be a string'],
    [one({ ...good, compare: { kind: 'probabilities' } }), 'shadows[0].compare.kind must be "labels" or "numbers"'],
    [one({ ...good, compare: { absoluteTolerance: -1 } }), 'absoluteTolerance is -1: it must be a number >= 0'],
    [one({ ...good, timeoutMs: 0 }), 'shadows[0].timeoutMs must be a whole number >= 1, not 0'],
    [one({ ...good, maxInFlight: 2.5 }), 'shadows[0].maxInFlight must be a whole number >= 1, not 2.5'],
    [one({ ...good, reference: 'shadow' }), 'shadows[0].reference must be "own" or "copy", not "shadow"'],
  ])('refuses %s: %s', (text, message) => {
    expect(() => parseShadowsConfig(text)).toThrow(message);
  });
});
