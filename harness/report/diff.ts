// The cross-kernel diff of ONE run. The same object runs on every kernel, so some things must be
// identical everywhere (the object's sha256, each relocation's local value and kind/spec/access,
// the check verdicts, observed == truth), some are expected to differ (relocated target values,
// target type ids, kconfig extern values, verifier instruction counts, verdicts with a declared
// reason), and anything else is flagged as unexpected. Plain data in, plain data out.

import type { RelocationRecord } from '../core/relo/report.js';
import { neverRan, type CellResult, type KernelRun, type LoaderName, type RunReport } from '../results.js';
import { compareXlated } from '../reference/compare.js';

export type FindingClass =
  /** Something that must be equal on every kernel is not. */
  | 'violation'
  /** A difference the diff has no reason to expect. */
  | 'unexpected';

export interface Finding {
  class: FindingClass;
  /** `suite/program` (plus `[loader]` when several loaders ran). */
  cell: string;
  /** One line: what differs and where. */
  what: string;
  kernels: string[];
}

/** One value per kernel for one subject (a relocation, an extern, the verifier's instruction count). */
export interface ValueRow {
  cell: string;
  suite: string;
  program: string;
  loader: LoaderName;
  kind: 'relocation' | 'extern' | 'check' | 'verifier' | 'verdict' | 'attach';
  /** e.g. `task_struct.pid byte_off`, `CONFIG_PREEMPT_RT`, `insns processed`. */
  subject: string;
  /** Relocations: the local (compile-time) value, equal everywhere by construction. */
  local?: number;
  /** Instruction indexes (section/insn) this row stands for; relocations with equal values merge. */
  insns?: string[];
  /** Kernel id → value as shown (`2232`, `poisoned`, `y`, `—` when absent). Kernel order = run order. */
  values: { kernel: string; value: string; typeId?: number; note?: string }[];
  /** True when the kernels do not all show the same value. */
  differs: boolean;
}

export interface CellGroup {
  cell: string;
  suite: string;
  program: string;
  loader: LoaderName;
  /** Kernels that produced a result for this cell. */
  kernels: string[];
  sha256: string[];
  rows: ValueRow[];
}

export interface KernelDiff {
  runId: string;
  complete: boolean;
  kernels: string[];
  groups: CellGroup[];
  /** Must-equal invariants checked (one per group and invariant) and how many held. */
  invariants: { checked: number; held: number };
  violations: Finding[];
  unexpected: Finding[];
  /** Rows whose values differ across kernels, as expected (the point of CO-RE). */
  expected: ValueRow[];
  /** True when there is neither a violation nor an unexpected difference. */
  ok: boolean;
}

const OK_VERDICTS = new Set(['pass']);

export function cellLabel(c: { suite: string; program: string; loader: LoaderName }, multiLoader: boolean): string {
  return multiLoader ? `${c.suite}/${c.program}[${c.loader}]` : `${c.suite}/${c.program}`;
}

/** `struct task_struct` + `pid` → `task_struct.pid`; enums read `bpf_map_type::RINGBUF`. */
export function reloSubject(r: Pick<RelocationRecord, 'type' | 'spec' | 'kind'>): string {
  const t = r.type.replace(/^(struct|union) /, '');
  if (/^enum(64)? /.test(r.type)) return `${t}${r.spec ? `::${r.spec}` : ''} ${r.kind}`;
  return `${t}${r.spec ? `.${r.spec}` : ''} ${r.kind}`;
}

/** A relocation's identity inside one object: the same on every kernel. */
export function reloKey(r: RelocationRecord): string {
  return `${r.section}#${r.insn}#${r.kind}#${r.type}#${r.access}`;
}

/** What a relocation resolved to on one kernel, as shown in tables. */
export function reloValue(r: RelocationRecord): string {
  if (r.status === 'ok') return r.target === null ? '—' : String(r.target);
  if (r.status === 'poisoned') return (r as { reachable?: boolean }).reachable === true ? 'poisoned (reachable!)' : 'poisoned';
  return `error: ${r.error ?? 'unresolved'}`;
}

