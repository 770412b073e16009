// The six fuzz targets over the pure loader core, the oracle that judges each run, and the case
// generator (seed set + run seed + index → one mutated input). No node:* imports: the same code
// runs in the fuzz worker and in vitest.
//
// Oracle: an input must end in success or in a thrown CoreMatrixError whose message is one line,
// names the input (every source name here contains "fuzz"), is under 300 characters and does not
// wrap a stray TypeError/RangeError. Anything else — a plain Error, a stack overflow, a size that
// is no longer an exact integer, a sanitized BTF that no longer parses — is a crasher. Hangs and
// memory blow-ups are caught by the runner (worker watchdog, RSS check).

import { parseElf, SHT_REL } from '../core/elf.js';
import { parseBtf, essentialName, type Btf } from '../core/btf/btf.js';
import { parseBtfExt } from '../core/btf/ext.js';
import { sanitizeBtf, type BtfFeatures } from '../core/btf/sanitize.js';
import { loadObjectSpec, linkProgram } from '../core/object/index.js';
import { readTargetBtf, relocateObject } from '../core/relocate.js';
import { CoreMatrixError } from '../core/errors.js';
import { reachable } from '../core/relo/reach.js';
import { fillKconfig } from '../core/kconfig.js';
import { layoutOf, type Layout } from './layout.js';
import { mutate, Rng } from './mutate.js';

export const TARGETS = ['elf', 'btf', 'ext', 'object', 'relocate', 'sanitize'] as const;
export type TargetName = (typeof TARGETS)[number];

export const OBJ_SRC = 'fuzz-input.bpf.o';
export const BTF_SRC = 'fuzz-input.btf';
export const TARGET_SRC = 'fuzz-vmlinux.btf';
const MAX_MESSAGE = 300;
/** Types decoded per BTF input (kernel slices are bounded well below this). */
const MAX_DECODE = 20_000;

/** Thrown by a target when an invariant breaks without an exception (inexact size, unparseable sanitized BTF). */
export class Violation extends Error {
  override name = 'Violation';
}

/** Why an exception is a crasher, or undefined when it is an acceptable typed error. */
export function judge(e: unknown): string | undefined {
  if (!(e instanceof CoreMatrixError)) {
    if (e instanceof Error) return `${e.name}: ${e.message.split('\n')[0]!.slice(0, 200)}`;
    return `non-Error thrown: ${String(e).slice(0, 200)}`;
  }
  const m = e.message;
  if (m.includes('\n')) return `multi-line message: ${JSON.stringify(m.slice(0, 200))}`;
  if (m.length > MAX_MESSAGE) return `message of ${m.length} chars: ${m.slice(0, 120)}...`;
  if (!m.includes('fuzz')) return `message does not name the input: ${m.slice(0, 200)}`;
  for (let c: unknown = e.cause, d = 0; c !== undefined && d < 8; c = (c as Error).cause, d++) {
    if (c instanceof Error && !(c instanceof CoreMatrixError)) return `typed error wraps ${c.name}: ${c.message.slice(0, 150)}`;
  }
  return undefined;
}

/** Runs `f`; an acceptable typed error is swallowed (so the target goes on deeper), anything else rethrown. */
function soft<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (judge(e) === undefined) return undefined;
    throw e;
  }
}

/** Decodes every type and exercises the look-ups a loader uses. */
function exerciseBtf(btf: Btf): void {
  const n = Math.min(btf.count, MAX_DECODE);
  let named = 0;
  for (let id = 0; id < n; id++) {
    const t = soft(() => btf.type(id));
    if (!t) continue;
    soft(() => btf.typeName(id));
    const size = soft(() => btf.sizeOf(id));
    if (size !== undefined && !(Number.isSafeInteger(size) && size >= 0)) throw new Violation(`sizeOf(#${id}) = ${size}, not an exact byte count`);
    soft(() => btf.skipModsAndTypedefs(id));
    soft(() => btf.skipMods(id));
    if (t.name && named < 40) {
      named++;
      soft(() => btf.byName(t.name));
      soft(() => btf.byEssentialName(essentialName(t.name)));
    }
  }
}

