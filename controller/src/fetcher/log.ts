// JSON log lines on stderr, one per step, with credentials masked.

export type Env = Record<string, string | undefined>;

export type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

const secretEnvNames = [
  'HTTP_AUTHORIZATION',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'GOOGLE_OAUTH_ACCESS_TOKEN',
  'GOOGLE_APPLICATION_CREDENTIALS_JSON',
  'AZURE_STORAGE_CONNECTION_STRING',
  'AZURE_STORAGE_KEY',
  'AZURE_STORAGE_SAS_TOKEN',
  'AZURE_CLIENT_SECRET',
];

export function makeLog(env: Env, out: (line: string) => void): Log {
  // Last line of defence: any credential value that somehow reached a log line is masked.
  const secrets = secretEnvNames
    .map((n) => env[n])
    .filter((v): v is string => typeof v === 'string' && v.length >= 4)
    .flatMap((v) => [v, JSON.stringify(v).slice(1, -1)]);
  return (level, msg, fields = {}) => {
    let line = JSON.stringify({ time: new Date().toISOString(), level, component: 'fetcher', msg, ...fields });
    for (const s of secrets) line = line.split(s).join('REDACTED');
    out(line);
  };
}
