// Progress lines for long steps (tool builds, cluster start-up, the demo), on stderr so that they
// never mix with a command's real output.
export function log(message: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
