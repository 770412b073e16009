// The current libbpf (harness/reference/build.ts): tools/lib/bpf of the newest Debian linux-source
// built on this machine, cached. Witnesses: the source package's own control record (dpkg-deb),
// the source's libbpf.map and libbpf_version.h, readelf's SONAME, the library's public API through
// koffi, Debian's libbpf 1.1 loaded in the same process, and the host kernel, which loads the same
// fixture objects through our loader, libbpf 1.1 and the current libbpf (the host is root).
import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBtf } from '../../harness/core/btf/btf.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { AptState } from '../../harness/kernels/apt.js';
import { Collection, type ProgramOutcome } from '../../harness/loader/collection.js';
import { currentLibbpf, LIBBPF_RECIPE, validBuild, type CurrentLibbpf } from '../../harness/reference/build.js';
import { compareOutcomes } from '../../harness/reference/compare.js';
import { libbpfInfo, loadWithLibbpf, type ReferenceLibrary, type ReferenceOutcome } from '../../harness/reference/libbpf.js';
import { kallsymsLookup, linuxKernelVersion, readKernelConfig } from '../../harness/runtime/index.js';
import { compileBpf } from '../helpers/tools.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-current-libbpf-'));
let cur: CurrentLibbpf;
let lib: ReferenceLibrary;
const log: string[] = [];

beforeAll(async () => {
  const t0 = Date.now();
  cur = await currentLibbpf((l) => log.push(l));
  lib = { so: cur.so, version: cur.version, source: cur.source };
  const m = cur.manifest;
  console.log(`[measure] ${cur.source}: libbpf ${m.version}, ${m.bytes} bytes stripped, built in ${m.buildSeconds} s at ${m.builtAt}; this call ${Date.now() - t0} ms\n  ${log.join('\n  ')}`);
}, 20 * 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** "a.b" compared as numbers. */
const newer = (a: [number, number], b: [number, number]) => a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);

describe('building the current libbpf', () => {
  it('comes from a linux-source-X.Y package whose own control record names the version it is keyed by', async () => {
    expect(cur.manifest.package).toMatch(/^linux-source-\d+\.\d+$/);
    const deb = await new AptState().keptDownload(cur.manifest.package, cur.manifest.sourceVersion);
    const control = execFileSync('dpkg-deb', ['-f', deb, 'Package', 'Version'], { encoding: 'utf8' });
    expect(control.trim().split('\n')).toEqual([`Package: ${cur.manifest.package}`, `Version: ${cur.manifest.sourceVersion}`]);
    expect(cur.source).toBe(`${cur.manifest.package} ${cur.manifest.sourceVersion}`);
  });

  it('is a libbpf.so.<libbpf.map version> whose SONAME is libbpf.so.<major>, linked against what a guest already carries', () => {
    const map = readFileSync(cur.map, 'utf8');
    const nodes = [...map.matchAll(/^LIBBPF_([\d.]+) \{/gm)].map((m) => m[1]!);
    expect(nodes).toContain(cur.version);
    expect(cur.so.endsWith(`/libbpf.so.${cur.version}`)).toBe(true);
    const dyn = execFileSync('readelf', ['-d', cur.so], { encoding: 'utf8' });
    expect(/\(SONAME\)\s+Library soname: \[([^\]]+)\]/.exec(dyn)?.[1]).toBe(`libbpf.so.${cur.version.split('.')[0]}`);
    // Debian's libbpf1 needs libelf1, zlib1g and libc6 too: nothing new for a guest image.
    const debian = execFileSync('readelf', ['-d', '/usr/lib/x86_64-linux-gnu/libbpf.so.1'], { encoding: 'utf8' });
    const needed = (t: string) => new Set([...t.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!));
    for (const n of needed(dyn)) if (n !== 'ld-linux-x86-64.so.2') expect(needed(debian), n).toContain(n);
    expect([...needed(dyn)].sort()).toEqual([...cur.manifest.needed].sort());
  });

  it('a second call finds the cached build (same file, not rebuilt)', async () => {
    const again = await currentLibbpf();
    expect(again.so).toBe(cur.so);
    expect(again.manifest.builtAt).toBe(cur.manifest.builtAt);
    expect(again.manifest.sha256).toBe(cur.manifest.sha256);
  });

  it('a cached build is only taken when intact: a damaged .so, a missing header or manifest, another recipe are not', () => {
    const dir = join(cur.so, '..');
    const copy = (name: string) => {
      const d = join(tmp, name);
      cpSync(dir, d, { recursive: true });
      return d;
    };
    expect(validBuild(copy('intact'))?.sha256).toBe(cur.manifest.sha256);
    const damaged = copy('damaged');
    appendFileSync(join(damaged, cur.manifest.so), Buffer.from([0]));
    expect(validBuild(damaged)).toBeUndefined();
    const noHeader = copy('no-header');
    rmSync(join(noHeader, 'include/bpf/libbpf.h'));
    expect(validBuild(noHeader)).toBeUndefined();
    const noManifest = copy('no-manifest');
    rmSync(join(noManifest, 'libbpf.json'));
    expect(validBuild(noManifest)).toBeUndefined();
    const other = copy('other-recipe');
    const m = JSON.parse(readFileSync(join(other, 'libbpf.json'), 'utf8')) as { recipe: number };
    writeFileSync(join(other, 'libbpf.json'), JSON.stringify({ ...m, recipe: LIBBPF_RECIPE + 1 }));
    expect(validBuild(other)).toBeUndefined();
  });
});

