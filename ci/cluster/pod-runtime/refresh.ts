// A volume kept up to date as a kubelet keeps one: `sync` every `everyMs`, never two at once. Two
// syncs at once could write what an older read found after what a newer one found (a read slowed by
// a busy API server), and a pod would see its ConfigMap go back to an earlier version until the next.
export function refreshEvery(everyMs: number, sync: () => Promise<void>, signal: AbortSignal): void {
  let timer: NodeJS.Timeout | undefined;
  const next = () => {
    if (signal.aborted) return;
    timer = setTimeout(() => {
      void sync()
        .catch(() => {})
        .finally(next);
    }, everyMs);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  next();
}
