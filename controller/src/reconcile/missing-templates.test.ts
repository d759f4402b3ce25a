import { describe, expect, it } from 'vitest';
import type { Condition } from '../api/generated.ts';
import type { ConditionInput } from '../desired/status.ts';
import { missingTemplates, templateGraceMs, type MissingTemplates } from './missing-templates.ts';

const now = new Date('2026-11-30T12:00:00Z');
const at = (seconds: number) => new Date(now.getTime() + seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
const problem: ConditionInput = {
  type: 'TemplatesAvailable',
  status: 'False',
  reason: 'ModelNotFound',
  message: 'MachineLearningModel ml/b named by config c does not exist: create it',
};
const condition = (reason: string, status: Condition['status'], since: number): Condition => ({
  type: 'TemplatesAvailable',
  status,
  reason,
  message: '',
  lastTransitionTime: at(since),
});
const decide = (o: Partial<MissingTemplates>) =>
  missingTemplates({
    problem,
    what: 'MachineLearningModel ml/b named by config c',
    names: ['b'],
    servedFrom: undefined,
    previous: undefined,
    now,
    ...o,
  });

describe('a config or model an endpoint names that does not exist', () => {
  it('is waited for quietly when first seen missing, and the endpoint is looked at again when the grace period ends', () => {
    const r = decide({});
    expect(r.problem).toMatchObject({ type: 'TemplatesAvailable', status: 'False', reason: 'WaitingForTemplates' });
    expect(r.problem!.message).toBe(
      `waiting for MachineLearningModel ml/b named by config c, which does not exist yet (objects applied together arrive in any order); if it still does not exist at ${at(30)}, this becomes ModelNotFound: ${problem.message}`,
    );
    expect(r.recheckMs).toBe(templateGraceMs);
    // A template that was there and went away, from an endpoint that serves nothing yet, is new to it too.
    expect(decide({ previous: condition('Resolved', 'True', -600) }).problem!.reason).toBe('WaitingForTemplates');
  });

  it('counts the grace period from when status first said so: a restarted controller needs no memory of it', () => {
    const r = decide({ previous: condition('WaitingForTemplates', 'False', -20) });
    expect(r.problem!.reason).toBe('WaitingForTemplates');
    expect(r.problem!.message).toContain(`does not exist at ${at(10)}`);
    expect(r.recheckMs).toBe(10_000);
  });

  it('becomes the problem, with its reason and message, once the grace period is over', () => {
    expect(decide({ previous: condition('WaitingForTemplates', 'False', -30) })).toEqual({ problem });
    expect(decide({ previous: condition('ModelNotFound', 'False', -3600) })).toEqual({ problem });
  });

  it('is a problem at once when the serving version was made from it (a template deleted under a serving endpoint)', () => {
    expect(decide({ servedFrom: ['c', 'a', 'b'] })).toEqual({ problem });
    // Serving, but its snapshots cannot be read: nothing says the template is new.
    expect(decide({ servedFrom: null })).toEqual({ problem });
  });

  it('is waited for when a serving endpoint names it for the first time (a new variant, a new config)', () => {
    expect(decide({ servedFrom: ['c', 'a'] }).problem!.reason).toBe('WaitingForTemplates');
  });
});