function elfTarget(b: Uint8Array): void {
  const elf = parseElf(b, OBJ_SRC);
  for (const s of elf.sections) {
    soft(() => elf.data(s));
    if (s.type === SHT_REL) soft(() => elf.rels(s));
    soft(() => elf.relocationsFor(s));
  }
  const syms = soft(() => elf.symbols);
  if (syms) for (let i = 0; i < Math.min(syms.length, 64); i++) elf.symbol(i);
  soft(() => elf.license);
  soft(() => elf.kernVersion);
}

function btfTarget(b: Uint8Array): void {
  exerciseBtf(parseBtf(b, { source: BTF_SRC }));
}

function extTarget(b: Uint8Array): void {
  const elf = parseElf(b, OBJ_SRC);
  const bs = elf.section('.BTF');
  const es = elf.section('.BTF.ext');
  if (!bs || !es) return;
  const btf = parseBtf(elf.data(bs), { source: `${OBJ_SRC}: .BTF` });
  const ext = parseBtfExt(elf.data(es), btf, OBJ_SRC);
  for (const l of ext.lineInfo.values()) for (const li of l.slice(0, 64)) soft(() => btf.str(li.fileNameOff) + btf.str(li.lineOff));
  for (const l of ext.coreRelos.values()) for (const r of l) soft(() => btf.typeName(r.typeId));
}

function objectTarget(b: Uint8Array): void {
  const spec = loadObjectSpec(b, OBJ_SRC);
  for (const p of spec.programs) soft(() => linkProgram(spec, p));
  // The reachability walk `relocate` runs from every function entry once a relocation is poisoned.
  const budget = { left: 200_000 };
  for (const [name, insns] of spec.sections) soft(() => reachable(insns, spec.functions.filter((f) => f.section === name).map((f) => f.sectionOffset), budget));
  // .kconfig externs filled from a config whose values depend on the extern's name (every encoding path).
  const kc = spec.maps.find((m) => m.kind === 'kconfig');
  if (kc?.data) {
    const config = new Map<string, string>();
    for (const e of spec.externs) if (e.kind === 'kconfig') config.set(e.name, CONFIG_VALUES[fnv(e.name) % CONFIG_VALUES.length]!);
    soft(() => fillKconfig(spec.btf, spec.externs, new Uint8Array(kc.data!), { config, linuxKernelVersion: 0x06_01_00 }));
  }
}

const CONFIG_VALUES = ['y', 'm', 'n', '42', '-1', '0x10', '-0x10', '"abc"', '99999999999999999999999', 'abc', '', '0'];
function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A relocate case is one blob: "CMFZ", u32 object length, the object, then the target BTF. */
export function packRelocate(obj: Uint8Array, target: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + obj.length + target.length);
  out.set([0x43, 0x4d, 0x46, 0x5a]);
  new DataView(out.buffer).setUint32(4, obj.length, true);
  out.set(obj, 8);
  out.set(target, 8 + obj.length);
  return out;
}
export function unpackRelocate(b: Uint8Array): [Uint8Array, Uint8Array] {
  const n = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(4, true);
  return [b.subarray(8, 8 + n), b.subarray(8 + n)];
}

function relocateTarget(b: Uint8Array): void {
  const [obj, tb] = unpackRelocate(b);
  const target = readTargetBtf(tb, TARGET_SRC);
  const r = relocateObject(obj, OBJ_SRC, 'fuzz', { vmlinux: target }, TARGET_SRC);
  for (const rec of r.report.relocations) {
    const msg = (rec as { error?: string }).error;
    if (msg !== undefined && (msg.includes('\n') || msg.length > MAX_MESSAGE)) throw new Violation(`relocation record error is not one short line: ${JSON.stringify(msg.slice(0, 150))}`);
  }
  const spec = soft(() => loadObjectSpec(obj, OBJ_SRC));
  if (spec) for (const p of spec.programs) soft(() => linkProgram(spec, p, { sections: r.sections }));
}

const NO_FEATURES: BtfFeatures = { float: false, declTag: false, typeTag: false, enum64: false, funcGlobal: false, datasec: false };

function sanitizeTarget(b: Uint8Array): void {
  const btf = parseBtf(b, { source: BTF_SRC });
  // A kernel with every feature gets the input as it is (undecoded, as libbpf loads it): only the
  // BTF the sanitizer writes for a kernel with none must re-parse.
  const out = soft(() => sanitizeBtf(btf, NO_FEATURES));
  if (!out || out.bytes === btf.bytes) return;
  let again: Btf;
  try {
    again = parseBtf(out.bytes, { source: `${BTF_SRC} (sanitized)` });
    for (let id = 0; id < Math.min(again.count, MAX_DECODE); id++) again.type(id);
  } catch (e) {
    throw new Violation(`sanitized BTF does not re-parse: ${e instanceof Error ? e.message.slice(0, 200) : String(e)}`);
  }
  if (again.count !== btf.count) throw new Violation(`sanitizing changed the type count ${btf.count} -> ${again.count}`);
}

