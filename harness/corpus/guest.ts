// The kernel's CO-RE selftest corpus run for real, in the running (guest) kernel, by both loaders.
// For each case (a target object whose BTF stands in for "the kernel") and each test program:
//   1. our loader relocates against the target's BTF and loads the program; libbpf 1.1 does the
//      same with `btf_custom_path` = the target object (as the kernel's own test does);
//   2. the verdicts must agree (both load, or both fail), and the translated instructions too;
//   3. where both loaded, each loader's program is attached to sys_enter, the same input bytes go
//      into `data.in`, a syscall fires it, and `data.out` must come back byte-identical.
// Runs in the guest: syscalls (runtime) and libbpf via koffi.

import { readFileSync } from 'node:fs';
import koffi from 'koffi';
import { Btf, parseBtf } from '../core/btf/btf.js';
import { Kind } from '../core/btf/kinds.js';
import { CoreMatrixError } from '../core/errors.js';
import type { KconfigFacts } from '../core/kconfig.js';
import { loadObjectSpec } from '../core/object/load.js';
import { readTargetBtf } from '../core/relocate.js';
import { attachFailures } from '../loader/attach.js';
import { Collection, type ProgramOutcome } from '../loader/collection.js';
import { compareOutcomes, type XlatedDiff } from '../reference/compare.js';
import { loadWithLibbpf, OPEN_OPTS, type ReferenceOutcome } from '../reference/libbpf.js';
import { mapLookup, mapUpdate } from '../runtime/bpf.js';
import { NativeMem } from '../runtime/sys.js';
import type { CellResult, Check, KernelInfo } from '../results.js';
import { RESULT_SCHEMA } from '../results.js';

export interface CorpusRunCase {
  name: string;
  /** Guest path of the target object (its .BTF is the relocation target). */
  target: string;
  /** Guest paths of the test program objects. */
  programs: string[];
  expectFail: boolean;
}

export type LoadStatus = ProgramOutcome['status'];

export interface CorpusResult {
  case: string;
  /** The program object's base name, e.g. `test_core_reloc_flavors`. */
  program: string;
  ours: LoadStatus;
  libbpf: LoadStatus;
  expectFail: boolean;
  /** Same verdict (both loaded, or both failed to relocate / were rejected) and, when loaded, identical xlated. */
  agree: boolean;
  /** Both loaded and ran: `data.out` (and `data.skip`) byte-identical. */
  outputEqual?: boolean;
  /** Both loaded: the kernel's translated instructions are identical (map ids normalised). */
  xlatedEqual?: boolean;
  /** The program's `out` bytes had something written (the program ran and produced output). */
  outputNonZero?: boolean;
  /** The program set `data.skip` (a feature its target lacks). */
  skipped?: boolean;
  firstXlatedDiff?: XlatedDiff;
  /** Set when `ctx.mutate` changed an instruction of our load. */
  mutation?: { insn: number; relocation: string; before: number; after: number };
  firstOutputDiff?: { byte: number; ours: number; libbpf: number };
  oursReason?: string;
  libbpfReason?: string;
  detail?: string;
  ms: number;
}

export interface CorpusContext {
  kconfig: KconfigFacts;
  /** Called before each case (the guest agent beats its heartbeat here). */
  onCase?: (index: number, total: number, name: string) => void;
  /** The running kernel's BTF, for attach targets (tp_btf); read from sysfs when first needed. */
  vmlinuxBtf?: () => Btf;
  /**
   * Test hook (a deliberately broken loader): our loader adds `delta` to the immediate of the
   * program's first CO-RE byte offset that it relocated, just before BPF_PROG_LOAD.
   */
  mutate?: { delta: number };
}

/** A failed load in the sense of the kernel's table: relocation failure or verifier rejection. */
const FAILED: ReadonlySet<LoadStatus> = new Set(['relocation-failed', 'rejected']);

/** The deterministic input written into `data.in` by both loaders. */
export function corpusInput(size: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (i * 37 + 11) & 0xff;
  return b;
}

interface DataLayout {
  size: number;
  base: number;
  in: { offset: number; size: number };
  out: { offset: number; size: number };
  skip?: number;
  myPidTgid?: number;
}

