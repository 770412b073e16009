// The current libbpf cross-built for arm64 guests (harness/reference/build.ts, `arch: 'arm64'`):
// the same linux-source's tools/lib/bpf as the amd64 build, compiled by Debian's
// aarch64-linux-gnu-gcc against trixie's arm64 libelf and zlib. An arm64 binary cannot run here,
// so the witnesses are binutils' readelf (machine, SONAME, DT_NEEDED, version nodes, the glibc
// versions it needs), the source's own libbpf.map and libbpf_version.h, the amd64 build of the same
// source, and the arm64 userland the guest image carries (which package each needed library comes
// from). That the library loads and answers its API in a guest: arm64-libbpf.guest.test.ts.
import { execFileSync } from 'node:child_process';
import { basename, dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { archBaseEntries } from '../../harness/images/arm64-image.js';
import { MULTIARCH, type ArchUserland } from '../../harness/images/arm64-userland.js';
import { guestLibbpfPath } from '../../harness/matrix/run.js';
import { currentLibbpf, type CurrentLibbpf } from '../../harness/reference/build.js';

let arm: CurrentLibbpf;
let amd: CurrentLibbpf;
let userland: ArchUserland;
const log: string[] = [];

beforeAll(async () => {
  const t0 = Date.now();
  arm = await currentLibbpf((l) => log.push(l), { arch: 'arm64' });
  const m = arm.manifest;
  console.log(`[measure] arm64 ${arm.source}: libbpf ${m.version}, ${m.bytes} bytes stripped, built in ${m.buildSeconds} s at ${m.builtAt} with ${m.gcc}; this call ${Date.now() - t0} ms\n  ${log.join('\n  ')}`);
  amd = await currentLibbpf();
  // The userland of the arm64 image's base layer (node, koffi, Debian's libbpf.so.1 and what they need).
  userland = (await archBaseEntries('arm64')).userland;
}, 20 * 60_000);

const readelf = (...args: string[]) => execFileSync('readelf', [...args, '--wide', arm.so], { encoding: 'utf8' });

describe('the current libbpf built for arm64', () => {
  it('is an AArch64 shared object, as its manifest says', () => {
    expect(readelf('-h')).toMatch(/^\s*Machine:\s+AArch64\s*$/m);
    expect(readelf('-h')).toMatch(/^\s*Class:\s+ELF64\s*$/m);
    expect(arm.arch).toBe('arm64');
    expect(arm.manifest).toMatchObject({ arch: 'arm64', apiFrom: 'elf', elf: { machine: 'AArch64', soname: 'libbpf.so.1' } });
    expect(arm.manifest.gcc).toMatch(/^aarch64-linux-gnu-gcc /);
  });

  it('comes from the same linux-source as the amd64 build, in a cache folder of its own (the amd64 one keeps its name)', () => {
    expect(arm.source).toBe(amd.source);
    expect(arm.version).toBe(amd.version);
    expect(amd.arch).toBe('amd64');
    expect(amd.manifest.arch).toBeUndefined();
    const key = `${amd.manifest.package}_${amd.manifest.sourceVersion.replace(/:/g, '%3a')}`;
    expect(basename(dirname(amd.so))).toBe(key);
    expect(basename(dirname(arm.so))).toBe(`${key}_arm64`);
    expect(arm.manifest.sha256).not.toBe(amd.manifest.sha256);
  });

  it('is libbpf.so.<the newest node of its source\'s libbpf.map>, defines every node of it, and exports its version API there', () => {
    const map = readFileSync(arm.map, 'utf8');
    const nodes = [...map.matchAll(/^(LIBBPF_\d+\.\d+\.\d+) \{/gm)].map((m) => m[1]!);
    const newest = nodes.map((n) => n.slice('LIBBPF_'.length).split('.').map(Number)).sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]! || a[2]! - b[2]!).at(-1)!.join('.');
    expect(arm.version).toBe(newest);
    expect(arm.so.endsWith(`/libbpf.so.${newest}`)).toBe(true);
    expect(/\(SONAME\)\s+Library soname: \[([^\]]+)\]/.exec(readelf('-d'))?.[1]).toBe(`libbpf.so.${newest.split('.')[0]}`);
    const defined = readelf('-V').split(/^Version needs section/m)[0]!;
    for (const n of nodes) expect(defined, n).toMatch(new RegExp(`Name: ${n.replace(/\./g, '\\.')}\\b`));
    const syms = readelf('--dyn-syms');
    for (const f of ['libbpf_major_version', 'libbpf_minor_version', 'libbpf_version_string', 'bpf_object__open_mem', 'bpf_object__load']) expect(syms, f).toMatch(new RegExp(`\\b${f}@@LIBBPF_\\d`));
    // What the guest's reference loader will ask the library: the header's major.minor.
    const header = readFileSync(join(arm.include, 'bpf/libbpf_version.h'), 'utf8');
    const def = (n: string) => Number(new RegExp(`#define LIBBPF_${n}_VERSION (\\d+)`).exec(header)![1]);
    expect(arm.manifest.api).toEqual({ major: def('MAJOR'), minor: def('MINOR'), versionString: `v${def('MAJOR')}.${def('MINOR')}` });
    expect(`${arm.manifest.api.major}.${arm.manifest.api.minor}`).toBe(newest.split('.').slice(0, 2).join('.'));
  });

  it('needs only libraries the arm64 image carries, from the packages it was built against, and no glibc newer than the guest\'s', () => {
    const needed = [...readelf('-d').matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
    expect(needed.sort()).toEqual([...arm.manifest.needed].sort());
    expect(needed).toEqual(expect.arrayContaining(['libelf.so.1', 'libz.so.1', 'libc.so.6']));
    for (const soname of needed) {
      const f = userland.libraries.get(soname);
      expect(f, `${soname}: not in the arm64 userland`).toBeDefined();
      expect(f!.guest).toBe(`usr/lib/${MULTIARCH.arm64}/${soname}`);
    }
    // libelf and zlib: the very package versions the build compiled and linked against.
    const from = (soname: string) => userland.libraries.get(soname)!.from;
    const built = (arm.manifest.buildDeps ?? []).map((d) => d.replace(/ \(\S+\)$/, ''));
    expect(built).toContain(from('libelf.so.1'));
    expect(built).toContain(from('libz.so.1'));
    // The glibc the guest carries (trixie's libc6) is at least every GLIBC_x.y the library needs.
    const libc = /^libc6 (\d+)\.(\d+)/.exec(from('libc.so.6'))!;
    const glibc = [...readelf('-V').split(/^Version needs section/m)[1]!.matchAll(/Name: GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
    expect(glibc.length).toBeGreaterThan(0);
    for (const [a, b] of glibc) expect(a * 1000 + b, `GLIBC_${a}.${b} vs ${from('libc.so.6')}`).toBeLessThanOrEqual(Number(libc[1]) * 1000 + Number(libc[2]));
    const newest = glibc.reduce((x, y) => (y[0] * 1000 + y[1] > x[0] * 1000 + x[1] ? y : x));
    console.log(`[measure] arm64 libbpf needs ${needed.map((n) => `${n} (${from(n)})`).join(', ')}; GLIBC up to ${newest.join('.')}; built against ${arm.manifest.buildDeps?.join(', ')}`);
  });

  it('as a shared object of an arm64 image, it adds no library to the base layer; an x86-64 libbpf is refused there', async () => {
    const guest = guestLibbpfPath(arm.version).slice(1);
    const paths = (e: { entries: { path: string }[] }) => e.entries.map((x) => x.path).sort();
    const withIt = await archBaseEntries('arm64', { roots: [{ host: arm.so, guest }] });
    expect(paths(withIt)).toEqual(paths(await archBaseEntries('arm64')));
    await expect(archBaseEntries('arm64', { roots: [{ host: amd.so, guest }] })).rejects.toThrow(`userland for arm64: ${guest} is ELF machine 62, not 183`);
  });

  it('a second call finds the cached build (same file, not rebuilt)', async () => {
    const again = await currentLibbpf(() => {}, { arch: 'arm64' });
    expect([again.so, again.manifest.builtAt, again.manifest.sha256]).toEqual([arm.so, arm.manifest.builtAt, arm.manifest.sha256]);
  });
});