describe('the current libbpf through koffi', () => {
  it('says (libbpf_major/minor_version) what its source says (libbpf_version.h, libbpf.map), and is newer than Debian\'s', () => {
    const info = libbpfInfo(lib);
    const header = readFileSync(join(cur.include, 'bpf/libbpf_version.h'), 'utf8');
    const define = (n: string) => Number(new RegExp(`#define ${n} (\\d+)`).exec(header)![1]);
    expect([info.major, info.minor]).toEqual([define('LIBBPF_MAJOR_VERSION'), define('LIBBPF_MINOR_VERSION')]);
    expect(cur.version.split('.').slice(0, 2).map(Number)).toEqual([info.major, info.minor]);
    expect(info.versionString).toBe(`v${info.major}.${info.minor}`);
    expect([info.major, info.minor]).toEqual([cur.manifest.api.major, cur.manifest.api.minor]);
    const debian = libbpfInfo();
    expect(debian.versionString).toMatch(/^v1\.\d+$/);
    expect(newer([info.major, info.minor], [debian.major, debian.minor]), `${info.label} vs ${debian.label}`).toBe(true);
    expect(info.label).toBe(`libbpf ${cur.version} (${cur.source})`);
    console.log(`[measure] ${info.label} beside ${debian.label}`);
  });

  it('stays apart from Debian\'s libbpf.so.1 in the same process; the same file under another name, or a wrong version, is refused', () => {
    libbpfInfo(lib);
    // Debian's, asked for by soname after the current one was loaded by path, is still Debian's.
    expect(libbpfInfo().major * 1000 + libbpfInfo().minor).toBeLessThan(libbpfInfo(lib).major * 1000 + libbpfInfo(lib).minor);
    const alias = join(tmp, 'alias.so');
    symlinkSync(cur.so, alias);
    expect(() => libbpfInfo({ so: alias })).toThrow(`reference: ${alias} resolved to the libbpf already loaded as ${cur.so} (same file or same soname)`);
    expect(() => libbpfInfo({ ...lib, version: '1.1.0' })).toThrow(/says it is libbpf \d+\.\d+, not 1\.1\.0$/);
    expect(() => libbpfInfo({ so: join(tmp, 'missing.so') })).toThrow(/^reference: cannot load .*missing\.so: /);
  });

  it('opens objects (no kernel): an object it cannot open is one line with its code and warning', () => {
    const junk = new TextEncoder().encode('not an ELF object at all');
    expect(() => loadWithLibbpf(junk, 'junk.o', { library: lib })).toThrow("reference: libbpf cannot open junk.o: BPF object format invalid (4001): elf: 'junk.o' is not a proper ELF object");
  });
});

const vmlinux = '/sys/kernel/btf/vmlinux';
const fixture = (n: string) => (n === 'relo_fail' ? `test/reference/fixtures/${n}.bpf.c` : `test/fixtures/${n}.bpf.c`);
/** The fixtures both loaders load in a plain kernel (objects.bpf.c pins a map: it needs a bpffs). */
const OBJECTS = ['core_kernel', 'btf_kinds', 'insns', 'relo_fail'];

describe.runIf(existsSync(vmlinux))('host kernel: our loader, libbpf 1.1 and the current libbpf load the same objects', () => {
  const kernelBtf = () => parseBtf(new Uint8Array(readFileSync(vmlinux)), { source: vmlinux });

  function ours(bytes: Uint8Array, name: string): ProgramOutcome[] {
    const coll = new Collection(loadObjectSpec(bytes, name));
    try {
      coll.load({
        kernelBtf: btf,
        kernelBtfName: vmlinux,
        kconfig: { config: readKernelConfig(release()).config, linuxKernelVersion: linuxKernelVersion() },
        kallsyms: (names) => kallsymsLookup(names),
      });
      return coll.outcomes.map((o) => ({ ...o }));
    } finally {
      coll.close();
    }
  }
  let btf: ReturnType<typeof parseBtf>;

  for (const n of OBJECTS) {
    it(`${n}.bpf.o: same verdicts and translated instructions`, () => {
      btf ??= kernelBtf();
      const path = compileBpf(fixture(n));
      const bytes = new Uint8Array(readFileSync(path));
      const mine = ours(bytes, `${n}.bpf.o`);
      const load = (library?: ReferenceLibrary): ReferenceOutcome[] => {
        const r = loadWithLibbpf(bytes, `${n}.bpf.o`, { library });
        r.close();
        return r.outcomes;
      };
      const debian = load();
      const current = load(lib);
      expect(current.map((o) => o.libbpf)).toEqual(current.map(() => `libbpf ${cur.version} (${cur.source})`));
      expect(debian.map((o) => o.libbpf)).toEqual(debian.map(() => `libbpf ${libbpfInfo().major}.${libbpfInfo().minor} (system libbpf.so.1)`));
      expect(current.map((o) => o.name)).toEqual(mine.map((o) => o.name));
      const lines: string[] = [];
      for (const p of mine) {
        const c = current.find((o) => o.name === p.name)!;
        const d = debian.find((o) => o.name === p.name)!;
        const vsOurs = compareOutcomes(p, c);
        // libbpf against libbpf: verdicts and xlated only (the relocation log formats are libbpf's own).
        const vsDebian = compareOutcomes({ ...d, relocations: undefined }, c);
        lines.push(`${cur.version} vs ours: ${vsOurs.line}`, `${cur.version} vs 1.1: ${vsDebian.line}`);
        expect(vsOurs.verdict, vsOurs.line).toBe('same');
        expect(vsDebian.verdict, vsDebian.line).toBe('same');
      }
      // At least one program of the object really went through the kernel with the current libbpf.
      if (n !== 'insns') expect(current.some((o) => o.status === 'loaded' && o.xlated)).toBe(true);
      console.log(`[measure] ${n}: ${current.map((o) => `${o.name} ${o.status} in ${o.loadMs} ms`).join(', ')}\n  ${lines.join('\n  ')}`);
    }, 60_000);
  }

});
