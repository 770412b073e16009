// Mirror discovery from apt configuration in both formats (written to temp /etc/apt-like trees),
// the private sources.list, the lock, and the machine's real configuration (read only).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AptState, discoverMirrors, findDebianMirrors, parseDeb822Sources, parseOneLineSources, privateSourcesList, readAptSources, DEBIAN_KEYRING } from '../../harness/kernels/apt.js';
import { withLock } from '../../harness/lock.js';

// The URIs in the test data are local file: URIs (no host is written here). The security one is
// deliberately not the archive's + '-security', so finding it in the sources cannot be mistaken for
// deriving it; the machine's own configuration is read by the last test of the first group.
const ARCHIVE = 'file:/srv/cm-archive/debian';
const SECURITY = 'file:/srv/cm-security/updates';
const DEB822 = `# Debian main archive, as the installer writes it
Types: deb deb-src
# file:/srv/snapshot/archive/debian/20250520T000000Z
URIs: ${ARCHIVE}/
Suites: bookworm bookworm-updates
Components: main contrib non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${SECURITY}
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGNOtherKeyMaterialHere
 -----END PGP PUBLIC KEY BLOCK-----

Enabled: no
Types: deb
URIs: file:/srv/disabled/debian
Suites: trixie
Components: main
`;

const ONELINE = `# a classic sources.list
deb ${ARCHIVE} bullseye main contrib
deb-src ${ARCHIVE} bullseye main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${ARCHIVE} bullseye-updates main
deb ${SECURITY} bullseye-security main # trailing comment
deb file:/opt/vendor/apt cloud-sdk-bookworm main
`;

function etcTree(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'cm-etc-apt-'));
  mkdirSync(join(dir, 'sources.list.d'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe('apt sources parsing', () => {
  it('parses deb822 stanzas with comments, folded fields and Enabled: no', () => {
    const s = parseDeb822Sources(DEB822, 'debian.sources');
    expect(s).toHaveLength(3);
    expect(s[0]).toMatchObject({ types: ['deb', 'deb-src'], uris: [`${ARCHIVE}/`], suites: ['bookworm', 'bookworm-updates'], components: ['main', 'contrib', 'non-free-firmware'], signedBy: DEBIAN_KEYRING, enabled: true, line: 2 });
    expect(s[1]!.suites).toEqual(['bookworm-security']);
    expect(s[1]!.signedBy).toMatch(/^-----BEGIN PGP PUBLIC KEY BLOCK----- \. mQINB/);
    expect(s[2]).toMatchObject({ enabled: false, suites: ['trixie'] });
  });

  it('parses one-line sources with options and comments', () => {
    const s = parseOneLineSources(ONELINE, 'sources.list');
    expect(s.map((x) => [x.types[0], x.uris[0], x.suites[0], x.components.join(' '), x.line])).toEqual([
      ['deb', ARCHIVE, 'bullseye', 'main contrib', 2],
      ['deb-src', ARCHIVE, 'bullseye', 'main', 3],
      ['deb', ARCHIVE, 'bullseye-updates', 'main', 4],
      ['deb', SECURITY, 'bullseye-security', 'main', 5],
      ['deb', 'file:/opt/vendor/apt', 'cloud-sdk-bookworm', 'main', 6],
    ]);
    expect(s[2]!.signedBy).toBe(DEBIAN_KEYRING);
  });

  it('finds the archive and security mirrors in a deb822 tree, ignoring other extensions', () => {
    const dir = etcTree({ 'sources.list.d/debian.sources': DEB822, 'sources.list.d/other.list.disabled': 'deb file:/srv/nope/debian sid main\n' });
    const m = discoverMirrors(dir);
    expect(m.archive).toBe(ARCHIVE);
    expect(m.security).toBe(SECURITY);
    expect(m.origin.archive).toBe(`${join(dir, 'sources.list.d/debian.sources')}:2`);
  });

  it('finds them in /etc/apt/sources.list one-line format, skipping non-Debian repositories', () => {
    const dir = etcTree({ 'sources.list': ONELINE.replace(/^deb file:\/opt\/vendor.*$/m, '').replace(/^deb /m, '# deb ') + 'deb file:/opt/vendor/apt cloud-sdk-bookworm main\n' });
    const m = discoverMirrors(dir);
    expect(m.archive).toBe(ARCHIVE);
    expect(m.security).toBe(SECURITY);
  });

  it('derives the security URI from the archive when none is configured, and fails clearly without a Debian source', () => {
    const dir = etcTree({ 'sources.list.d/a.list': 'deb [trusted=yes] file:/srv/mirror/debian/ trixie main\n' });
    expect(discoverMirrors(dir)).toMatchObject({ archive: 'file:/srv/mirror/debian', security: 'file:/srv/mirror/debian-security' });
    const none = etcTree({ 'sources.list.d/n.sources': 'Types: deb\nURIs: file:/opt/node/apt\nSuites: nodistro\nComponents: main\n' });
    expect(() => discoverMirrors(none)).toThrow(/^no Debian archive found in the machine's apt sources \(.*n\.sources\)/);
    const disabled = etcTree({ 'sources.list.d/d.sources': DEB822.replace(/^Types: deb deb-src/m, 'Enabled: no\nTypes: deb').replace(`Types: deb\nURIs: ${SECURITY}`, `Enabled: false\nTypes: deb\nURIs: ${SECURITY}`) });
    expect(() => discoverMirrors(disabled)).toThrow(/no Debian archive/);
  });

  it('writes a private sources.list: security suites from the security archive, signed by the Debian keyring', () => {
    const text = privateSourcesList({ archive: ARCHIVE, security: SECURITY, origin: { archive: '', security: '' } }, ['sid', 'bullseye-security', 'trixie-backports', 'sid']);
    expect(text.split('\n').filter((l) => l.startsWith('deb '))).toEqual([
      `deb [arch=amd64 signed-by=${DEBIAN_KEYRING}] ${SECURITY} bullseye-security main`,
      `deb [arch=amd64 signed-by=${DEBIAN_KEYRING}] ${ARCHIVE} sid main`,
      `deb [arch=amd64 signed-by=${DEBIAN_KEYRING}] ${ARCHIVE} trixie-backports main`,
    ]);
  });

  it("reads this machine's apt configuration: the URIs found are ones the files really contain", () => {
    const m = discoverMirrors();
    const files = readAptSources().map((s) => s.file);
    const text = [...new Set(files)].map((f) => readFileSync(f, 'utf8')).join('\n');
    expect(text).toContain(m.archive);
    expect(m.security).toMatch(/-security$/);
    expect(existsSync(DEBIAN_KEYRING)).toBe(true);
  });
});

describe('lock', () => {
  it('serialises concurrent holders and takes over a dead holder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-lock-'));
    const lock = join(dir, 'lock');
    const events: string[] = [];
    const holder = (name: string) =>
      withLock(lock, async () => {
        events.push(`${name}+`);
        await new Promise((r) => setTimeout(r, 150));
        events.push(`${name}-`);
      });
    await Promise.all([holder('a'), holder('b'), holder('c')]);
    for (let i = 0; i < events.length; i += 2) expect(events[i]!.slice(0, -1)).toBe(events[i + 1]!.slice(0, -1));
    // A lock left by a process that no longer exists.
    const dead = spawn('true');
    await new Promise((r) => dead.on('close', r));
    writeFileSync(lock, `${dead.pid}\n`);
    const t0 = Date.now();
    expect(await withLock(lock, async () => 42)).toBe(42);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(existsSync(lock)).toBe(false);
    // A lock held by a live process is waited for, up to the timeout.
    writeFileSync(lock, `${process.pid}\n`);
    await expect(withLock(lock, async () => 1, 600)).rejects.toThrow(/still locked by pid/);
    execFileSync('rm', ['-f', lock]);
  });
});