/** Where `data`'s members live in its map value, from the program object's BTF. */
function dataLayout(coll: Collection): DataLayout {
  const { map, offset, typeId } = coll.locateVar('data');
  const btf = coll.spec.btf;
  const st = btf.type(btf.skipModsAndTypedefs(typeId));
  if (st.kind !== Kind.STRUCT) throw new CoreMatrixError(`${coll.spec.source}: 'data' is not a struct`);
  const member = (n: string) => st.members.find((m) => m.name === n);
  const at = (n: string) => {
    const m = member(n);
    return m ? offset + m.bitOffset / 8 : undefined;
  };
  const field = (n: string) => {
    const m = member(n);
    if (!m) throw new CoreMatrixError(`${coll.spec.source}: 'data' has no member '${n}'`);
    return { offset: offset + m.bitOffset / 8, size: btf.sizeOf(m.type) };
  };
  return { size: map.valueSize, base: offset, in: field('in'), out: field('out'), skip: at('skip'), myPidTgid: at('my_pid_tgid') };
}

/** The `data` value before the run: input pattern, zeroed output, this process as the filter. */
function inputValue(l: DataLayout, current: Uint8Array): Uint8Array {
  const v = new Uint8Array(current);
  v.set(corpusInput(l.in.size), l.in.offset);
  v.fill(0, l.out.offset, l.out.offset + l.out.size);
  if (l.skip !== undefined) v[l.skip] = 0;
  if (l.myPidTgid !== undefined) {
    // The agent runs node's main thread: tgid = pid = tid.
    new DataView(v.buffer, v.byteOffset).setBigUint64(l.myPidTgid, (BigInt(process.pid) << 32n) | BigInt(process.pid), true);
  }
  return v;
}

/** What a run left: `out` followed by the `skip` byte (when the program has one). */
function outputOf(l: DataLayout, v: Uint8Array): Uint8Array {
  const out = v.slice(l.out.offset, l.out.offset + l.out.size);
  if (l.skip === undefined) return out;
  const r = new Uint8Array(out.length + 1);
  r.set(out);
  r[out.length] = v[l.skip]!;
  return r;
}

interface Libc {
  getppid: () => number;
}
let libc: Libc | undefined;
/** One syscall the attached sys_enter programs see (any syscall would do). */
function trigger(): void {
  libc ??= { getppid: koffi.load('libc.so.6').func('int getppid(void)') };
  libc.getppid();
}

interface LibbpfRun {
  openMem: (buf: bigint, size: number, opts: bigint) => bigint | null;
  load: (obj: bigint) => number;
  close: (obj: bigint) => void;
  nextProgram: (obj: bigint, prev: bigint | null) => bigint | null;
  programName: (prog: bigint) => string;
  setAutoload: (prog: bigint, on: boolean) => number;
  attach: (prog: bigint) => bigint | null;
  linkDestroy: (link: bigint) => number;
  findMap: (obj: bigint, name: string) => bigint | null;
  mapFd: (map: bigint) => number;
  mapValueSize: (map: bigint) => number;
}
let lrun: LibbpfRun | undefined;
/** libbpf's public API for the run phase (load, attach, map fd); verdicts come from loadWithLibbpf. */
function libbpfRun(): LibbpfRun {
  if (lrun) return lrun;
  const so = koffi.load('libbpf.so.1');
  lrun = {
    openMem: so.func('void *bpf_object__open_mem(void *buf, size_t size, void *opts)'),
    load: so.func('int bpf_object__load(void *obj)'),
    close: so.func('void bpf_object__close(void *obj)'),
    nextProgram: so.func('void *bpf_object__next_program(void *obj, void *prev)'),
    programName: so.func('const char *bpf_program__name(void *prog)'),
    setAutoload: so.func('int bpf_program__set_autoload(void *prog, bool autoload)'),
    attach: so.func('void *bpf_program__attach(void *prog)'),
    linkDestroy: so.func('int bpf_link__destroy(void *link)'),
    findMap: so.func('void *bpf_object__find_map_by_name(void *obj, const char *name)'),
    mapFd: so.func('int bpf_map__fd(void *map)'),
    mapValueSize: so.func('uint32_t bpf_map__value_size(void *map)'),
  };
  return lrun;
}

const KEY0 = new Uint8Array(4);

