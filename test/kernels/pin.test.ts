// A matrix entry pinned to a version its suites do not have: one line that says so and lists what
// they do have, without claiming the pin was ever there (6.1.999-1 never existed). Resolution reads
// the private apt state's package index (cached under <cache>/apt: no network once it is there).
// The witness for "what bookworm has" is the Packages index itself, read with lz4cat and a line
// scan, not our apt queries.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CoreMatrixError } from '../../harness/core/errors.js';
import { KernelStore, type KernelEntry } from '../../harness/kernels/store.js';
import { cacheDir } from '../../harness/paths.js';

const store = new KernelStore({ log: () => {} });

/** Versions of linux-image-6.1.0-N-amd64-unsigned in bookworm's Packages index, by dpkg order. */
function bookwormVersions(): { name: string; version: string }[] {
  const lists = join(cacheDir('apt'), 'state', 'lists');
  const file = readdirSync(lists).find((f) => /_dists_bookworm_main_binary-amd64_Packages(\.lz4)?$/.test(f));
  expect(file, `bookworm's Packages index in ${lists}`).toBeDefined();
  const text = file!.endsWith('.lz4') ? execFileSync('lz4cat', [join(lists, file!)], { encoding: 'utf8', maxBuffer: 1 << 30 }) : readFileSync(join(lists, file!), 'utf8');
  const out: { name: string; version: string }[] = [];
  for (const stanza of text.split('\n\n')) {
    const name = /^Package: (linux-image-6\.1\.0-\d+-amd64-unsigned)$/m.exec(stanza)?.[1];
    const version = /^Version: (\S+)$/m.exec(stanza)?.[1];
    if (name && version) out.push({ name, version });
  }
  return out.sort((a, b) => (execFileSyncOk('dpkg', ['--compare-versions', a.version, 'lt', b.version]) ? -1 : 1));
}

function execFileSyncOk(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args);
    return true;
  } catch {
    return false;
  }
}

/** How the message lists versions: "a", "a and b", "a, b and c"; past six, the count and the range. */
const listed = (v: string[]) => (v.length > 6 ? `${v.length} versions, ${v[0]} to ${v[v.length - 1]}` : v.length === 1 ? v[0]! : `${v.slice(0, -1).join(', ')} and ${v[v.length - 1]}`);

describe('a pinned version the suites do not have', () => {
  it('one that never existed (6.1.999-1) is not worded as gone; the message lists what bookworm has', async () => {
    await store.candidates(store.entry('6.1')); // the index is current (or was cached)
    const have = bookwormVersions();
    expect(have.length).toBeGreaterThan(0);
    const newest = have[have.length - 1]!;
    const pinned: KernelEntry = { ...store.entry('6.1'), id: 'pin-6.1', version: '6.1.999-1' };
    const err = (await store.resolve(pinned).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(CoreMatrixError);
    expect(err.message).toBe(`kernel 'pin-6.1' (6.1 generic): pinned version 6.1.999-1 is not in bookworm, which has ${listed(have.map((h) => h.version))} (newest: ${newest.name} ${newest.version})`);
    expect(err.message).not.toMatch(/any more|no longer|left/);
  }, 300_000);

  it('one older than any there gets the same wording (the archive cannot tell whether it ever held it)', async () => {
    const pinned: KernelEntry = { ...store.entry('6.1'), id: 'pin-6.1', version: '6.1.1-1' };
    await expect(store.resolve(pinned)).rejects.toThrow(/^kernel 'pin-6\.1' \(6\.1 generic\): pinned version 6\.1\.1-1 is not in bookworm, which has /);
  }, 300_000);
});
