// `matrix --exec … --files …` on arm64 kernels (issue 19): the files go as given; an ELF program or
// library decides by its machine: an aarch64 one gets the libraries it needs from Debian's arm64
// packages (read from its own DT_NEEDED, not ldd), an x86-64 one on an arm64 kernel is refused
// before anything boots. Shell scripts run as they are.
//
// The program is nobody's here: Debian trixie's arm64 bpftool, fetched through the arm64 apt state
// and unpacked, run through the real CLI on 6.1-arm64 and 7.3-arm64 (TCG). Witnesses that are not
// our code: binutils' readelf (the program's NEEDED list, the shipped library's machine and
// soname), dpkg-deb, and in the guests `uname -m`, bpftool's own version and its probes of the
// kernel (the kernel's answers).
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AptState } from '../../harness/kernels/apt.js';
import { fileHash } from '../../harness/images/base.js';
import { archUserland } from '../../harness/images/arm64-userland.js';
import { packagesForSoname } from '../../harness/images/arch-exec-libraries.js';
import { planExecOn } from '../../harness/matrix/exec.js';
import { repoRoot } from '../../harness/paths.js';
import type { CellResult, KernelRun, RunReport } from '../../harness/results.js';

const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), 'cm-arm64-exec-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** `corematrix matrix <args>` as a user runs it. */
async function cli(args: string[]): Promise<{ status: number; stdout: string; stderr: string; wallMs: number }> {
  const t0 = performance.now();
  const r = await run(process.execPath, ['bin/corematrix.js', 'matrix', ...args], { cwd: repoRoot(), maxBuffer: 64 << 20, env: { ...process.env, CI: '' } })
    .then((x) => ({ status: 0, stdout: x.stdout, stderr: x.stderr }))
    .catch((e: { code?: number; stdout?: string; stderr?: string }) => ({ status: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }));
  return { ...r, wallMs: Math.round(performance.now() - t0) };
}

/** readelf's NEEDED names and SONAME of a file (binutils reads any arch). */
function readelfDynamic(file: string): { needed: string[]; soname?: string; machine: string } {
  const d = execFileSync('readelf', ['-d', file], { encoding: 'utf8' });
  const h = execFileSync('readelf', ['-h', file], { encoding: 'utf8' });
  const soname = /\(SONAME\)\s+Library soname: \[([^\]]+)\]/.exec(d)?.[1];
  return { needed: [...d.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!), ...(soname ? { soname } : {}), machine: /Machine:\s+(.+)/.exec(h)![1]!.trim() };
}

/** Debian trixie's arm64 bpftool, downloaded through the arm64 apt state and unpacked (dpkg-deb -x). */
let bpftool: { path: string; version: string };
beforeAll(async () => {
  const apt = new AptState({ arch: 'arm64' });
  await apt.ensure(['trixie']);
  const row = (await apt.madison(['bpftool'])).find((r) => r.name === 'bpftool' && r.suite === 'trixie')!;
  const deb = await apt.keptDownload('bpftool', row.version);
  const dir = join(tmp, 'bpftool-deb');
  execFileSync('dpkg-deb', ['-x', deb, dir]);
  bpftool = { path: join(dir, 'usr/sbin/bpftool'), version: row.version };
}, 300_000);