/** Our loader: load against the target's BTF, attach, run once; the output bytes. */
function runOurs(coll: Collection, layout: DataLayout): Uint8Array {
  const failures = attachFailures(coll.attachAll());
  if (failures.length) throw new CoreMatrixError(`our attach of ${failures[0]!.program}: ${failures[0]!.reason}`);
  if (coll.links.length === 0) throw new CoreMatrixError(`${coll.spec.source}: no program was attached`);
  const mapName = coll.locateVar('data').map.name;
  const m = coll.maps.get(mapName)!;
  const before = m.lookup(KEY0);
  if (!before) throw new CoreMatrixError(`${coll.spec.source}: map ${mapName} has no value`);
  m.update(KEY0, inputValue(layout, before));
  trigger();
  const after = m.lookup(KEY0)!;
  return outputOf(layout, after);
}

/** libbpf: open with btf_custom_path, load the one program, attach with libbpf, run once. */
function runLibbpf(bytes: Uint8Array, name: string, program: string, targetPath: string, mapSection: string, layout: DataLayout): Uint8Array {
  const l = libbpfRun();
  const mems: NativeMem[] = [];
  const keep = (m: NativeMem) => (mems.push(m), m);
  const buf = keep(NativeMem.from(bytes));
  const opts = keep(new NativeMem(OPEN_OPTS.size));
  const f = OPEN_OPTS.fields;
  opts.view.setBigUint64(f.sz[0], BigInt(OPEN_OPTS.size), true);
  opts.view.setBigUint64(f.object_name[0], keep(NativeMem.cstring(name)).addr, true);
  opts.view.setBigUint64(f.btf_custom_path[0], keep(NativeMem.cstring(targetPath)).addr, true);
  const obj = l.openMem(buf.addr, bytes.length, opts.addr);
  let link: bigint | null = null;
  try {
    if (!obj) throw new CoreMatrixError(`libbpf cannot open ${name} for the run (errno ${koffi.errno()})`);
    let me: bigint | null = null;
    for (let p = l.nextProgram(obj, null); p; p = l.nextProgram(obj, p)) {
      const mine = l.programName(p) === program;
      l.setAutoload(p, mine);
      if (mine) me = p;
    }
    if (!me) throw new CoreMatrixError(`libbpf: ${name} has no program '${program}'`);
    const err = l.load(obj);
    if (err !== 0) throw new CoreMatrixError(`libbpf: second load of ${name} failed (${err})`);
    link = l.attach(me);
    if (!link) throw new CoreMatrixError(`libbpf cannot attach ${program} (errno ${koffi.errno()})`);
    const map = l.findMap(obj, mapSection);
    if (!map) throw new CoreMatrixError(`libbpf: ${name} has no map '${mapSection}'`);
    const fd = l.mapFd(map);
    const size = l.mapValueSize(map);
    if (size !== layout.size) throw new CoreMatrixError(`libbpf: map ${mapSection} value is ${size} bytes, ours ${layout.size}`);
    const before = mapLookup(fd, KEY0, size);
    if (!before) throw new CoreMatrixError(`libbpf: map ${mapSection} has no value`);
    mapUpdate(fd, KEY0, inputValue(layout, before));
    trigger();
    return outputOf(layout, mapLookup(fd, KEY0, size)!);
  } finally {
    if (link) l.linkDestroy(link);
    if (obj) l.close(obj);
    for (const m of mems) m.free();
  }
}

/**
 * A view of the target's BTF that also answers the running kernel's attach-point lookups
 * (`btf_trace_<tp>` for tp_btf programs). CO-RE candidates still come only from the target, as
 * with libbpf's btf_custom_path (which relocates against the custom BTF and attaches by vmlinux).
 */
function withKernelAttach(target: Btf, kernel: () => Btf): Btf {
  const fromKernel = new Set<number>();
  const v = Object.create(target) as Btf;
  v.byName = (name: string) => {
    if (!name.startsWith('btf_trace_')) return target.byName(name);
    const ids = kernel().byName(name);
    for (const i of ids) fromKernel.add(i);
    return ids;
  };
  v.kind = (id: number) => (fromKernel.has(id) ? kernel().kind(id) : target.kind(id));
  return v;
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1).replace(/\.bpf\.o$/, '');
}

