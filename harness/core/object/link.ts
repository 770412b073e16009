// Linking one program: its own instructions followed by every subprogram it reaches (bpf-to-bpf
// calls and callback references, transitively), each appended once, with call offsets, map
// references, extern references and func/line info re-based to the combined stream. Reads the
// CURRENT bytes of `obj.sections`, i.e. after the CO-RE engine has patched them.

import type { Btf } from '../btf/btf.js';
import { Kind } from '../btf/kinds.js';
import { FormatError } from '../errors.js';
import {
  BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_KFUNC_CALL, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, CALL, INSN_SIZE, LD_IMM64,
} from '../insn.js';
import { JUMPTABLES_SECTION, jumpTableTargets } from './jumptables.js';
import { infoFor } from './load.js';
import type { CodeReloc, FunctionSpec, KernelFuncInfo, KernelLineInfo, LinkedJumpTable, LinkedProgram, ObjectSpec, ProgramSpec } from './types.js';

export interface LinkOptions {
  /** Instruction bytes to read instead of `obj.sections` (same keys). */
  sections?: ReadonlyMap<string, Uint8Array>;
  /**
   * Where the `__arena` globals start inside the arena (arena.ts arenaDataOffset): added to every
   * value reference into the arena map, as libbpf adds it. Default 0.
   */
  arenaDataOffset?: number;
  /**
   * Append the exception callback a program names with an `exception_callback:` decl tag. Default
   * true; false where the kernel has no BTF decl tags (sanitizing drops them), as libbpf skips it then.
   */
  exceptionCallbacks?: boolean;
}

interface Placed {
  fn: FunctionSpec;
  start: number;
}