describe('before boot (no guest)', () => {
  it("an x86-64 program on an arm64 kernel: the CLI refuses it with one line naming the file and the kernels (exit 2), and fetches nothing", async () => {
    const r = await cli(['--kernels', '6.1-arm64,7.3-arm64', '--suites', 'none', '--exec', '/usr/sbin/bpftool version', '--files', '/usr/sbin/bpftool', '--out', join(tmp, 'refused')]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('--files: /usr/sbin/bpftool is an x86_64 ELF file; arm64 kernels (6.1-arm64, 7.3-arm64) cannot run it: give its arm64 build with --files arm64:<path>');
    // The witness: binutils says what the host's bpftool is.
    expect(readelfDynamic('/usr/sbin/bpftool').machine).toMatch(/X86-64/);
  }, 120_000);

  it('an aarch64 program on an amd64 kernel is refused the same way; --files arm64:<path> ships it to the arm64 kernels only, in place of the plain one', async () => {
    const r = await cli(['--kernels', '6.1', '--suites', 'none', '--exec', 'bpftool version', '--files', bpftool.path, '--out', join(tmp, 'refused-amd64')]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain(`--files: ${bpftool.path} is an aarch64 ELF file; amd64 kernels (6.1) cannot run it: give its amd64 build with --files amd64:<path>`);
    const o = { command: '/usr/sbin/bpftool version', files: ['/usr/sbin/bpftool'], filesFor: [{ arch: 'arm64' as const, path: bpftool.path }], timeoutMs: 60_000 };
    const [amd, arm] = [await planExecOn('amd64', o), await planExecOn('arm64', o)];
    expect(amd.files.find((f) => f.path === '/cm/files/bpftool')?.source).toBe('/usr/sbin/bpftool');
    expect(arm.files.find((f) => f.path === '/cm/files/bpftool')?.source).toBe(bpftool.path);
    // The same command, the same guest path, each arch's own program (and its sha256 in the cell).
    expect([amd.plan.command, arm.plan.command]).toEqual(['/cm/files/bpftool version', '/cm/files/bpftool version']);
    expect([amd.plan.object.sha256, arm.plan.object.sha256]).toEqual([fileHash('/usr/sbin/bpftool'), fileHash(bpftool.path)]);
  }, 120_000);

  it("the arm64 bpftool's libraries: each NEEDED name readelf lists is in the arm64 image or shipped from Debian's arm64 package its name gives", async () => {
    const plan = await planExecOn('arm64', { command: 'bpftool version', files: [bpftool.path], timeoutMs: 60_000 }, { kernels: ['6.1-arm64'] });
    const { needed, machine } = readelfDynamic(bpftool.path);
    expect(machine).toBe('AArch64');
    const base = await archUserland('arm64', { extraPackages: ['libbpf1'] });
    const inBase = new Set(base.files.map((f) => f.guest.split('/').pop()!));
    const shipped = new Map(plan.files.filter((f) => f.path.startsWith('/usr/lib/aarch64-linux-gnu/')).map((f) => [f.path.split('/').pop()!, f.source!]));
    for (const lib of needed) expect(inBase.has(lib) || shipped.has(lib), lib).toBe(true);
    // bpftool needs libcap.so.2, which node does not: it comes from libcap2 (trixie, arm64).
    expect(packagesForSoname('libcap.so.2')).toEqual(['libcap2', 'libcap2t64']);
    expect([...shipped.keys()]).toEqual(['libcap.so.2']);
    const cap = readelfDynamic(shipped.get('libcap.so.2')!);
    expect([cap.machine, cap.soname]).toEqual(['AArch64', 'libcap.so.2']);
    expect(shipped.get('libcap.so.2')).toMatch(/\/libcap2_[^/]+\//);
    expect(plan.libraries).toEqual(['/usr/lib/aarch64-linux-gnu/libcap.so.2']);
  }, 300_000);

  it('a shell script is shipped as it is, with nothing added', async () => {
    const dir = join(tmp, 'scripts');
    mkdirSync(dir);
    writeFileSync(join(dir, 'probe.sh'), '#!/bin/sh\nuname -m\n');
    chmodSync(join(dir, 'probe.sh'), 0o755);
    const plan = await planExecOn('arm64', { command: 'sh probe.sh', files: [dir], timeoutMs: 60_000 });
    expect(plan.files.map((f) => f.path)).toEqual(['/cm/files/scripts/probe.sh']);
    expect(plan.libraries).toEqual([]);
  });

  it('a library no arm64 package has by its name is one line naming the program, the library and the packages tried', async () => {
    // The arm64 bpftool renamed its libcap need: the copy asks for libnoc.so.7.
    const bytes = readFileSync(bpftool.path);
    const at = bytes.indexOf(Buffer.from('libcap.so.2\0'));
    expect(at).toBeGreaterThan(0);
    Buffer.from('libnoc.so.7\0').copy(bytes, at);
    const dir = join(tmp, 'renamed');
    mkdirSync(dir);
    writeFileSync(join(dir, 'bpftool'), bytes, { mode: 0o755 });
    expect(readelfDynamic(join(dir, 'bpftool')).needed).toContain('libnoc.so.7');
    await expect(planExecOn('arm64', { command: './bpftool', files: [dir], timeoutMs: 60_000 })).rejects.toThrow(
      `--files: ${join(dir, 'bpftool')} needs libnoc.so.7, which no arm64 package found in trixie has (tried libnoc7, libnoc7t64): name its package with --exec-packages <pkg>, or ship it in --files beside the program with a RUNPATH of $ORIGIN`,
    );
  }, 120_000);
});

describe("Debian's arm64 bpftool in arm64 guests (TCG)", () => {
  let report: RunReport;
  let r: Awaited<ReturnType<typeof cli>>;
  const out = join(tmp, 'guests');
  // The host path of the unpacked program as the command's first word: run from where --files shipped it.
  // (Only the first word is rewritten; the rest finds the shipped bpftool on PATH, /cm/files first.)
  const command = () => `${bpftool.path} version && uname -m && bpftool feature probe kernel > /tmp/probe && grep -E "^eBPF program_type " /tmp/probe`;
  beforeAll(async () => {
    r = await cli(['--kernels', '6.1-arm64,7.3-arm64', '--suites', 'none', '--loader', 'ours', '--jobs', '1', '--accel', 'tcg', '--exec', command(), '--files', bpftool.path, '--out', out]);
    report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as RunReport;
    const cell = (k: KernelRun) => k.cells.find((c) => c.suite.startsWith('exec:'));
    console.log(`[measure] arm64 bpftool via the CLI: ${r.wallMs} ms wall; ${report.kernels.map((k) => `${k.kernel.id} guest ${k.durationMs} ms, command ${cell(k)?.timings.runMs} ms`).join('; ')}; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  }, 900_000);

  const execCell = (k: KernelRun): CellResult => k.cells.find((c) => c.suite.startsWith('exec:'))!;

  it('exits 0: bpftool runs on both arm64 kernels (aarch64), says its version, and probes each kernel', () => {
    expect(r.status, `${r.stdout}\n${r.stderr.split('\n').slice(-30).join('\n')}\n${report.kernels.map((k) => `${k.kernel.id}: ${execCell(k)?.reason}\n${execCell(k)?.output?.tail}`).join('\n')}`).toBe(0);
    expect(r.stderr).toContain("exec: arm64 libraries from Debian's arm64 packages: libcap.so.2 (libcap2 ");
    expect(report.kernels.map((k) => [k.kernel.id, k.kernel.arch, k.guest])).toEqual([['6.1-arm64', 'arm64', 'ok'], ['7.3-arm64', 'arm64', 'ok']]);
    const upstream = /^(\d+\.\d+\.\d+)\+/.exec(bpftool.version)![1]!;
    for (const k of report.kernels) {
      const c = execCell(k);
      expect([k.kernel.id, c.verdict, c.reason]).toEqual([k.kernel.id, 'pass', undefined]);
      expect(c.object).toEqual({ name: 'bpftool', sha256: fileHash(bpftool.path) });
      const lines = c.output!.tail.split('\n');
      expect(lines[0]).toBe(`bpftool v${upstream}`);
      expect(lines).toContain('aarch64');
      expect(lines).toContain('eBPF program_type kprobe is available');
    }
  });

  it("bpftool's answers differ where the kernels do: BPF_PROG_TYPE_NETFILTER came in 6.4", () => {
    const [old, cur] = report.kernels.map((k) => new Set(execCell(k).output!.tail.split('\n')));
    expect(old!.has('eBPF program_type netfilter is NOT available')).toBe(true);
    expect(cur!.has('eBPF program_type netfilter is available')).toBe(true);
    console.log(`[measure] bpftool answers 7.3-arm64 has and 6.1-arm64 does not: ${[...cur!].filter((l) => !old!.has(l)).join('; ')}`);
  });
});
