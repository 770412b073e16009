// The cross-kernel diff on real relocations of one clang-built object against four real kernels:
// offsets must differ where the kernels differ (checked against pahole), the object and the local
// side must not, and every injected inconsistency must be flagged.
import { beforeAll, describe, expect, it } from 'vitest';
import { diffKernels, formatKernelDiff, formatRow, type KernelDiff } from '../../harness/report/diff.js';
import type { RunReport } from '../../harness/results.js';
import { buildGrid } from '../../harness/report/grid.js';
import { clone, KERNELS, realRun, type KernelFacts } from './fixture.js';

let run: RunReport;
let facts: Map<string, KernelFacts>;
let d: KernelDiff;

beforeAll(async () => {
  ({ run, facts } = await realRun());
  d = diffKernels(run);
}, 600_000);

const row = (diff: KernelDiff, subject: string) => diff.groups.flatMap((g) => g.rows).find((r) => r.subject === subject);

describe('diffKernels on a real run', () => {
  it('holds every must-equal invariant and flags nothing', () => {
    expect(d.violations).toEqual([]);
    expect(d.unexpected).toEqual([]);
    expect(d.ok).toBe(true);
    expect(d.invariants.checked).toBeGreaterThan(20);
    expect(d.invariants.held).toBe(d.invariants.checked);
    expect(d.groups).toHaveLength(1);
    expect(d.groups[0]!.sha256).toHaveLength(1);
    expect(d.groups[0]!.kernels).toEqual(KERNELS);
  });

  it('shows task_struct.pid at each kernel\'s own offset (pahole\'s), same object everywhere', () => {
    const pid = row(d, 'task_struct.pid byte_off')!;
    expect(pid).toBeDefined();
    expect(pid.local).toBe(0);
    const expected = KERNELS.map((id) => `${id} → ${facts.get(id)!.pahole.offsets.get('pid')}`).join(', ');
    expect(formatRow(pid)).toBe(`task_struct.pid byte_off: ${expected}`);
    expect(new Set(pid.values.map((v) => v.value)).size).toBeGreaterThan(1);
    expect(pid.differs).toBe(true);
    expect(d.expected).toContain(pid);
    // and the observed value equals pahole's on every kernel (the checks)
    for (const k of run.kernels) expect(k.cells[0]!.checks.find((c) => c.name === 'offsetof(task_struct, pid)')!.ok).toBe(true);
  });

  it('shows the renamed field: __state poisoned exactly where state resolves', () => {
    const cur = row(d, 'task_struct.__state byte_off')!;
    const old = row(d, 'task_struct___old.state byte_off')!;
    for (const id of KERNELS) {
      const hasState = facts.get(id)!.pahole.offsets.has('__state');
      const c = cur.values.find((v) => v.kernel === id)!.value;
      const o = old.values.find((v) => v.kernel === id)!.value;
      expect(hasState ? o : c).toBe('poisoned');
      expect(hasState ? c : o).toMatch(/^\d+$/);
    }
  });

  it('lists kconfig externs as expected differences (PREEMPT_RT only on 6.1-rt)', () => {
    const rt = row(d, 'CONFIG_PREEMPT_RT')!;
    expect(rt.values.filter((v) => v.value === 'y').map((v) => v.kernel)).toEqual(['6.1-rt']);
    expect(row(d, 'LINUX_KERNEL_VERSION')!.values.find((v) => v.kernel === '5.10')!.value).toMatch(/^5\.10\.\d+ \(\d+\)$/);
    expect(formatKernelDiff(d)).toContain('task_struct.pid byte_off: 5.10 → ');
  });
});

