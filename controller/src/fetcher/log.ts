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

/** Masks every credential value of `env` in `text`: the last line of defence for what leaves the fetcher. */
export function masker(env: Env): (text: string) => string {
  const secrets = secretEnvNames
    .map((n) => env[n])
    .filter((v): v is string => typeof v === 'string' && v.length >= 4)
    .flatMap((v) => [v, JSON.stringify(v).slice(1, -1)]);
  return (text) => secrets.reduce((t, s) => t.split(s).join('REDACTED'), text);
}

export function makeLog(env: Env, out: (line: string) => void, component = 'fetcher'): Log {
  const mask = masker(env);
  return (level, msg, fields = {}) =>
    out(mask(JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...fields })));
}