function firstByteDiff(a: Uint8Array, b: Uint8Array): { byte: number; ours: number; libbpf: number } | undefined {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return { byte: i, ours: a[i] ?? -1, libbpf: b[i] ?? -1 };
  return undefined;
}

function runOne(c: CorpusRunCase, progPath: string, target: Btf, ctx: CorpusContext): CorpusResult[] {
  const bytes = new Uint8Array(readFileSync(progPath));
  const name = baseName(progPath);
  const spec = loadObjectSpec(bytes, name);
  const results: CorpusResult[] = [];
  for (const p of spec.programs) {
    const t0 = performance.now();
    const r: CorpusResult = { case: c.name, program: name, ours: 'error', libbpf: 'error', expectFail: c.expectFail, agree: false, ms: 0 };
    results.push(r);
    const needsKernel = p.kind === 'tp_btf';
    const kernelBtf = needsKernel ? withKernelAttach(target, ctx.vmlinuxBtf ?? vmlinux) : target;
    const coll = new Collection(loadObjectSpec(bytes, name));
    let ours: ProgramOutcome;
    let theirs: ReferenceOutcome;
    let oursOut: Uint8Array | undefined;
    let layout: DataLayout | undefined;
    try {
      try {
        const mutate = ctx.mutate;
        const mutateInsns = mutate
          ? (_prog: string, insns: Uint8Array) => {
              const relo = coll.relocations.find((x) => x.status === 'ok' && x.kind === 'byte_off' && typeof x.target === 'number');
              if (!relo) return;
              const dv = new DataView(insns.buffer, insns.byteOffset, insns.byteLength);
              const before = dv.getInt32(relo.insn * 8 + 4, true);
              if (before !== relo.target) return; // not where the offset went: leave it, `mutation` stays unset
              dv.setInt32(relo.insn * 8 + 4, before + mutate.delta, true);
              r.mutation = { insn: relo.insn, relocation: `${relo.kind} ${relo.type} ${relo.spec}`, before, after: before + mutate.delta };
            }
          : undefined;
        coll.load({ kernelBtf, kernelBtfName: c.target, kconfig: ctx.kconfig, programs: [p.name], mutateInsns });
        ours = coll.outcomes.find((o) => o.name === p.name) ?? { name: p.name, section: p.section, status: 'error', reason: 'no outcome', loadMs: 0, relocations: [] };
        if (ours.status === 'loaded') {
          layout = dataLayout(coll);
          oursOut = runOurs(coll, layout);
        }
      } finally {
        coll.close();
      }
      const ref = loadWithLibbpf(bytes, name, { programs: [p.name], btfCustomPath: c.target });
      ref.close();
      theirs = ref.outcomes[0]!;
    } catch (e) {
      if (!(e instanceof CoreMatrixError)) throw e;
      r.detail = e.message.split('\n')[0];
      r.ms = Math.round(performance.now() - t0);
      continue;
    }
    r.ours = ours.status;
    r.libbpf = theirs.status;
    if (ours.reason) r.oursReason = ours.reason;
    if (theirs.reason) r.libbpfReason = theirs.reason;
    const bothLoaded = ours.status === 'loaded' && theirs.status === 'loaded';
    const bothFailed = FAILED.has(ours.status) && FAILED.has(theirs.status);
    if (bothLoaded) {
      const cmp = compareOutcomes(ours, theirs);
      r.xlatedEqual = cmp.xlated?.equal ?? false;
      if (cmp.xlated?.firstDiff) r.firstXlatedDiff = cmp.xlated.firstDiff;
      if (!r.xlatedEqual) r.detail = cmp.line;
      try {
        const libOut = runLibbpf(bytes, name, p.name, c.target, coll.spec.maps.find((m) => m.name === coll.locateVar('data').map.name)!.section, layout!);
        const diff = firstByteDiff(oursOut!, libOut);
        r.outputEqual = diff === undefined;
        if (diff) r.firstOutputDiff = diff;
        r.outputNonZero = oursOut!.subarray(0, layout!.out.size).some((b) => b !== 0);
        if (layout!.skip !== undefined) r.skipped = oursOut![layout!.out.size] !== 0;
      } catch (e) {
        if (!(e instanceof CoreMatrixError)) throw e;
        r.detail = `run: ${e.message.split('\n')[0]}`;
      }
    }
    r.agree = (bothLoaded && r.xlatedEqual === true) || bothFailed;
    if (!r.agree && !r.detail) r.detail = `ours ${ours.status}${ours.reason ? ` (${ours.reason})` : ''}, libbpf ${theirs.status}${theirs.reason ? ` (${theirs.reason})` : ''}`;
    r.ms = Math.round(performance.now() - t0);
  }
  return results;
}