describe('diffKernels flags what it has no reason to expect', () => {
  it('a relocation present on one kernel only', () => {
    const r = clone(run);
    const cell = r.kernels[2]!.cells[0]!;
    const gone = cell.relocations.splice(0, 1)[0]!;
    const x = diffKernels(r);
    expect(x.ok).toBe(false);
    const f = x.unexpected.find((u) => u.what.includes(`insn ${gone.insn}`))!;
    expect(f.what).toContain('missing on 6.1-rt');
    expect(f.kernels).toEqual(['6.1-rt']);
  });

  it('an object sha256 that differs', () => {
    const r = clone(run);
    r.kernels[1]!.cells[0]!.object.sha256 = '0'.repeat(64);
    const x = diffKernels(r);
    expect(x.violations.map((v) => v.what)).toEqual([expect.stringMatching(/^object sha256 differs: .*6\.1 → 000000000000/)]);
  });

  it('a relocation whose local side differs', () => {
    const r = clone(run);
    r.kernels[3]!.cells[0]!.relocations[0]!.local = 8;
    expect(diffKernels(r).violations.some((v) => v.what.includes('local side differs') && v.what.includes('7.3 → 8'))).toBe(true);
  });

  it('a relocation of another kind or field at the same instruction', () => {
    const r = clone(run);
    const rel = r.kernels[0]!.cells[0]!.relocations.find((x) => x.spec === 'tgid')!;
    rel.spec = 'pid';
    rel.access = '0:0';
    const x = diffKernels(r);
    expect(x.violations.map((v) => v.what)).toEqual([expect.stringMatching(/^relocation task_struct\.pid byte_off \(insn \d+\) local side differs: 5\.10 → 4 \(byte_off struct task_struct 0:0 pid\), 6\.1 → 4 \(byte_off struct task_struct 0:1 tgid\)/)]);
    expect(x.unexpected).toEqual([]);
  });

  it('an observed value that is not the ground truth, and a check whose ok flag lies', () => {
    const r = clone(run);
    const ch = r.kernels[0]!.cells[0]!.checks[0]!;
    ch.observed = (ch.truth as number) + 8;
    const x = diffKernels(r);
    expect(x.violations.some((v) => v.kernels[0] === '5.10' && v.what.startsWith(`check ${ch.name}`))).toBe(true);
    expect(x.unexpected.some((u) => u.what.includes('says ok=true'))).toBe(true);
  });

  it('a verdict that differs without a declared reason, but not with one', () => {
    const r = clone(run);
    r.kernels[0]!.cells[0]!.verdict = 'error';
    expect(diffKernels(r).unexpected.some((u) => u.what.startsWith('verdict differs without a declared reason') && u.kernels[0] === '5.10')).toBe(true);
    r.kernels[0]!.cells[0]!.reason = 'agent: BPF_PROG_LOAD: EINVAL';
    const y = diffKernels(r);
    expect(y.unexpected.filter((u) => u.what.startsWith('verdict'))).toEqual([]);
    expect(y.expected.find((e) => e.kind === 'verdict')!.values[0]).toMatchObject({ kernel: '5.10', value: 'error', note: 'agent: BPF_PROG_LOAD: EINVAL' });
  });

  it('a missing cell on a guest that ended ok, but not on one that panicked', () => {
    const r = clone(run);
    r.kernels[1]!.cells = [];
    expect(diffKernels(r).unexpected.map((u) => u.what)).toEqual([expect.stringContaining('no result on 6.1 although the guest ended ok')]);
    r.kernels[1]!.guest = 'panic';
    expect(diffKernels(r).unexpected).toEqual([]);
  });

  it('an extern resolved on some kernels only', () => {
    const r = clone(run);
    r.kernels[3]!.cells[0]!.externs.pop();
    expect(diffKernels(r).unexpected.some((u) => /^extern \w+ resolved on .* missing on 7\.3$/.test(u.what))).toBe(true);
  });

  it('a program that ran on some kernels and attached but never ran on another; differing run counts are expected', () => {
    const r = clone(run);
    r.kernels.forEach((k, i) => (k.cells[0]!.attach = { status: 'attached', via: 'kprobe PMU', target: 'kprobe do_unlinkat', runCount: i + 1 }));
    const same = diffKernels(r);
    expect(same.unexpected).toEqual([]);
    expect(same.expected.find((e) => e.kind === 'attach')!.values.map((v) => v.value)).toEqual(KERNELS.map((_, i) => `ran ${i + 1}`));
    r.kernels[3]!.cells[0]!.attach!.runCount = 0;
    const x = diffKernels(r);
    expect(x.unexpected.map((u) => u.what)).toEqual([`ran on ${KERNELS.slice(0, 3).join(', ')}, attached but never ran on 7.3`]);
    expect(x.unexpected[0]!.kernels).toEqual(['7.3']);
    // and the grid shows that square in its own state, naming the program
    const g = buildGrid(r, diffKernels({ ...r, kernels: r.kernels.slice(3) }));
    const sq = g.at('7.3', r.kernels[3]!.cells[0]!.suite);
    expect(sq.state).toBe('silent');
    expect(sq.note).toBe(`attached, never ran: ${r.kernels[3]!.cells[0]!.program}`);
  });
});
