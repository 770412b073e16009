// The public corpora on an arm64 kernel, run as a user runs them:
// `corematrix matrix --corpus debian --corpus selftests:1/40 --kernels 6.1-arm64 --suites none
// --loader both`. Each corpus is built for the run's arch (harness/corpus/per-arch.ts): Debian's
// objects come from the arm64 packages (libxdp1:arm64, xdp-tests:arm64), the selftests are compiled
// with the Makefile's arm64 flags against a vmlinux.h of an arm64 kernel. The current libbpf, cross
// built for arm64, loads the same objects in the same guest: every program is compared; ours
// refuses nothing libbpf loads; where both load, the translated instructions are identical. The
// selftests objects that ran are the arm64 builds (each cell's sha256), and those whose BTF shows
// an arch (bpf_tracing.h's register types) show arm64's `user_pt_regs`, where their amd64 builds
// show x86's `pt_regs`.
//
// Host part (no guest): how a run of both arches gets each corpus (one object where the builds are
// the same bytes, each arch's own build otherwise), and that the matrix reads those as one row per
// object on each arch (needs readUserObjects to read `<arch>:` corpus objects).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { debianObjects, type DebianObjects } from '../../harness/corpus/debian-objects.js';
import { kernelSelftests, sliceOf, systemIncludes, type KernelSelftests } from '../../harness/corpus/kernel-selftests.js';
import { corpusArgs, selftestsSlice } from '../../harness/corpus/per-arch.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { BUILT_FOR_CHECK, objectBuiltFor, objectsOnArch } from '../../harness/matrix/arch-objects.js';
import { readUserObjects } from '../../harness/matrix/run.js';
import { WHOLE_OBJECT, type CellResult, type RunReport } from '../../harness/results.js';

const SLICE = sliceOf(1, 40);
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const programsOf = (path: string): string[] => {
  try {
    return loadObjectSpec(readFileSync(path), path).programs.map((p) => p.name);
  } catch {
    return [WHOLE_OBJECT];
  }
};

/** What a libbpf cell says of the comparison: same, only one side loaded, or another difference. */
const kind = (c: CellResult) => (c.verdict === 'pass' ? 'same' : /ours loaded, libbpf/.test(c.reason ?? '') ? 'only-ours' : /libbpf loaded, ours/.test(c.reason ?? '') ? 'only-libbpf' : 'differs');

/** The programs xdpdump configures at run time (fentry/fexit on the XDP program it traces): both loaders refuse them as shipped. */
const CONFIGURED_AT_RUN_TIME = new Set(['xdpdump_bpf.o trace_on_entry', 'xdpdump_bpf.o trace_on_exit']);

