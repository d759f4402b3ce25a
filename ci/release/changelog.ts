// CHANGELOG.md in the Keep a Changelog format (https://keepachangelog.com/en/1.1.0/): read one
// release's changes (for Artifact Hub's `artifacthub.io/changes`), and turn `## [Unreleased]` into a
// release section when the version is bumped.

/** Artifact Hub's change kinds: exactly Keep a Changelog's section names, lower-cased. */
export const changeKinds = ['added', 'changed', 'deprecated', 'removed', 'fixed', 'security'] as const;

export interface Change {
  kind: (typeof changeKinds)[number];
  description: string;
}

const releaseHeading = /^## \[([^\]]+)\](?:\s+-\s+(\S+))?\s*$/;

interface Section {
  name: string;
  date?: string;
  /** Line indexes: the heading, and one past the section's last line. */
  start: number;
  end: number;
}

function sections(lines: string[]): Section[] {
  const found: Section[] = [];
  lines.forEach((line, i) => {
    const match = line.match(releaseHeading);
    if (!match) return;
    if (found.length > 0) found[found.length - 1].end = i;
    found.push({ name: match[1], date: match[2], start: i, end: lines.length });
  });
  return found;
}

/** Release names in order of appearance (`Unreleased` first, then the newest release). */
export function releases(changelog: string): { name: string; date?: string }[] {
  return sections(changelog.split('\n')).map(({ name, date }) => ({ name, date }));
}

/**
 * The changes listed under `## [version]`, or undefined when the changelog has no such section.
 * A bullet may continue on indented lines; they are joined into one description.
 */
export function changesOf(changelog: string, version: string): Change[] | undefined {
  const lines = changelog.split('\n');
  const section = sections(lines).find((s) => s.name === version);
  if (!section) return undefined;
  const changes: Change[] = [];
  let kind: Change['kind'] | undefined;
  for (const line of lines.slice(section.start + 1, section.end)) {
    const heading = line.match(/^### (\w+)\s*$/);
    if (heading) {
      const name = heading[1].toLowerCase();
      if (!(changeKinds as readonly string[]).includes(name))
        throw new Error(
          `CHANGELOG.md [${version}]: "### ${heading[1]}" is not a Keep a Changelog section (${changeKinds.join(', ')})`,
        );
      kind = name as Change['kind'];
    } else if (/^[-*] /.test(line)) {
      if (!kind) throw new Error(`CHANGELOG.md [${version}]: "${line}" is not under a ### section`);
      changes.push({ kind, description: line.slice(2).trim() });
    } else if (/^\s+\S/.test(line) && changes.length > 0) {
      changes[changes.length - 1].description += ` ${line.trim()}`;
    }
  }
  return changes;
}

/**
 * Makes the `## [Unreleased]` section the release `version` (dated `date`), under a new, empty
 * `## [Unreleased]`. Unchanged when the version already has a section.
 */
export function releaseUnreleased(changelog: string, version: string, date: string): string {
  const lines = changelog.split('\n');
  const all = sections(lines);
  if (all.some((s) => s.name === version)) return changelog;
  const unreleased = all.find((s) => s.name.toLowerCase() === 'unreleased');
  if (!unreleased) throw new Error('CHANGELOG.md has no "## [Unreleased]" section to release');
  lines.splice(unreleased.start, 1, '## [Unreleased]', '', `## [${version}] - ${date}`);
  return lines.join('\n');
}