export function linkProgram(obj: ObjectSpec, prog: ProgramSpec | string, opts: LinkOptions = {}): LinkedProgram {
  const p = typeof prog === 'string' ? obj.programs.find((x) => x.name === prog) : prog;
  if (!p) throw new FormatError(`${obj.source}: no program named '${String(prog)}'`);
  const where = `${obj.source}: prog '${p.name}'`;
  const sections = opts.sections ?? obj.sections;

  // Functions of each section, sorted, for "which function holds instruction i".
  const bySection = new Map<string, FunctionSpec[]>();
  for (const f of obj.functions) {
    let l = bySection.get(f.section);
    if (!l) bySection.set(f.section, (l = []));
    l.push(f);
  }
  const fnAt = (section: string, insn: number): FunctionSpec | undefined =>
    bySection.get(section)?.find((f) => insn >= f.sectionOffset && insn < f.sectionOffset + f.insnCount);

  const relocIndex = new Map<string, Map<number, CodeReloc>>();
  const relocsOf = (section: string) => {
    let m = relocIndex.get(section);
    if (!m) relocIndex.set(section, (m = new Map((obj.relocs.get(section) ?? []).map((r) => [r.insn, r]))));
    return m;
  };

  const placed = new Map<FunctionSpec, Placed>();
  const order: Placed[] = [];
  let total = 0;
  const place = (fn: FunctionSpec): Placed => {
    const pl = { fn, start: total };
    total += fn.insnCount;
    placed.set(fn, pl);
    order.push(pl);
    return pl;
  };

  // Pass 1: place every reachable function as libbpf does (bpf_object__reloc_code): scanning a
  // function's instructions, the first call or callback reference to a function not yet placed
  // appends it and scans it at once, before the rest of the caller (depth first, in the order of
  // first reference). The kernel's translated code then matches libbpf's call for call.
  const fixups: { at: number; target: FunctionSpec; targetInsn: number; what: string; last: boolean }[] = [];
  const chunks = new Map<Placed, Uint8Array>();
  const scan = (pl: Placed): void => {
    const { fn, start } = pl;
    const sec = sections.get(fn.section);
    if (!sec || (fn.sectionOffset + fn.insnCount) * INSN_SIZE > sec.length) throw new FormatError(`${where}: function '${fn.name}' is outside section ${fn.section}`);
    const code = new Uint8Array(sec.subarray(fn.sectionOffset * INSN_SIZE, (fn.sectionOffset + fn.insnCount) * INSN_SIZE));
    chunks.set(pl, code);
    const relocs = relocsOf(fn.section);
    const dv = new DataView(code.buffer);
    for (let j = 0; j < fn.insnCount; j++) {
      const secInsn = fn.sectionOffset + j;
      const r = relocs.get(secInsn);
      const op = code[j * INSN_SIZE]!;
      const src = code[j * INSN_SIZE + 1]! >> 4;
      let targetSection: string | undefined;
      let targetInsn = 0;
      if (r && (r.kind === 'call' || r.kind === 'func')) {
        targetSection = r.targetSection;
        targetInsn = r.targetInsn;
      } else if (!r && op === CALL && src === BPF_PSEUDO_CALL) {
        // A pc-relative call the compiler resolved itself (same section, no relocation).
        targetSection = fn.section;
        targetInsn = secInsn + dv.getInt32(j * INSN_SIZE + 4, true) + 1;
      }
      if (targetSection !== undefined) {
        const target = fnAt(targetSection, targetInsn);
        if (!target) throw new FormatError(`${where}: ${fn.name}+${j}: call target ${targetSection}+${targetInsn} is not inside a function`);
        fixups.push({ at: start + j, target, targetInsn: targetInsn - target.sectionOffset, what: `${fn.name}+${j}`, last: j + 1 >= fn.insnCount });
        if (!placed.has(target)) scan(place(target));
      }
      if (op === LD_IMM64) j++;
    }
  };
  const self = obj.functions.find((f) => f.section === p.section && f.sectionOffset === p.sectionOffset) ?? p;
  scan(place(self));
  // The exception callback: nothing calls it, the verifier runs it when the program throws, so
  // libbpf appends it (and what it reaches) after everything the program calls.
  if (opts.exceptionCallbacks !== false) {
    const cb = exceptionCallback(obj, p.name, where);
    if (cb && !placed.has(cb)) scan(place(cb));
  }

  const insns = new Uint8Array(total * INSN_SIZE);
  for (const pl of order) insns.set(chunks.get(pl)!, pl.start * INSN_SIZE);
  const dv = new DataView(insns.buffer);
  const setSrc = (i: number, s: number) => (insns[i * INSN_SIZE + 1] = (s << 4) | (insns[i * INSN_SIZE + 1]! & 0x0f));
  const setImm = (i: number, v: number) => dv.setInt32(i * INSN_SIZE + 4, v, true);
  const imm = (i: number) => dv.getInt32(i * INSN_SIZE + 4, true);

  // Pass 2: branch offsets (relative to the next instruction, as the kernel reads them).
  for (const f of fixups) {
    const dest = placed.get(f.target)!.start + f.targetInsn;
    const rel = dest - f.at - 1;
    const op = insns[f.at * INSN_SIZE]!;
    if (op === CALL) setSrc(f.at, BPF_PSEUDO_CALL);
    else if (op === LD_IMM64) {
      if (f.last) throw new FormatError(`${where}: ${f.what}: ld_imm64 in the function's last slot (its second half is outside)`);
      setSrc(f.at, BPF_PSEUDO_FUNC);
      setImm(f.at + 1, 0);
    } else throw new FormatError(`${where}: ${f.what}: code reference on opcode 0x${op.toString(16)}`);
    setImm(f.at, rel);
  }

  // Pass 3: map, data, extern and jump table references.
  const mapRefs: LinkedProgram['mapRefs'] = [];
  const externRefs: LinkedProgram['externRefs'] = [];
  const jumpTables: LinkedJumpTable[] = [];
  const kconfigMap = obj.maps.findIndex((m) => m.kind === 'kconfig');
  for (const { fn, start } of order) {
    for (const r of obj.relocs.get(fn.section) ?? []) {
      if (r.insn < fn.sectionOffset || r.insn >= fn.sectionOffset + fn.insnCount) continue;
      const i = start + r.insn - fn.sectionOffset;
      // Map, data and (non-call) extern references patch both halves of a ld_imm64: the second must be in the function.
      if ((r.kind === 'map' || r.kind === 'data' || r.kind === 'jumptable' || (r.kind === 'extern' && !r.call)) && r.insn + 1 >= fn.sectionOffset + fn.insnCount) {
        throw new FormatError(`${where}: ${fn.name}+${r.insn - fn.sectionOffset}: ${r.kind} reference on a ld_imm64 in the function's last slot (its second half is outside)`);
      }
      switch (r.kind) {
        case 'map':
          setSrc(i, BPF_PSEUDO_MAP_FD);
          setImm(i, r.map);
          setImm(i + 1, 0);
          mapRefs.push({ insn: i, map: r.map });
          break;
        case 'data': {
          const off = r.offset + (r.map === obj.arena?.map ? (opts.arenaDataOffset ?? 0) : 0);
          setSrc(i, BPF_PSEUDO_MAP_VALUE);
          setImm(i, r.map);
          setImm(i + 1, off);
          mapRefs.push({ insn: i, map: r.map, offset: off });
          break;
        }
        case 'extern': {
          const e = obj.externs[r.extern]!;
          externRefs.push({ insn: i, extern: r.extern });
          if (e.kind === 'kconfig') {
            if (kconfigMap < 0) throw new FormatError(`${where}: kconfig extern '${e.name}' without a .kconfig map`);
            const off = e.offset! + imm(i);
            setSrc(i, BPF_PSEUDO_MAP_VALUE);
            setImm(i, kconfigMap);
            setImm(i + 1, off);
            mapRefs.push({ insn: i, map: kconfigMap, offset: off });
          } else if (r.call) {
            setSrc(i, BPF_PSEUDO_KFUNC_CALL);
            setImm(i, 0);
          } else {
            setSrc(i, 0);
            setImm(i, 0);
            setImm(i + 1, 0);
          }
          break;
        }
        case 'jumptable': {
          // One table per program however many loads of it (libbpf keys its maps by program and
          // table), its entries moved with the function that loads it.
          let t = jumpTables.findIndex((x) => x.offset === r.offset);
          if (t < 0) {
            if (!obj.jumpTables) throw new FormatError(`${where}: ${fn.name}+${r.insn - fn.sectionOffset}: jump table '${r.symbol}' but no ${JUMPTABLES_SECTION} section`);
            const targets = jumpTableTargets(obj.jumpTables, r, fn.sectionOffset, start, where);
            t = jumpTables.push({ symbol: r.symbol, offset: r.offset, targets, insns: [] }) - 1;
          }
          jumpTables[t]!.insns.push(i);
          setSrc(i, BPF_PSEUDO_MAP_VALUE);
          setImm(i, t);
          dv.setInt16(i * INSN_SIZE + 2, 0, true);
          break;
        }
        default:
          break;
      }
    }
  }

  // func_info / line_info for every placed function, re-based.
  const funcInfo: KernelFuncInfo[] = [];
  const lineInfo: KernelLineInfo[] = [];
  if (obj.btfExt) {
    for (const { fn, start } of order) {
      for (const r of infoFor(obj.btfExt.funcInfo.get(fn.section), fn, obj.source, 'func_info')) funcInfo.push({ insnOff: start + r.insnOff, typeId: r.typeId });
      for (const r of infoFor(obj.btfExt.lineInfo.get(fn.section), fn, obj.source, 'line_info')) lineInfo.push({ ...r, insnOff: start + r.insnOff });
    }
    funcInfo.sort((a, b) => a.insnOff - b.insnOff);
    lineInfo.sort((a, b) => a.insnOff - b.insnOff);
  }
  mapRefs.sort((a, b) => a.insn - b.insn);
  externRefs.sort((a, b) => a.insn - b.insn);

  const out: LinkedProgram = {
    name: p.name, type: p.type, sleepable: p.sleepable, insns, funcInfo, lineInfo, mapRefs, externRefs, jumpTables,
    layout: order.map(({ fn, start }) => ({ name: fn.name, section: fn.section, start, insnCount: fn.insnCount })),
  };
  if (p.expectedAttachType !== undefined) out.expectedAttachType = p.expectedAttachType;
  if (p.attachTo !== undefined) out.attachTo = p.attachTo;
  return out;
}