describe('corpora built per arch (host)', () => {
  let debian: Record<'amd64' | 'arm64', DebianObjects>;
  let selftests: Record<'amd64' | 'arm64', KernelSelftests>;
  beforeAll(async () => {
    debian = { amd64: await debianObjects(), arm64: await debianObjects(undefined, 'arm64') };
    selftests = { amd64: await kernelSelftests({ only: SLICE }), arm64: await kernelSelftests({ only: SLICE, arch: 'arm64' }) };
  }, 1_200_000);

  it("takes Debian's objects from the arm64 packages: the same files, byte-identical to amd64's, shipped once", () => {
    expect(debian.arm64.packages.map((p) => p.name)).toEqual(['libxdp1', 'xdp-tests']);
    expect(debian.arm64.objects.map((o) => o.name)).toEqual(debian.amd64.objects.map((o) => o.name));
    // Their own files (the arm64 packages' cache), with the amd64 files' bytes.
    for (const [i, o] of debian.arm64.objects.entries()) {
      expect(o.path).not.toBe(debian.amd64.objects[i]!.path);
      expect(sha256(o.path), o.name).toBe(sha256(debian.amd64.objects[i]!.path));
    }
    const a = corpusArgs([{ arch: 'amd64', paths: debian.amd64.objects.map((o) => o.path) }, { arch: 'arm64', paths: debian.arm64.objects.map((o) => o.path) }]);
    expect(a.shared).toBe(debian.amd64.objects.length);
    expect(a.args).toEqual(debian.amd64.objects.map((o) => o.path));
  });

  it('compiles the selftests for arm64 with its own define, system headers and vmlinux.h', () => {
    expect(selftests.arm64.vmlinux).toMatch(/-arm64 \(linux-binary-\S+-arm64 /);
    expect(selftests.amd64.vmlinux).not.toMatch(/arm64/);
    expect(systemIncludes('arm64').some((d) => /aarch64-linux-gnu/.test(d))).toBe(true);
    expect(selftests.arm64.objects.map((o) => o.name)).toEqual(selftests.amd64.objects.map((o) => o.name));
    // What shows an arch in its BTF shows its own: x86's pt_regs for amd64, arm64's user_pt_regs for arm64.
    const shown = (s: KernelSelftests) => s.objects.flatMap((o) => {
      const b = objectBuiltFor(loadObjectSpec(readFileSync(o.path), o.path).btf);
      return b ? [`${o.name} ${b.arch}: ${b.evidence}`] : [];
    });
    expect(shown(selftests.arm64).length).toBeGreaterThanOrEqual(2);
    for (const s of shown(selftests.arm64)) expect(s).toMatch(/ arm64: struct user_pt_regs has regs\[\]$/);
    expect(shown(selftests.amd64).map((s) => s.split(' ')[0])).toEqual(shown(selftests.arm64).map((s) => s.split(' ')[0]));
    for (const s of shown(selftests.amd64)) expect(s).toMatch(/ amd64: struct pt_regs has di, si$/);
  });

  it('gives a run of both arches each arch its own build of what differs, one object for what does not, in one row per object', () => {
    const builds = (['amd64', 'arm64'] as const).map((arch) => ({ arch, paths: selftests[arch].objects.map((o) => o.path) }));
    const a = corpusArgs(builds);
    const differ = selftests.amd64.objects.filter((o, i) => sha256(o.path) !== sha256(selftests.arm64.objects[i]!.path));
    expect(differ.length).toBeGreaterThanOrEqual(10);
    expect(a.own).toEqual({ amd64: differ.length, arm64: differ.length });
    expect(a.shared).toBe(selftests.amd64.objects.length - differ.length);
    expect(a.args.filter((x) => x.startsWith('arm64:')).map((x) => basename(x))).toEqual(differ.map((o) => `${o.name}.bpf.o`));
    // The matrix reads them as it reads --object arm64:<file> beside <file>: one row per object name,
    // each arch's kernels loading that arch's build.
    const read = readUserObjects(a.args, new Map(), { lenient: true });
    for (const arch of ['amd64', 'arm64'] as const) {
      const on = objectsOnArch(read, arch);
      expect(on.map((u) => u.name).sort(), arch).toEqual(selftests[arch].objects.map((o) => `${o.name}.bpf.o`).sort());
      for (const u of on) expect(u.sha256, `${arch} ${u.name}`).toBe(sha256(selftests[arch].objects.find((o) => `${o.name}.bpf.o` === u.name)!.path));
    }
  });
});

describe('corpusArgs: which build each arch gets', () => {
  it('ships one file where the builds are the same bytes, each arch its own where they differ, and an object only where it was built', () => {
    const d = mkdtempSync(join(tmpdir(), 'cm-corpus-args-'));
    const file = (arch: string, name: string, bytes: string) => {
      mkdirSync(join(d, arch), { recursive: true });
      writeFileSync(join(d, arch, name), bytes);
      return join(d, arch, name);
    };
    const same = [file('amd64', 'same.o', 'x'), file('arm64', 'same.o', 'x')];
    const differ = [file('amd64', 'differ.o', 'x86'), file('arm64', 'differ.o', 'arm64')];
    const amd64Only = file('amd64', 'only.o', 'y');
    const a = corpusArgs([{ arch: 'amd64', paths: [same[0]!, differ[0]!, amd64Only] }, { arch: 'arm64', paths: [same[1]!, differ[1]!] }]);
    expect(a.args).toEqual([same[0], `amd64:${differ[0]}`, `arm64:${differ[1]}`, `amd64:${amd64Only}`]);
    expect(a).toMatchObject({ shared: 1, own: { amd64: 2, arm64: 1 }, partial: [{ name: 'only.o', arches: ['amd64'] }] });
    // One arch: its files as they are.
    expect(corpusArgs([{ arch: 'arm64', paths: [same[1]!, differ[1]!] }]).args).toEqual([same[1], differ[1]]);
    expect(() => selftestsSlice('selftests:3/2')).toThrow(/the slice must be N\/M with 1 <= N <= M/);
    expect(selftestsSlice('selftests:1/40')).toEqual({ n: 1, m: 40 });
  });
});

describe('debian and selftests:1/40 on 6.1-arm64, both loaders', () => {
  let debian: DebianObjects;
  let selftests: KernelSelftests;
  let report: RunReport;
  let out = '';
  let log = '';
  let wallMs = 0;
  const dir = mkdtempSync(join(tmpdir(), 'cm-corpus-arm64-'));

  beforeAll(async () => {
    debian = await debianObjects(undefined, 'arm64');
    selftests = await kernelSelftests({ only: SLICE, arch: 'arm64' });
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '6.1-arm64', '--suites', 'none', '--corpus', 'debian', '--corpus', 'selftests:1/40', '--loader', 'both', '--jobs', '1', '--accel', 'tcg', '--out', dir], { encoding: 'utf8', env: { ...process.env, CI: '1' } });
    wallMs = performance.now() - t0;
    out = `${r.stdout}\n${r.stderr.slice(-4000)}`;
    log = r.stderr;
    report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as RunReport;
    // The measurements the docs quote (docs/arm64.md, "Corpora on arm64").
    for (const k of report.kernels) {
      const lib = k.cells.filter((c) => c.loader === 'libbpf');
      const loaded = (c: CellResult) => c.checks[0]?.observed === 'loaded';
      const count = (f: (c: CellResult) => boolean) => lib.filter(f).length;
      process.stdout.write(
        `corpus-arm64: ${k.kernel.id}: ${lib.length} programs, both loaded identical ${count((c) => kind(c) === 'same' && loaded(c))}, both refused ${count((c) => kind(c) === 'same' && !loaded(c))}, ` +
          `ours only ${count((c) => kind(c) === 'only-ours')}, libbpf only ${count((c) => kind(c) === 'only-libbpf')}, other differences ${count((c) => kind(c) === 'differs')}; ` +
          `guest ${(k.durationMs / 1000).toFixed(1)} s, wall ${(wallMs / 1000).toFixed(1)} s\n`,
      );
    }
  }, 1_800_000);

  it('boots the guest to the end and gives every program of every object both loaders\' cells', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(['6.1-arm64:ok']);
    expect(log).toMatch(/corpus selftests for arm64: .*vmlinux\.h of 7\.3-arm64 /);
    expect(log).toMatch(/corpus debian for arm64: libxdp1 \S+ \(\w+\), xdp-tests \S+ \(\w+\): \d+ objects/);
    const programs = [...debian.objects.map((o) => o.path), ...selftests.objects.map((o) => o.path)].flatMap((p) => programsOf(p).map((n) => `${basename(p)} ${n}`)).sort();
    expect(programs.length).toBeGreaterThanOrEqual(100);
    const k = report.kernels[0]!;
    for (const loader of ['ours', 'libbpf'] as const) {
      expect(k.cells.filter((c) => c.loader === loader).map((c) => `${c.object.name} ${c.program}`).sort(), loader).toEqual(programs);
    }
    expect(k.cells.filter((c) => c.verdict === 'error' && /^not run/.test(c.reason ?? '')).map((c) => `${c.object.name} ${c.program}: ${c.reason}`)).toEqual([]);
  });

  it('ran the arm64 builds: the cells carry their sha256, and no cell says another arch was built', () => {
    const k = report.kernels[0]!;
    const files = new Map([...debian.objects.map((o) => o.path), ...selftests.objects.map((o) => o.path)].map((p) => [basename(p), sha256(p)]));
    for (const c of k.cells) expect(c.object.sha256, `${c.object.name} ${c.program}`).toBe(files.get(c.object.name));
    expect(k.cells.filter((c) => c.checks.some((x) => x.name === BUILT_FOR_CHECK)).map((c) => `${c.object.name}: ${c.reason}`)).toEqual([]);
    // The selftests that show an arch in their BTF (arm64's user_pt_regs) ran; both loaders agree
    // on each of their programs, and loaded some (BPF_UPROBE's arguments read from regs[]).
    const shown = new Set(selftests.objects.filter((o) => objectBuiltFor(loadObjectSpec(readFileSync(o.path), o.path).btf)?.arch === 'arm64').map((o) => `${o.name}.bpf.o`));
    expect(shown.size).toBeGreaterThanOrEqual(2);
    const lib = k.cells.filter((c) => c.loader === 'libbpf' && shown.has(c.object.name));
    expect(new Set(lib.map((c) => c.object.name))).toEqual(shown);
    for (const c of lib) expect(c.verdict, `${c.object.name} ${c.program}: ${c.reason}`).toBe('pass');
    expect(lib.filter((c) => c.checks[0]?.observed === 'loaded' && c.xlated).length).toBeGreaterThanOrEqual(1);
  });

  it('ours refuses nothing libbpf loads, and the translated instructions are identical wherever both load', () => {
    const k = report.kernels[0]!;
    const lib = k.cells.filter((c) => c.loader === 'libbpf');
    const byKind = (x: string) => lib.filter((c) => kind(c) === x);
    expect(byKind('only-libbpf').map((c) => `${c.object.name} ${c.program}: ${c.reason}`)).toEqual([]);
    // A struct_ops table setting a callback the kernel lacks (6.1's bpf_dummy_ops has no
    // test_sleepable: dummy_st_ops_success) is refused whole by both, before any program loads.
    expect(byKind('differs').map((c) => `${c.object.name} ${c.program}: ${c.reason}`)).toEqual([]);
    // Where ours alone loaded, libbpf's failure is its attribution, never the verifier's verdict.
    for (const c of byKind('only-ours')) expect(c.reason, `${c.object.name} ${c.program}`).toMatch(/libbpf cannot load it alone \(per-program attribution after the whole object failed\)/);
    const bothLoaded = byKind('same').filter((c) => c.checks[0]?.observed === 'loaded' && c.checks[0]?.truth === 'loaded');
    expect(bothLoaded.length).toBeGreaterThanOrEqual(40);
    for (const c of bothLoaded) expect(c.xlated, `${c.object.name} ${c.program}`).toBeTruthy();
    // Debian's objects: every program both loaders agree on, ours failing only what xdpdump configures at run time.
    const deb = new Set(debian.objects.map((o) => basename(o.path)));
    expect(lib.filter((c) => deb.has(c.object.name) && c.verdict !== 'pass').map((c) => `${c.object.name} ${c.program}: ${c.reason}`)).toEqual([]);
    const oursFailed = k.cells.filter((c) => c.loader === 'ours' && deb.has(c.object.name) && c.verdict !== 'pass');
    expect(new Set(oursFailed.map((c) => `${c.object.name} ${c.program}`))).toEqual(CONFIGURED_AT_RUN_TIME);
  });
});
