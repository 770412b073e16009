// freplace against a program of the same object, as a tool does it (load the target, then the
// replacement with bpf_program__set_attach_target(prog, target's fd, function)), configured by an
// object config's `target-program`, in real 5.10 and 7.3 guests (TCG):
//  - through the matrix CLI with both loaders: both load both programs with the same translated
//    code, attach the replacement, and the cell says its runs are counted on its target (the
//    kernel keeps no run statistics for a replacement); without the config, both refuse it;
//  - in a guest script (fixtures/guest-freplace.ts): the programs' own counters, read back from
//    the kernel, show the replacement answering every call of the target once attached, and the
//    original function no longer called, for ours and for the current libbpf.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInitramfs } from '../../harness/images/initramfs.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { currentLibbpf, type CurrentLibbpf } from '../../harness/reference/build.js';
import type { CellResult, RunReport } from '../../harness/results.js';
import { runGuest } from '../../harness/vm/qemu.js';
import { bundleGuestScript } from '../helpers/guest-script.js';
import { compileBpf } from '../helpers/tools.js';
import type { Report } from './fixtures/guest-freplace.js';

const KERNELS = ['5.10', '7.3'];
/** openat(2) calls the guest script makes while the programs are attached. */
const OPENS = 40;
const CONFIG = 'programs:\n  new_verdict:\n    target-program: on_openat\n';
const tmp = mkdtempSync(join(tmpdir(), 'cm-freplace-'));
let object: string;
let report: RunReport;
let out = '';
let libbpf: CurrentLibbpf;
let agent: string;

beforeAll(async () => {
  object = compileBpf(fileURLToPath(new URL('fixtures/freplace.bpf.c', import.meta.url)));
  copyFileSync(object, join(tmp, 'freplace.bpf.o'));
  writeFileSync(join(tmp, 'freplace.bpf.yaml'), CONFIG); // found beside the object
  copyFileSync(object, join(tmp, 'unconfigured.bpf.o'));
  const r = spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', KERNELS.join(','), '--suites', 'none', '--object', join(tmp, 'freplace.bpf.o'), '--object', join(tmp, 'unconfigured.bpf.o'), '--loader', 'both', '--jobs', '2', '--accel', 'tcg', '--out', join(tmp, 'out')], { encoding: 'utf8', env: { ...process.env, CI: '1' } });
  out = `${r.stdout}\n${r.stderr.slice(-3000)}`;
  report = JSON.parse(readFileSync(join(tmp, 'out', 'report.json'), 'utf8')) as RunReport;
  libbpf = await currentLibbpf();
  agent = await bundleGuestScript(fileURLToPath(new URL('fixtures/guest-freplace.ts', import.meta.url)), join(tmp, 'freplace.mjs'));
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cell = (kernel: string, object: string, loader: 'ours' | 'libbpf', program: string): CellResult =>
  report.kernels.find((k) => k.kernel.id === kernel)!.cells.find((c) => c.object.name === object && c.loader === loader && c.program === program)!;

describe('freplace, through the matrix, both loaders (5.10, 7.3)', () => {
  it('both load target and replacement with the same translated code, and attach the replacement', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(KERNELS.map((k) => `${k}:ok`));
    for (const k of KERNELS) {
      for (const p of ['on_openat', 'new_verdict']) {
        const lib = cell(k, 'freplace.bpf.o', 'libbpf', p);
        expect(lib.verdict, `${k} ${p}: ${lib.reason}`).toBe('pass');
        expect(lib.checks[0]?.observed, `${k} ${p}`).toBe('loaded');
      }
      const ours = cell(k, 'freplace.bpf.o', 'ours', 'new_verdict');
      expect(ours.config).toContain('program new_verdict: replaces verdict of program on_openat');
      const target = cell(k, 'freplace.bpf.o', 'ours', 'on_openat').attach!;
      expect(target.runCount, k).toBeGreaterThan(0);
      // The kernel keeps no run count for a replacement: the cell points at its target's instead.
      expect(ours.attach, k).toMatchObject({ status: 'attached', via: 'BPF_LINK_CREATE', target: 'freplace verdict in on_openat', note: `runs inside on_openat, which the kernel counts instead (it ran ${target.runCount} times)` });
      expect(ours.attach!.runCount).toBeUndefined();
      expect(cell(k, 'freplace.bpf.o', 'libbpf', 'new_verdict').attach, k).toMatchObject({ status: 'attached', via: 'bpf_program__attach' });
    }
  });

  it('without the config nobody names the target program: both loaders refuse the replacement, the target still loads', () => {
    for (const k of KERNELS) {
      const ours = cell(k, 'unconfigured.bpf.o', 'ours', 'new_verdict');
      expect(ours.verdict).toBe('fail');
      expect(ours.reason).toMatch(/freplace needs the program whose function it replaces.*programs\.new_verdict\.target-program/);
      const lib = cell(k, 'unconfigured.bpf.o', 'libbpf', 'new_verdict');
      expect(lib.verdict, `${k}: ${lib.reason}`).toBe('pass'); // the same refusal
      expect(lib.checks[0]?.truth).not.toBe('loaded');
      expect(cell(k, 'unconfigured.bpf.o', 'ours', 'on_openat').verdict).toBe('pass');
    }
  });
});

describe('freplace in a guest script: the replacement answers for the original (5.10, 7.3)', () => {
  for (const id of KERNELS) {
    it(`${id}: ours and libbpf`, async () => {
      const k = await new KernelStore().fetch(id);
      const so = `/usr/lib/corematrix/libbpf/libbpf.so.${libbpf.version}`;
      const files = [
        { path: '/t/freplace.mjs', source: agent },
        { path: '/t/freplace.bpf.o', source: object },
        { path: so, source: libbpf.so },
        { path: '/t/freplace.json', data: JSON.stringify({ so, config: CONFIG, opens: OPENS }) },
      ];
      const initrd = await buildInitramfs({ files, agent: false, kernelConfig: k.config, release: k.release });
      const r = await runGuest({ kernelId: id, vmlinuz: k.vmlinuz, initrd, append: 'cm.agent=/t/freplace.mjs', accel: 'tcg', logDir: join(tmp, 'logs') });
      const log = r.messages.filter((m) => m.t === 'log').map((m) => JSON.stringify(m)).join('\n');
      expect(r.verdict, `${r.detail}\n${log}\n${r.consoleTail}`).toBe('ok');
      const rep = (r.messages.find((m) => m.t === 'result' && m.kind === 'freplace') as { data: Report }).data;
      console.log(`[measure] ${id}: ${JSON.stringify(rep)}`);
      for (const l of [rep.ours, rep.libbpf]) {
        expect(l.error, l.loader).toBeUndefined();
        expect(l.statuses, l.loader).toEqual({ on_openat: 'loaded', new_verdict: 'loaded' });
        expect(l.attach, l.loader).toEqual({ on_openat: 'attached', new_verdict: 'attached' });
        const d = (c: keyof Report['ours']['after']) => l.after[c] - l.before[c];
        // Every openat after attaching went through the replacement (ours: this script's, plus any
        // other process's), and the target saw the replaced answer each time; the original ran no more.
        expect(d('replacement_calls'), l.loader).toBeGreaterThanOrEqual(OPENS);
        expect(d('replaced_answers'), l.loader).toBe(d('replacement_calls'));
        expect(d('original_calls'), l.loader).toBe(0);
      }
    }, 300_000);
  }
});