describe('apt-cache answers kept while the lists stay the same', () => {
  // A private state with one hand-written Packages list from a local file: repository: apt-cache
  // really reads it, no network involved.
  function stateWith(version: string): { dir: string; list: string } {
    const dir = mkdtempSync(join(tmpdir(), 'cm-apt-memo-'));
    mkdirSync(join(dir, 'etc'), { recursive: true });
    writeFileSync(join(dir, 'etc/sources.list'), 'deb [trusted=yes] file:/srv/cm-memo bookworm main\n');
    mkdirSync(join(dir, 'state/lists'), { recursive: true });
    const list = join(dir, 'state/lists/_srv_cm-memo_dists_bookworm_main_binary-amd64_Packages');
    writePackages(list, version);
    return { dir, list };
  }
  function writePackages(list: string, version: string): void {
    writeFileSync(list, `Package: linux-image-9.9.9-cm-amd64\nVersion: ${version}\nArchitecture: amd64\nMaintainer: nobody <nobody@localhost>\nFilename: pool/l/linux-image-9.9.9-cm-amd64_${version}_amd64.deb\nSize: 1\nDescription: memo test\n\n`);
  }

  it('serves a repeated query from the memo, and asks apt-cache again once a list changes', async () => {
    const { dir, list } = stateWith('9.9.9-1');
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const apt = new AptState({ dir });
    const first = await apt.madison(['linux-image-9.9.9-cm-amd64']);
    expect(first.map((r) => [r.name, r.version, r.suite])).toEqual([['linux-image-9.9.9-cm-amd64', '9.9.9-1', 'bookworm']]);
    // The memo holds the answer: plant a different one under the same lists and it is what comes back.
    const memoFile = join(dir, 'query-memo.json');
    const memo = JSON.parse(readFileSync(memoFile, 'utf8')) as { lists: string; answers: Record<string, string> };
    const key = JSON.stringify(['madison', 'linux-image-9.9.9-cm-amd64']);
    expect(memo.answers[key]).toContain('9.9.9-1');
    memo.answers[key] = memo.answers[key]!.replace('9.9.9-1', '9.9.9-planted');
    writeFileSync(memoFile, JSON.stringify(memo));
    expect((await apt.madison(['linux-image-9.9.9-cm-amd64'])).map((r) => r.version)).toEqual(['9.9.9-planted']);
    // A new list (apt-get update brought a new version): the memo no longer applies.
    writePackages(list, '9.9.9-22');
    expect((await apt.madison(['linux-image-9.9.9-cm-amd64'])).map((r) => r.version)).toEqual(['9.9.9-22']);
  });
});