/** An extern's value as shown: y/n for booleans, a.b.c for LINUX_KERNEL_VERSION. */
export function externValue(name: string, v: string | number | boolean | null): string {
  if (v === null) return 'unset';
  if (name === 'LINUX_KERNEL_VERSION' && typeof v === 'number') return `${v >>> 16}.${(v >>> 8) & 255}.${v & 255} (${v})`;
  if (typeof v === 'boolean') return v ? 'y' : 'n';
  return String(v);
}

/** Structural equality for check values (JSON-like data). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  // BPF reports C truth values as 0/1; ground truth may be a boolean.
  if (typeof a === 'boolean' && typeof b === 'number') return Number(a) === b;
  if (typeof b === 'boolean' && typeof a === 'number') return Number(b) === a;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') {
    // 64-bit values travel as strings or numbers: compare by value when both are integers
    if ((typeof a === 'number' || typeof a === 'string') && (typeof b === 'number' || typeof b === 'string')) {
      try {
        return /^-?\d+$/.test(String(a)) && /^-?\d+$/.test(String(b)) && BigInt(a) === BigInt(b);
      } catch {
        return false;
      }
    }
    return false;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function showValue(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v) ?? 'undefined';
}

function allEqual(values: string[]): boolean {
  return values.every((v) => v === values[0]);
}

/** The arch of a cell's kernel (amd64 when the report names none): each arch's guests load that arch's objects. */
function archOfKernel(k: { arch?: string }): string {
  return k.arch ?? 'amd64';
}

/** Cells compare with the cells of the same suite, program and loader on kernels of the same arch. */
function groupKey(c: CellResult): string {
  return `${c.suite}\0${c.program}\0${c.loader}\0${archOfKernel(c.kernel)}`;
}

/** Whether a kernel's missing results are explained by its guest (crashed, hung, not booted). */
function guestExplains(k: KernelRun): boolean {
  return k.guest !== 'ok';
}