let vmlinuxCache: Btf | undefined;
function vmlinux(): Btf {
  vmlinuxCache ??= parseBtf(new Uint8Array(readFileSync('/sys/kernel/btf/vmlinux')), { source: '/sys/kernel/btf/vmlinux' });
  return vmlinuxCache;
}

/** Runs every case × program with both loaders in this kernel. */
export function runCorpus(cases: CorpusRunCase[], ctx: CorpusContext): CorpusResult[] {
  const out: CorpusResult[] = [];
  cases.forEach((c, i) => {
    ctx.onCase?.(i, cases.length, c.name);
    let target: Btf;
    try {
      target = readTargetBtf(new Uint8Array(readFileSync(c.target)), c.target);
    } catch (e) {
      if (!(e instanceof CoreMatrixError)) throw e;
      for (const p of c.programs) out.push({ case: c.name, program: baseName(p), ours: 'error', libbpf: 'error', expectFail: c.expectFail, agree: false, detail: e.message.split('\n')[0], ms: 0 });
      return;
    }
    for (const p of c.programs) out.push(...runOne(c, p, target, ctx));
  });
  return out;
}

/** The kernel table's expectation holds and the two loaders agree. */
export function corpusPass(r: CorpusResult): boolean {
  if (!r.agree) return false;
  if (r.expectFail) return FAILED.has(r.ours) && FAILED.has(r.libbpf);
  return r.ours === 'loaded' && r.libbpf === 'loaded' && r.outputEqual === true;
}

/** One report cell per case × program (suite `corpus`, loader: both, reported as 'ours'). */
function outcomeWord(status: LoadStatus): string {
  return status === 'loaded' ? 'loaded' : FAILED.has(status) ? 'fails' : status;
}

export function corpusCells(results: CorpusResult[], kernel: KernelInfo): CellResult[] {
  return results.map((r) => {
    const checks: Check[] = [
      // Observed and truth in the same vocabulary (the exact status is in the source), so the
      // report's own observed == truth check holds exactly where `ok` does.
      { name: 'our verdict', observed: outcomeWord(r.ours), truth: r.expectFail ? 'fails' : 'loaded', ok: r.expectFail ? FAILED.has(r.ours) : r.ours === 'loaded', source: `prog_tests/core_reloc.c; ours: ${r.ours}` },
      { name: 'libbpf verdict', observed: outcomeWord(r.libbpf), truth: r.expectFail ? 'fails' : 'loaded', ok: r.expectFail ? FAILED.has(r.libbpf) : r.libbpf === 'loaded', source: `prog_tests/core_reloc.c; libbpf: ${r.libbpf}` },
      { name: 'loaders agree', observed: r.agree, truth: true, ok: r.agree, source: 'libbpf btf_custom_path' },
    ];
    if (r.xlatedEqual !== undefined) checks.push({ name: 'xlated identical', observed: r.xlatedEqual, truth: true, ok: r.xlatedEqual, source: 'libbpf: BPF_OBJ_GET_INFO_BY_FD' });
    if (r.ours === 'loaded' && r.libbpf === 'loaded') {
      checks.push({ name: 'output bytes identical', observed: r.outputEqual ?? null, truth: true, ok: r.outputEqual === true, source: 'libbpf: data.out after one sys_enter' });
    }
    const pass = corpusPass(r);
    const cell: CellResult = {
      schema: RESULT_SCHEMA,
      kernel,
      suite: 'corpus',
      program: `${r.case}/${r.program}`,
      loader: 'ours',
      object: { name: r.program, sha256: '' },
      verdict: pass ? 'pass' : r.ours === 'error' || r.libbpf === 'error' ? 'error' : 'fail',
      relocations: [],
      externs: [],
      checks,
      timings: { loadMs: r.ms, runMs: 0 },
    };
    if (!pass) cell.reason = r.detail ?? checks.find((c) => !c.ok)?.name ?? 'failed';
    return cell;
  });
}
