// Applies a resolved CO-RE relocation to the instruction it names, and applies all relocations of
// an object's sections in one call.
//
// Supported instruction forms: ALU/ALU64 with an immediate operand, LDX/ST/STX memory offsets
// (the load/store size follows the target field when that keeps the value's meaning), and
// LD_IMM64. A relocation that found no target poisons its instruction with a call to helper
// 0xbad2310, which the verifier rejects only if that instruction is reachable.

import { Btf, essentialName } from '../btf/btf.js';
import { CoreReloKind as ReloKind } from '../btf/ext.js';
import { RelocationError } from '../errors.js';
import { type CandidateCache, type ReloResult, type Target, resolveRelo } from './engine.js';
import type { CoreReloRecord } from './spec.js';

export const POISON_HELPER = 0xbad2310;

const CLS_LD = 0x00;
const CLS_LDX = 0x01;
const CLS_ST = 0x02;
const CLS_STX = 0x03;
const CLS_ALU = 0x04;
const CLS_JMP = 0x05;
const CLS_ALU64 = 0x07;
const SRC_K = 0x00;
const LD_IMM_DW = 0x18; // BPF_LD | BPF_IMM | BPF_DW
const CALL = 0x80;

const SIZE_TO_BYTES: Record<number, number> = { 0x18: 8, 0x00: 4, 0x08: 2, 0x10: 1 };
const BYTES_TO_SIZE: Record<number, number> = { 8: 0x18, 4: 0x00, 2: 0x08, 1: 0x10 };

function poison(dv: DataView, at: number): void {
  dv.setUint8(at, CLS_JMP | CALL);
  dv.setUint8(at + 1, 0);
  dv.setInt16(at + 2, 0, true);
  dv.setInt32(at + 4, POISON_HELPER, true);
}

/**
 * Patches instruction `idx` of `insns` in place and says whether it was patched or poisoned.
 * Throws RelocationError on an unexpected instruction.
 */
export function patchInsn(insns: Uint8Array, idx: number, res: ReloResult): 'patched' | 'poisoned' {
  const at = idx * 8;
  if (idx < 0 || at + 8 > insns.length) throw new RelocationError(`insn #${idx} is outside the section (${insns.length / 8} insns)`);
  const dv = new DataView(insns.buffer, insns.byteOffset, insns.byteLength);
  const code = dv.getUint8(at);
  const isLdImm64 = code === LD_IMM_DW;
  const doPoison = (): 'poisoned' => {
    if (isLdImm64 && at + 16 <= insns.length) poison(dv, at + 8);
    poison(dv, at);
    return 'poisoned';
  };
  if (res.status === 'poisoned') return doPoison();
  if (res.status !== 'ok' || res.new === undefined) throw new RelocationError(`relocation was not resolved: ${res.reason ?? res.status}`);
  const orig = BigInt.asUintN(64, res.orig);
  const nv = res.new;
  const cls = code & 0x07;
  switch (cls) {
    case CLS_ALU:
    case CLS_ALU64: {
      if ((code & 0x08) !== SRC_K) throw new RelocationError(`insn #${idx}: ALU instruction has a register operand, expected an immediate`);
      const imm = dv.getInt32(at + 4, true);
      if (res.validate && BigInt.asUintN(64, BigInt(imm)) !== orig) throw new RelocationError(`insn #${idx} (ALU): holds ${imm}, expected ${res.orig}`);
      dv.setInt32(at + 4, Number(BigInt.asIntN(32, nv)), true);
      return 'patched';
    }
    case CLS_LDX:
    case CLS_ST:
    case CLS_STX: {
      const off = dv.getInt16(at + 2, true);
      if (res.validate && BigInt.asUintN(64, BigInt(off)) !== orig) throw new RelocationError(`insn #${idx} (LDX/ST/STX): offset ${off}, expected ${res.orig}`);
      if (nv > 32767n) throw new RelocationError(`insn #${idx} (LDX/ST/STX): offset ${nv} does not fit 16 bits`);
      if (res.failMemszAdjust) return doPoison();
      dv.setInt16(at + 2, Number(nv), true);
      if (res.newSize !== res.origSize) {
        const have = SIZE_TO_BYTES[code & 0x18];
        if (have !== res.origSize) throw new RelocationError(`insn #${idx} (LDX/ST/STX): accesses ${have} bytes, expected ${res.origSize}`);
        const sz = BYTES_TO_SIZE[res.newSize];
        if (sz === undefined) throw new RelocationError(`insn #${idx} (LDX/ST/STX): target field size ${res.newSize} is not a load size`);
        dv.setUint8(at, (code & 0xe0) | sz | cls);
      }
      return 'patched';
    }
    case CLS_LD: {
      const regs = dv.getUint8(at + 1);
      if (!isLdImm64 || at + 16 > insns.length || (regs & 0xf0) !== 0 || dv.getInt16(at + 2, true) !== 0 ||
          dv.getUint8(at + 8) !== 0 || dv.getUint8(at + 9) !== 0 || dv.getInt16(at + 10, true) !== 0) {
        throw new RelocationError(`insn #${idx} (LD_IMM64) has an unexpected form`);
      }
      const imm = BigInt(dv.getUint32(at + 4, true)) | (BigInt.asUintN(64, BigInt(dv.getInt32(at + 12, true))) << 32n);
      if (res.validate && BigInt.asUintN(64, imm) !== orig) throw new RelocationError(`insn #${idx} (LD_IMM64): holds ${imm}, expected ${res.orig}`);
      const u = BigInt.asUintN(64, nv);
      dv.setUint32(at + 4, Number(u & 0xffffffffn), true);
      dv.setUint32(at + 12, Number(u >> 32n), true);
      return 'patched';
    }
    default:
      throw new RelocationError(`insn #${idx}: cannot relocate instruction with opcode 0x${code.toString(16)}`);
  }
}