export function diffKernels(run: RunReport): KernelDiff {
  const kernels = run.kernels.map((k) => k.kernel.id);
  const multiLoader = new Set(run.kernels.flatMap((k) => k.cells.map((c) => c.loader))).size > 1;
  // With kernels of several arches, a cell's label names the arch of any but amd64: `task-fields/set_task_comm (arm64)`.
  const multiArch = new Set(run.kernels.map((k) => archOfKernel(k.kernel))).size > 1;
  const label = (c: CellResult) => `${cellLabel(c, multiLoader)}${multiArch && archOfKernel(c.kernel) !== 'amd64' ? ` (${archOfKernel(c.kernel)})` : ''}`;
  const violations: Finding[] = [];
  const unexpected: Finding[] = [];
  let checked = 0;
  let held = 0;
  const invariant = (ok: boolean, f: Omit<Finding, 'class'>): void => {
    checked++;
    if (ok) held++;
    else violations.push({ class: 'violation', ...f });
  };

  // Same kernel id twice in one run would make every per-kernel column ambiguous.
  const seenIds = new Set<string>();
  for (const id of kernels) {
    if (seenIds.has(id)) unexpected.push({ class: 'unexpected', cell: '*', what: `kernel id ${id} appears twice in the run`, kernels: [id] });
    seenIds.add(id);
  }

  // Group cells by (suite, program, loader), keeping kernel order.
  const groups = new Map<string, { cells: Map<string, CellResult>; first: CellResult }>();
  for (const k of run.kernels) {
    for (const c of k.cells) {
      const key = groupKey(c);
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { cells: new Map(), first: c }));
      if (g.cells.has(k.kernel.id)) {
        unexpected.push({ class: 'unexpected', cell: label(c), what: `two results for the same cell on ${k.kernel.id}`, kernels: [k.kernel.id] });
        continue;
      }
      g.cells.set(k.kernel.id, c);
    }
  }

  const out: CellGroup[] = [];
  for (const { cells, first } of groups.values()) {
    const cell = label(first);
    const base = { cell, suite: first.suite, program: first.program, loader: first.loader };
    const present = kernels.filter((id) => cells.has(id));
    const list = present.map((id) => [id, cells.get(id)!] as const);
    const rows: ValueRow[] = [];

    // Missing on some kernels: fine when that guest crashed or never booted (reported per kernel).
    const missing = run.kernels.filter((k) => archOfKernel(k.kernel) === archOfKernel(first.kernel) && !cells.has(k.kernel.id));
    const unexplained = missing.filter((k) => !guestExplains(k)).map((k) => k.kernel.id);
    if (unexplained.length) unexpected.push({ class: 'unexpected', cell, what: `no result on ${unexplained.join(', ')} although the guest ended ok`, kernels: unexplained });

    // 1. The object is the same everywhere.
    const shas = [...new Set(list.map(([, c]) => c.object.sha256))];
    invariant(shas.length <= 1, {
      cell,
      what: `object sha256 differs: ${list.map(([id, c]) => `${id} → ${c.object.sha256.slice(0, 12)}`).join(', ')}`,
      kernels: present,
    });

    // 2. Verdicts: differing verdicts are expected only with a declared reason.
    const verdicts = list.map(([, c]) => c.verdict);
    if (!allEqual(verdicts)) {
      const silent = list.filter(([, c]) => !OK_VERDICTS.has(c.verdict) && c.verdict !== 'expected-skip' && !c.reason).map(([id]) => id);
      if (silent.length)
        unexpected.push({ class: 'unexpected', cell, what: `verdict differs without a declared reason: ${list.map(([id, c]) => `${id} → ${c.verdict}`).join(', ')}`, kernels: silent });
      rows.push({
        ...base,
        kind: 'verdict',
        subject: 'verdict',
        values: list.map(([id, c]) => ({ kernel: id, value: c.verdict, ...(c.reason ? { note: c.reason } : {}) })),
        differs: true,
      });
    }

    // 3. Relocations: same set, same local side; targets may differ.
    const withRelos = list.filter(([, c]) => c.relocations.length > 0 || c.verdict === 'pass');
    const byKey = new Map<string, { rec: RelocationRecord; per: Map<string, RelocationRecord> }>();
    for (const [id, c] of withRelos) {
      // Keyed by position (section, instruction): the same object has the same relocation there
      // on every kernel, so a different kind/type/access at that position is a violation.
      const seen = new Map<string, number>();
      for (const r of c.relocations) {
        const at = `${r.section}#${r.insn}`;
        const n = seen.get(at) ?? 0;
        seen.set(at, n + 1);
        const key = `${at}#${n}`;
        let e = byKey.get(key);
        if (!e) byKey.set(key, (e = { rec: r, per: new Map() }));
        e.per.set(id, r);
      }
    }
    const merged = new Map<string, ValueRow>();
    for (const { rec, per } of byKey.values()) {
      const subject = reloSubject(rec);
      const on = withRelos.filter(([id]) => per.has(id)).map(([id]) => id);
      const off = withRelos.filter(([id]) => !per.has(id)).map(([id]) => id);
      if (off.length) unexpected.push({ class: 'unexpected', cell, what: `relocation ${subject} (insn ${rec.insn}) present on ${on.join(', ')} only, missing on ${off.join(', ')}`, kernels: off });
      const locals = [...new Set(on.map((id) => per.get(id)!.local))];
      const localSide = (r: RelocationRecord) => `${r.kind} ${r.type} ${r.access} ${r.spec}`;
      const specs = [...new Set(on.map((id) => localSide(per.get(id)!)))];
      invariant(locals.length === 1 && specs.length === 1, {
        cell,
        what: `relocation ${subject} (insn ${rec.insn}) local side differs: ${on.map((id) => `${id} → ${per.get(id)!.local}${specs.length > 1 ? ` (${localSide(per.get(id)!)})` : ''}`).join(', ')}`,
        kernels: on,
      });
      const values = on.map((id) => {
        const r = per.get(id)!;
        return { kernel: id, value: reloValue(r), ...(r.targetTypeId !== undefined ? { typeId: r.targetTypeId } : {}), ...(r.targetType && r.targetType !== rec.type ? { note: r.targetType } : {}) };
      });
      for (const id of on) {
        const r = per.get(id)!;
        if (r.status === 'error' && !(cells.get(id)!.verdict !== 'pass' && cells.get(id)!.reason))
          unexpected.push({ class: 'unexpected', cell, what: `relocation ${subject} failed on ${id} without a declared reason: ${r.error ?? 'error'}`, kernels: [id] });
        // (A libbpf cell's pass means it agrees with ours; the relocations it shows are ours.)
        if (r.status === 'poisoned' && (r as { reachable?: boolean }).reachable === true && cells.get(id)!.verdict === 'pass' && first.loader === 'ours')
          unexpected.push({ class: 'unexpected', cell, what: `relocation ${subject} is poisoned on a reachable path on ${id}, yet the cell passed`, kernels: [id] });
      }
      // Relocations of one subject with identical values everywhere fold into one row.
      const sig = `${subject}\0${rec.local}\0${values.map((v) => `${v.kernel}=${v.value}`).join(',')}`;
      const existing = merged.get(sig);
      const where = `${rec.section}/${rec.insn}`;
      if (existing) existing.insns!.push(where);
      else merged.set(sig, { ...base, kind: 'relocation', subject, local: rec.local, insns: [where], values, differs: !allEqual(values.map((v) => v.value)) || off.length > 0 });
    }
    rows.push(...merged.values());

    // 4. Externs: values may differ, the set may not.
    const externNames = new Map<string, Map<string, string>>();
    for (const [id, c] of withRelos) {
      for (const x of c.externs) {
        let m = externNames.get(x.name);
        if (!m) externNames.set(x.name, (m = new Map()));
        m.set(id, externValue(x.name, x.value));
      }
    }
    for (const [name, m] of externNames) {
      const off = withRelos.filter(([id]) => !m.has(id)).map(([id]) => id);
      if (off.length) unexpected.push({ class: 'unexpected', cell, what: `extern ${name} resolved on ${[...m.keys()].join(', ')} only, missing on ${off.join(', ')}`, kernels: off });
      const values = [...m].map(([kernel, value]) => ({ kernel, value }));
      rows.push({ ...base, kind: 'extern', subject: name, values, differs: !allEqual(values.map((v) => v.value)) || off.length > 0 });
    }

    // 5. Checks: same names everywhere, each observed value equal to its ground truth.
    const checkNames = new Map<string, string[]>();
    const checkRows = new Map<string, ValueRow>();
    for (const [id, c] of list) {
      for (const ch of c.checks) {
        checkNames.set(ch.name, [...(checkNames.get(ch.name) ?? []), id]);
        // What the guest observed, marked against its ground truth: "the right pid everywhere".
        let cr = checkRows.get(ch.name);
        if (!cr) checkRows.set(ch.name, (cr = { ...base, kind: 'check', subject: `check ${ch.name}`, values: [], differs: false }));
        const equal = sameValue(ch.observed, ch.truth);
        invariant(ch.ok && equal, {
          cell,
          what: `check ${ch.name} on ${id}: observed ${JSON.stringify(ch.observed)}, truth ${JSON.stringify(ch.truth)}`,
          kernels: [id],
        });
        cr.values.push({ kernel: id, value: `${showValue(ch.observed)} ${ch.ok && equal ? '✓' : `✗ (truth ${showValue(ch.truth)})`}`, ...(ch.source ? { note: ch.source } : {}) });
        if (ch.ok !== equal)
          unexpected.push({ class: 'unexpected', cell, what: `check ${ch.name} on ${id} says ok=${ch.ok} but observed ${JSON.stringify(ch.observed)} ${equal ? '==' : '!='} truth ${JSON.stringify(ch.truth)}`, kernels: [id] });
      }
    }
    for (const cr of checkRows.values()) cr.differs = !allEqual(cr.values.map((v) => v.value));
    rows.push(...checkRows.values());
    const ran = list.filter(([, c]) => c.verdict === 'pass' || c.verdict === 'fail').map(([id]) => id);
    for (const [name, ids] of checkNames) {
      const off = ran.filter((id) => !ids.includes(id));
      if (off.length) unexpected.push({ class: 'unexpected', cell, what: `check ${name} ran on ${ids.join(', ')} only, not on ${off.join(', ')}`, kernels: off });
    }

    // 6. Verifier instruction counts: expected to differ (the kernels' verifiers differ).
    const insns = list.filter(([, c]) => c.verifier?.insnsProcessed !== undefined);
    if (insns.length) {
      const values = insns.map(([id, c]) => ({ kernel: id, value: String(c.verifier!.insnsProcessed) }));
      rows.push({ ...base, kind: 'verifier', subject: 'insns processed', values, differs: !allEqual(values.map((v) => v.value)) });
    }

    // 7. Attach and run: how each kernel attached the program and how often it ran are expected
    // to differ; a program that ran on some kernels and stayed silent on others is not (the
    // "my kprobe target got inlined" case).
    const withAttach = list.filter(([, c]) => c.attach !== undefined);
    if (withAttach.length) {
      const word = (c: CellResult) => {
        const a = c.attach!;
        if (a.status !== 'attached') return a.status;
        return a.runCount === undefined ? 'attached' : a.runCount === 0 ? 'never ran' : `ran ${a.runCount}`;
      };
      const values = withAttach.map(([id, c]) => ({ kernel: id, value: word(c), ...(c.attach!.target ? { note: c.attach!.target } : {}) }));
      rows.push({ ...base, kind: 'attach', subject: 'attach, runs', values, differs: !allEqual(values.map((v) => v.value)) });
      const ranOn = withAttach.filter(([, c]) => (c.attach!.runCount ?? 0) > 0).map(([id]) => id);
      const silentOn = withAttach.filter(([, c]) => neverRan(c.attach)).map(([id]) => id);
      if (ranOn.length && silentOn.length)
        unexpected.push({ class: 'unexpected', cell, what: `ran on ${ranOn.join(', ')}, attached but never ran on ${silentOn.join(', ')}`, kernels: silentOn });
    }

    out.push({ ...base, kernels: present, sha256: shas, rows });
  }

  // 8. Differential runs: two loaders on the same kernel must produce the same translated program.
  for (const k of run.kernels) {
    const byProg = new Map<string, CellResult[]>();
    for (const c of k.cells) if (c.xlated !== undefined) byProg.set(`${c.suite}/${c.program}`, [...(byProg.get(`${c.suite}/${c.program}`) ?? []), c]);
    for (const [cell, cs] of byProg) {
      if (cs.length < 2) continue;
      // Map ids in translated code differ between any two loads; compare with them normalised.
      const first = cs[0]!;
      const diff = cs.slice(1).map((c) => ({ c, r: compareXlated(first.xlated!, c.xlated!) })).find((x) => !x.r.equal);
      invariant(!diff, { cell, what: `translated instructions differ between loaders on ${k.kernel.id}: ${first.loader} vs ${diff?.c.loader}${diff?.r.firstDiff ? ` at insn ${diff.r.firstDiff.insn}: ${diff.r.firstDiff.ours} | ${diff.r.firstDiff.theirs}` : ''}`, kernels: [k.kernel.id] });
    }
  }

  const expected = out.flatMap((g) => g.rows.filter((r) => r.differs && !(r.kind === 'verdict' && unexpected.some((u) => u.cell === r.cell && u.what.startsWith('verdict')))));
  return {
    runId: run.runId,
    complete: run.complete,
    kernels,
    groups: out,
    invariants: { checked, held },
    violations,
    unexpected,
    expected,
    ok: violations.length === 0 && unexpected.length === 0,
  };
}

/** `task_struct.pid byte_off: 5.10 → 2232, 6.1 → 2416` */
export function formatRow(r: ValueRow): string {
  return `${r.subject}: ${r.values.map((v) => `${v.kernel} → ${v.value}`).join(', ')}`;
}

/** The diff as plain text (CLI, logs). */
export function formatKernelDiff(d: KernelDiff): string {
  const lines: string[] = [];
  lines.push(`cross-kernel diff of run ${d.runId}${d.complete ? '' : ' (INCOMPLETE RUN)'}: ${d.kernels.length} kernels, ${d.groups.length} cells`);
  lines.push(`must be equal: ${d.invariants.held}/${d.invariants.checked} invariants held`);
  for (const v of d.violations) lines.push(`  VIOLATION ${v.cell}: ${v.what}`);
  lines.push(`unexpected differences: ${d.unexpected.length}`);
  for (const u of d.unexpected) lines.push(`  UNEXPECTED ${u.cell}: ${u.what}`);
  lines.push(`expected differences: ${d.expected.length}`);
  let cell = '';
  for (const r of d.expected) {
    if (r.cell !== cell) lines.push(`  ${(cell = r.cell)}`);
    lines.push(`    ${formatRow(r)}`);
  }
  return lines.join('\n');
}
