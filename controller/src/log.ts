// Structured JSON logs on stdout, one line per entry, with credentials redacted wherever they appear.
import { pino } from 'pino';

export type Logger = import('pino').Logger;

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { component: 'ml-operator' },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Level names rather than numbers: readable in kubectl logs and easy to filter on.
    formatters: { level: (label) => ({ level: label }) },
    redact: ['*.token', '*.authorization', 'headers.authorization'],
  });
}