export interface AppliedRelo extends ReloResult {
  section: string;
  /** Instruction index within the section. */
  insn: number;
}

/**
 * The essential names of the root types an object's CO-RE relocations ask the target about: what
 * one prefetch pass over the target's names must answer.
 */
export function reloRootNames(local: Btf, relos: ReadonlyMap<string, readonly CoreReloRecord[]>): Set<string> {
  const roots = new Set<string>();
  for (const list of relos.values()) {
    for (const r of list) {
      if (r.kind === ReloKind.TYPE_ID_LOCAL || r.typeId >= local.count) continue; // a bad id is reported per relocation
      roots.add(essentialName(local.name(r.typeId)));
    }
  }
  return roots;
}

/** reloRootNames of several objects at once (a loader with several objects asks in one pass). */
export function objectsRootNames(objs: Iterable<{ btf: Btf; btfExt?: { coreRelos: ReadonlyMap<string, readonly CoreReloRecord[]> } }>): Set<string> {
  const roots = new Set<string>();
  for (const o of objs) if (o.btfExt) for (const n of reloRootNames(o.btf, o.btfExt.coreRelos)) roots.add(n);
  return roots;
}

/**
 * Resolves and applies every CO-RE relocation of an object. `sections` holds each executable
 * section's instruction bytes and is patched in place. Relocation problems are recorded per
 * relocation (status 'error'), never thrown, so a report lists all of them.
 */
export function applyCoreRelocations(
  local: Btf,
  relos: ReadonlyMap<string, readonly CoreReloRecord[]>,
  sections: ReadonlyMap<string, Uint8Array>,
  target: Target,
): AppliedRelo[] {
  const cache: CandidateCache = new Map();
  const out: AppliedRelo[] = [];
  // One pass over the target's names for every root type the object asks about.
  target.vmlinux.prefetchEssential(reloRootNames(local, relos));
  for (const [section, list] of relos) {
    const insns = sections.get(section);
    for (const relo of list) {
      const insn = relo.insnOff / 8;
      let res: ReloResult = resolveRelo(local, relo, target, cache);
      if (!insns || !Number.isInteger(insn)) {
        res = { ...res, status: 'error', reason: insns ? `instruction offset ${relo.insnOff} is not a multiple of 8` : `section ${section} has no instructions` };
      } else if (res.status !== 'error') {
        try {
          const done = patchInsn(insns, insn, res);
          if (res.status === 'ok' && done === 'poisoned') {
            res = { ...res, status: 'poisoned', reason: 'load/store size would change for a field that is neither a pointer nor an unsigned integer' };
          }
        } catch (e) {
          if (!(e instanceof RelocationError)) throw e;
          res = { ...res, status: 'error', reason: e.message };
        }
      }
      out.push({ ...res, section, insn });
    }
  }
  return out;
}