const EXCEPTION_CALLBACK = 'exception_callback:';
const declTagsOf = new WeakMap<Btf, { name: string; target: number }[]>();

/** The object's `exception_callback:<name>` decl tags on whole functions (component -1), read once per BTF. */
function exceptionTags(btf: Btf): { name: string; target: number }[] {
  let tags = declTagsOf.get(btf);
  if (!tags) {
    tags = [];
    for (let id = btf.startId; id < btf.count; id++) {
      if (btf.kind(id) !== Kind.DECL_TAG) continue;
      const t = btf.type(id);
      if (t.kind !== Kind.DECL_TAG || t.componentIdx !== -1 || !t.name.startsWith(EXCEPTION_CALLBACK)) continue;
      tags.push({ name: t.name.slice(EXCEPTION_CALLBACK.length), target: t.type });
    }
    declTagsOf.set(btf, tags);
  }
  return tags;
}

/**
 * The subprogram `prog` names as its exception callback (`__attribute__((btf_decl_tag(
 * "exception_callback:name")))` on the program's function), with libbpf's rules
 * (bpf_prog_assign_exc_cb): the tag must sit on a global function; the callback must be a global,
 * non-hidden function of .text; two tags on one program append neither (the verifier refuses it).
 */
function exceptionCallback(obj: ObjectSpec, prog: string, where: string): FunctionSpec | undefined {
  let found: FunctionSpec | undefined;
  for (const tag of exceptionTags(obj.btf)) {
    const fn = obj.btf.type(tag.target);
    if (fn.kind !== Kind.FUNC || fn.linkage !== 1) throw new FormatError(`${where}: the exception_callback:${tag.name} decl tag is not on a main program (a global function)`);
    if (fn.name !== prog) continue;
    if (found) return undefined;
    if (tag.name === '') throw new FormatError(`${where}: its exception_callback: decl tag names no function`);
    const cb = obj.functions.filter((f) => f.section === '.text' && f.name === tag.name);
    if (cb.length === 0) throw new FormatError(`${where}: exception callback '${tag.name}' is not a function of .text`);
    if (cb.length > 1) throw new FormatError(`${where}: more than one function is named '${tag.name}', its exception callback`);
    if (!cb[0]!.global || cb[0]!.hidden) throw new FormatError(`${where}: exception callback '${tag.name}' must be a global, non-hidden function`);
    found = cb[0];
  }
  return found;
}
