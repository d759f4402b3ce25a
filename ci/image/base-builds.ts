// The base images, made at most once at a time in a process: a base image is made in a scratch
// directory named after the process (base.ts), so two builds at once in one process (the
// release's and the working tree's controller images of the upgrade test, say) would share it and
// fail (EEXIST). Each build here waits for the one before it, and a second ask for the same image
// gets the first one's result.
import { ensureBaseImage, ensureDebianBaseImage } from './base.ts';

let last: Promise<unknown> = Promise.resolve();
const made = new Map<string, Promise<string>>();

export function serially(name: string, make: () => Promise<string>): Promise<string> {
  let pending = made.get(name);
  if (!pending) {
    pending = last.then(make, make);
    last = pending.catch(() => undefined);
    made.set(name, pending);
    // A failed build may be tried again by a later caller.
    pending.catch(() => made.delete(name));
  }
  return pending;
}

/** The Node.js base image of the controller image (base.ts). */
export const nodeBaseImageBuilt = (): Promise<string> => serially('node', ensureBaseImage);

/** The Debian base image of the scikit-learn server image (base.ts). */
export const debianBaseImageBuilt = (): Promise<string> => serially('debian', ensureDebianBaseImage);