const RUN: Record<TargetName, (b: Uint8Array) => void> = {
  elf: elfTarget, btf: btfTarget, ext: extTarget, object: objectTarget, relocate: relocateTarget, sanitize: sanitizeTarget,
};

export type Status = 'ok' | 'typed' | 'crash';
export interface Outcome {
  status: Status;
  /** Why it is a crasher (or the typed error's message). */
  detail?: string;
  /** First stack frames of a crasher. */
  stack?: string;
  ms: number;
}

const frames = (e: unknown): string | undefined =>
  e instanceof Error && e.stack ? e.stack.split('\n').filter((l) => l.trimStart().startsWith('at ')).slice(0, 4).map((l) => l.trim()).join(' <- ') : undefined;

/** Runs one input through one target and judges it. `slowMs`: a completed run slower than this is a crasher (a hang). */
export function runCase(target: TargetName, bytes: Uint8Array, slowMs = 2000): Outcome {
  const t0 = performance.now();
  let out: Outcome;
  try {
    RUN[target](bytes);
    out = { status: 'ok', ms: 0 };
  } catch (e) {
    const why = judge(e);
    out = why === undefined ? { status: 'typed', detail: (e as Error).message, ms: 0 } : { status: 'crash', detail: why, stack: frames(e), ms: 0 };
  }
  out.ms = performance.now() - t0;
  if (out.status !== 'crash' && out.ms > slowMs) out = { status: 'crash', detail: `took ${Math.round(out.ms)} ms (budget ${slowMs})`, ms: out.ms };
  return out;
}

// --- seeds and case generation ---

export interface Seed {
  name: string;
  bytes: Uint8Array;
  layout: Layout;
}
export interface SeedSet {
  /** clang-compiled BPF objects. */
  objects: Seed[];
  /** Raw BTF: objects' .BTF sections and bounded slices of real kernel BTF. */
  btfs: Seed[];
  /** Target BTF for relocation: bounded slices of kernel BTF around the types the objects relocate against. */
  targets: Seed[];
}

export function seed(name: string, bytes: Uint8Array): Seed {
  return { name, bytes, layout: layoutOf(bytes) };
}

export interface Case {
  index: number;
  target: TargetName;
  seed: string;
  steps: string[];
  bytes: Uint8Array;
}

/** Input `index` of run `runSeed`: the target cycles (over `only`, default all) so each gets an even share. */
export function makeCase(seeds: SeedSet, runSeed: number, index: number, only: TargetName | readonly TargetName[] = TARGETS): Case {
  const rng = new Rng(runSeed, index);
  const list = typeof only === 'string' ? [only] : only;
  const target = list[index % list.length]!;
  if (target === 'relocate') {
    const o = rng.pick(seeds.objects);
    const t = rng.pick(seeds.targets);
    const which = rng.int(4); // 0: object mutated, 1: target mutated, 2: both, 3: the mutated object is its own target
    const mo = which !== 1 ? mutate(o.bytes, o.layout, rng) : { bytes: o.bytes, steps: [] };
    if (which === 3) return { index, target, seed: `${o.name} (its own target)`, steps: mo.steps.map((s) => `object: ${s}`), bytes: packRelocate(mo.bytes, mo.bytes) };
    const mt = which !== 0 ? mutate(t.bytes, t.layout, rng, true) : { bytes: t.bytes, steps: [] };
    return { index, target, seed: `${o.name} + ${t.name}`, steps: [...mo.steps.map((s) => `object: ${s}`), ...mt.steps.map((s) => `target: ${s}`)], bytes: packRelocate(mo.bytes, mt.bytes) };
  }
  const pool = target === 'btf' || target === 'sanitize' ? seeds.btfs : seeds.objects;
  const s = rng.pick(pool);
  const m = mutate(s.bytes, s.layout, rng);
  return { index, target, seed: s.name, steps: m.steps, bytes: m.bytes };
}
