// A watch's response body as the API server streams it: one JSON event a line, each delivered as it
// arrives (bookmarks too); the object's managed fields trimmed as every read of the client does.
import type * as http from 'node:http';
import { networkError, trimmed } from './http.ts';
import type { KubeObject, Resource } from './resources.ts';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/**
 * Calls onEvent per decoded line; resolves when the server ends the stream; rejects on a network
 * error, when a line is not JSON or onEvent throws, and with the signal's reason when it aborts.
 */
export function readWatchStream(
  what: string,
  res: http.IncomingMessage,
  r: Resource,
  signal: AbortSignal,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each caller reads the events as its resource's type
  onEvent: (type: WatchEventType, object: any) => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let buffered = '';
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      res.destroy();
      reject(err);
    };
    const deliver = (line: string) => {
      if (!line.trim()) return;
      const event = JSON.parse(line) as { type: WatchEventType; object: KubeObject | undefined };
      const object = event.object;
      if (event.type !== 'ERROR' && object?.metadata) trimmed(object, r);
      onEvent(event.type, object);
    };
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      if (settled) return;
      buffered += chunk;
      let newline: number;
      try {
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          deliver(line);
        }
      } catch (err) {
        fail(err);
      }
    });
    res.on('end', () => {
      if (settled) return;
      try {
        deliver(buffered);
      } catch (err) {
        fail(err);
        return;
      }
      settled = true;
      resolve();
    });
    res.on('error', (err) => fail(signal.aborted ? signal.reason : networkError(what, err)));
    const onClose = () => {
      if (signal.aborted) fail(signal.reason);
      else if (!res.complete) fail(new Error(`${what}: the connection closed mid-stream`));
    };
    res.on('close', onClose);
    // Aborted or cut before these listeners were attached.
    if (res.destroyed) onClose();
  });
}
