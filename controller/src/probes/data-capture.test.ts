import { describe, expect, it } from 'vitest';
import { dataCapturedCondition, dataCapturePollMs, DataCaptureProbe, type AgentCaptureStatus } from './data-capture.ts';

const healthy: AgentCaptureStatus = {
  enabled: true,
  samplingPercent: 25,
  destination: 's3://captures/x',
  healthy: true,
  error: null,
  written: 10,
  dropped: 0,
  configError: null,
};
const destination = 's3://captures/x';

describe('the DataCaptured condition', () => {
  it('is True while every answering agent writes', () => {
    expect(
      dataCapturedCondition(destination, true, [
        { pod: 'a', status: healthy },
        { pod: 'b', status: healthy },
      ]),
    ).toMatchObject({ status: 'True', reason: 'Capturing' });
  });
  it("is False naming the destination, the pods, the sink's error and what to check while a sink fails", () => {
    const c = dataCapturedCondition(destination, true, [
      { pod: 'a', status: healthy },
      { pod: 'b', status: { ...healthy, healthy: false, error: 'NoSuchBucket: The specified bucket does not exist' } },
    ]);
    expect(c).toMatchObject({ status: 'False', reason: 'SinkFailing' });
    expect(c.message).toContain('s3://captures/x');
    expect(c.message).toContain('pods b');
    expect(c.message).toContain('NoSuchBucket');
    expect(c.message).toContain('credentials');
  });
  it('says when capture is off, when a config is refused, and when no agent answers', () => {
    expect(dataCapturedCondition(destination, false, [])).toMatchObject({ status: 'False', reason: 'CaptureDisabled' });
    expect(
      dataCapturedCondition(destination, true, [{ pod: 'a', status: { ...healthy, configError: 'bad JSON' } }]),
    ).toMatchObject({ status: 'False', reason: 'AgentConfigInvalid' });
    expect(dataCapturedCondition(destination, true, [{ pod: 'a', unreachable: 'ECONNREFUSED' }])).toMatchObject({
      status: 'Unknown',
      reason: 'NoAgentAnswered',
    });
  });
});

describe('the probe', () => {
  it('asks the agents of an endpoint at most every poll period, and at once when the settings change', async () => {
    const probe = new DataCaptureProbe();
    let asked = 0;
    const ask = async () => {
      asked++;
      return dataCapturedCondition(destination, true, [{ pod: 'a', status: healthy }]);
    };
    const t0 = new Date(0);
    await probe.condition('ns/e', 'v1', t0, ask);
    await probe.condition('ns/e', 'v1', new Date(dataCapturePollMs - 1), ask);
    expect(asked).toBe(1);
    await probe.condition('ns/e', 'v2', new Date(dataCapturePollMs - 1), ask);
    expect(asked).toBe(2);
    await probe.condition('ns/e', 'v2', new Date(2 * dataCapturePollMs), ask);
    expect(asked).toBe(3);
  });

  it('keeps what the agents said last, for a round that could not ask them', async () => {
    const probe = new DataCaptureProbe<{ n: number }>();
    expect(probe.previous('ns/e')).toBeUndefined();
    await probe.condition('ns/e', 'v1', new Date(0), async () => ({ n: 1 }));
    expect(probe.previous('ns/e')).toEqual({ n: 1 });
    probe.forget('ns/e');
    expect(probe.previous('ns/e')).toBeUndefined();
  });
});
