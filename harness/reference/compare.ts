// Differential comparison of our loader against the reference (libbpf) in the same kernel: the
// kernel's translated instructions (BPF_OBJ_GET_INFO_BY_FD xlated_prog_insns) of both loads, and
// the per-program verdicts. Pure: no koffi, no node:*.
//
// What legitimately differs between two loads of the same program in the same kernel: map
// identity. The kernel dumps a map reference (ld_imm64) as src BPF_PSEUDO_MAP_FD or
// BPF_PSEUDO_MAP_VALUE with the map's *id* in the first imm and the value offset in the second
// (the verifier had turned it into a kernel address; the dump maps it back), and each load
// creates its own maps. So map ids are compared up to a consistent renaming (first appearance
// order): a program that reads the wrong map or the wrong offset still differs. Everything else
// (helper call immediates, kernel addresses of ksyms, subprogram indices) is the same kernel's
// answer to the same question and must be identical.

import { BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, BPF_PSEUDO_MAP_VALUE, CALL, formatInsn, INSN_SIZE, LD_IMM64, readInsn } from '../core/insn.js';
import type { RelocationRecord } from '../core/relo/report.js';

export interface XlatedDiff {
  /** Instruction slot index (an ld_imm64 takes two). */
  insn: number;
  ours: string;
  theirs: string;
}

export interface XlatedComparison {
  equal: boolean;
  /** Instruction slots compared (the shorter stream's length when they differ in length). */
  insns: number;
  firstDiff?: XlatedDiff;
  /**
   * Equal but for user-space addresses in `ld_imm64` (src 0), all moved by this one page-aligned
   * distance (theirs − ours, hex, signed): an arena's globals, addressed where each load's mmap put the arena
   * when the object leaves the address to the kernel (map_extra 0). Per load, like map ids.
   */
  userAddressDelta?: string;
  /**
   * Equal but for this many kernel pointers the verifier itself loads into r3 right before a helper
   * call (`r3 = prog->aux` for bpf_timer_set_callback): the address of this load's bpf_prog_aux,
   * different in any two loads.
   */
  progAuxPointers?: number;
}

/** x86-64 and arm64 (48-bit) user space ends here; kernel addresses (0xffff…) are never normalised. */
const USER_ADDRESS_END = 0x0000_8000_0000_0000n;
/** Where the kernel's half of a 48-bit address space starts (x86-64, arm64). */
const KERNEL_ADDRESS_START = 0xffff_8000_0000_0000n;
const PAGE = 4096n;

const MAP_SRCS = new Set([BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE]);

/** Hex (as in ProgramOutcome.xlated) to bytes; throws on a malformed string. */
export function hexBytes(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new Error(`xlated is not a hex string (${hex.length} characters)`);
  const b = new Uint8Array(hex.length / 2);
  for (let i = 0; i < b.length; i++) b[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return b;
}

/** gotox (BPF_JMP | BPF_JA | BPF_X): a program with one loads jump tables (BPF_MAP_TYPE_INSN_ARRAY). */
const GOTOX = 0x0d;

/**
 * One instruction (two slots for ld_imm64) as a key with map ids renamed by first appearance; in a
 * program with a gotox, kernel addresses loaded by ld_imm64 (src 0) too: the kernel dumps a jump
 * table's load as the address of that load's INSN_ARRAY map (it has no map_direct_value_meta to
 * turn it back into a map id), different in any two loads, like map ids.
 */
class Normaliser {
  private ids = new Map<number, number>();
  private tables = new Map<bigint, number>();
  private readonly gotox: boolean;
  constructor(readonly bytes: Uint8Array) {
    this.gotox = bytes.some((b, i) => i % INSN_SIZE === 0 && b === GOTOX);
  }
  get slots(): number {
    return Math.floor(this.bytes.length / INSN_SIZE);
  }
  width(i: number): number {
    return this.bytes[i * INSN_SIZE] === LD_IMM64 && i + 1 < this.slots ? 2 : 1;
  }
  key(i: number): { key: string; map?: number } {
    const w = this.width(i);
    const raw = this.bytes.subarray(i * INSN_SIZE, (i + w) * INSN_SIZE);
    const { src, imm } = readInsn(this.bytes, i);
    if (w === 2 && MAP_SRCS.has(src)) {
      let n = this.ids.get(imm);
      if (n === undefined) this.ids.set(imm, (n = this.ids.size));
      // Everything but the first slot's imm (the map id), which becomes the map's ordinal.
      const rest = [...raw.subarray(0, 4), ...raw.subarray(8)].map((x) => x.toString(16).padStart(2, '0')).join('');
      return { key: `${rest}/map#${n}`, map: n };
    }
    if (w === 2 && src === 0 && this.gotox) {
      const dv = new DataView(this.bytes.buffer, this.bytes.byteOffset + i * INSN_SIZE, 2 * INSN_SIZE);
      const value = BigInt(dv.getUint32(4, true)) | (BigInt(dv.getUint32(12, true)) << 32n);
      if (value >= KERNEL_ADDRESS_START) {
        let n = this.tables.get(value);
        if (n === undefined) this.tables.set(value, (n = this.tables.size));
        const rest = [...raw.subarray(0, 4), ...raw.subarray(8, 12)].map((x) => x.toString(16).padStart(2, '0')).join('');
        return { key: `${rest}/insn_array#${n}` };
      }
    }
    return { key: [...raw].map((x) => x.toString(16).padStart(2, '0')).join('') };
  }
  /** A `ld_imm64` with src 0 and a user-space 64-bit value: that value (the rest of the pair in `rest`). */
  userAddress(i: number): { value: bigint; rest: string } | undefined {
    if (this.width(i) !== 2 || readInsn(this.bytes, i).src !== 0) return undefined;
    const dv = new DataView(this.bytes.buffer, this.bytes.byteOffset + i * INSN_SIZE, 2 * INSN_SIZE);
    const value = BigInt(dv.getUint32(4, true)) | (BigInt(dv.getUint32(12, true)) << 32n);
    if (value === 0n || value >= USER_ADDRESS_END) return undefined;
    const raw = this.bytes.subarray(i * INSN_SIZE, (i + 2) * INSN_SIZE);
    return { value, rest: [...raw.subarray(0, 4), ...raw.subarray(8, 12)].join(',') };
  }
  /**
   * A `ld_imm64 r3` of a kernel address (src 0) followed by a helper call: what the verifier inserts
   * to hand bpf_timer_set_callback (and its kin) this program's bpf_prog_aux. The pair's bytes
   * without the address, and the call's, as a key.
   */
  progAux(i: number): string | undefined {
    if (this.width(i) !== 2 || i + 2 >= this.slots) return undefined;
    const { src, dst } = readInsn(this.bytes, i);
    const call = readInsn(this.bytes, i + 2);
    if (src !== 0 || dst !== 3 || call.code !== CALL || call.src !== 0) return undefined;
    const dv = new DataView(this.bytes.buffer, this.bytes.byteOffset + i * INSN_SIZE, 2 * INSN_SIZE);
    const value = BigInt(dv.getUint32(4, true)) | (BigInt(dv.getUint32(12, true)) << 32n);
    if (value < KERNEL_ADDRESS_START) return undefined;
    return [...this.bytes.subarray(i * INSN_SIZE, i * INSN_SIZE + 4), ...this.bytes.subarray((i + 2) * INSN_SIZE, (i + 3) * INSN_SIZE)].join(',');
  }
  text(i: number, map?: number): string {
    const t = formatInsn(this.bytes, i);
    return map === undefined ? t : `${t} (map #${map} of this load)`;
  }
}

/**
 * Compares two xlated instruction streams (hex) with map identity normalised; names the first
 * differing instruction in both loaders' words (formatInsn text).
 */
export function compareXlated(ours: string, theirs: string): XlatedComparison {
  const a = new Normaliser(hexBytes(ours));
  const b = new Normaliser(hexBytes(theirs));
  let i = 0;
  let delta: bigint | undefined;
  let progAux = 0;
  while (i < a.slots && i < b.slots) {
    const ka = a.key(i);
    const kb = b.key(i);
    const auxA = ka.key !== kb.key ? a.progAux(i) : undefined;
    if (auxA !== undefined && auxA === b.progAux(i)) {
      progAux++;
    } else if (ka.key !== kb.key) {
      // An arena address: the same instruction, the value moved by the one distance every such pair moved by.
      const ua = a.userAddress(i);
      const ub = b.userAddress(i);
      const d = ua && ub && ua.rest === ub.rest ? ub.value - ua.value : undefined;
      if (d === undefined || d % PAGE !== 0n || (delta !== undefined && d !== delta)) return { equal: false, insns: i, firstDiff: { insn: i, ours: a.text(i, ka.map), theirs: b.text(i, kb.map) } };
      delta = d;
    }
    i += a.width(i);
  }
  if (a.slots !== b.slots) {
    return {
      equal: false,
      insns: i,
      firstDiff: { insn: i, ours: i < a.slots ? a.text(i) : `<end: ${a.slots} insns>`, theirs: i < b.slots ? b.text(i) : `<end: ${b.slots} insns>` },
    };
  }
  return { equal: true, insns: a.slots, ...(delta !== undefined ? { userAddressDelta: `${delta < 0n ? '-' : ''}0x${(delta < 0n ? -delta : delta).toString(16)}` } : {}), ...(progAux ? { progAuxPointers: progAux } : {}) };
}

/** One CO-RE decision libbpf logged: `prog 'p': relo #N: patched insn #I (...) imm A -> B` or poisoned. */
export interface LibbpfRelo {
  relo: number;
  insn: number;
  /** `imm 8 -> 1752`, `off 4 -> 1268`, `imm64 27 -> 27`; absent when poisoned. */
  patches: { field: string; from: string; to: string }[];
  poisoned: boolean;
}

/** Parses libbpf's relocation decision lines (ReferenceOutcome.relocations), in relo order. */
export function parseLibbpfRelos(lines: string[]): LibbpfRelo[] {
  const byRelo = new Map<number, LibbpfRelo>();
  const get = (relo: number, insn: number) => {
    let r = byRelo.get(relo);
    if (!r) byRelo.set(relo, (r = { relo, insn, patches: [], poisoned: false }));
    return r;
  };
  for (const l of lines) {
    let m = /relo #(\d+): patched insn #(\d+) \([^)]*\) (\w+) (-?\w+) -> (-?\w+)/.exec(l);
    if (m) {
      get(Number(m[1]), Number(m[2])).patches.push({ field: m[3]!, from: m[4]!, to: m[5]! });
      continue;
    }
    m = /relo #(\d+): substituting insn #(\d+) w\/ invalid insn/.exec(l);
    if (m) get(Number(m[1]), Number(m[2])).poisoned = true;
  }
  return [...byRelo.values()].sort((x, y) => x.relo - y.relo);
}

/** The part of our ProgramOutcome (harness/loader/collection.ts) the comparison reads. */
export interface OursLike {
  name: string;
  status: 'loaded' | 'rejected' | 'relocation-failed' | 'error' | 'not-loaded';
  reason?: string;
  xlated?: string;
  relocations?: RelocationRecord[];
}

/** The part of ReferenceOutcome (harness/reference/libbpf.ts) the comparison reads. */
export interface TheirsLike {
  name: string;
  status: 'loaded' | 'rejected' | 'relocation-failed' | 'error' | 'not-loaded';
  reason?: string;
  xlated?: string;
  relocations?: string[];
}

export type ComparisonVerdict = 'same' | 'differs' | 'only-ours-loaded' | 'only-reference-loaded';

export interface OutcomeComparison {
  program: string;
  /** The two statuses compared: ours (an object our reader refused is our 'error'), libbpf's. */
  ours: string;
  theirs: string;
  verdict: ComparisonVerdict;
  /** One line for logs and reports. */
  line: string;
  xlated?: XlatedComparison;
  /** The first CO-RE relocation (in .BTF.ext order) where the two loaders decided differently. */
  reloDiff?: string;
}

/**
 * The first relocation where our decision (target value / poisoned) and libbpf's differ, compared
 * in relocation order; undefined when they agree or either side has no records.
 */
export function compareRelocations(ours: RelocationRecord[], theirs: LibbpfRelo[]): { agree: number; firstDiff?: string } | undefined {
  if (!ours.length || !theirs.length) return undefined;
  const n = Math.min(ours.length, theirs.length);
  for (let k = 0; k < n; k++) {
    const o = ours[k]!;
    const t = theirs[k]!;
    const ourText = o.status === 'ok' ? `${o.local} -> ${o.target}` : o.status;
    const last = t.patches.at(-1);
    const theirText = t.poisoned ? 'poisoned' : last ? `${last.from} -> ${last.to}` : 'no patch logged';
    const same = o.status === 'ok' ? !t.poisoned && last !== undefined && o.target !== null && sameNumber(last.to, o.target) : t.poisoned && o.status === 'poisoned';
    if (!same) return { agree: k, firstDiff: `relo #${k} ${o.kind} ${o.type} ${o.spec}: ours ${ourText}, libbpf ${theirText} (insn #${t.insn})` };
  }
  if (ours.length !== theirs.length) return { agree: n, firstDiff: `relocation count: ours ${ours.length}, libbpf ${theirs.length}` };
  return { agree: n };
}

function sameNumber(text: string, n: number): boolean {
  try {
    return BigInt(text) === BigInt(n);
  } catch {
    return false;
  }
}

/** Our outcome against libbpf's for the same program in the same kernel, as a one-line verdict. */
export function compareOutcomes(ours: OursLike, theirs: TheirsLike): OutcomeComparison {
  const program = ours.name;
  const relo = compareRelocations(ours.relocations ?? [], parseLibbpfRelos(theirs.relocations ?? []));
  const reloText = relo ? (relo.firstDiff ? `; relocations differ: ${relo.firstDiff}` : `; ${relo.agree} relocations agree`) : '';
  const base = { program, ours: ours.status, theirs: theirs.status, ...(relo?.firstDiff ? { reloDiff: relo.firstDiff } : {}) };
  if (ours.status === 'loaded' && theirs.status === 'loaded') {
    if (ours.xlated === undefined || theirs.xlated === undefined) {
      return { ...base, verdict: 'differs', line: `${program}: both loaded, but ${ours.xlated === undefined ? 'our' : "libbpf's"} xlated instructions are missing${reloText}` };
    }
    const x = compareXlated(ours.xlated, theirs.xlated);
    if (x.equal) return { ...base, verdict: 'same', xlated: x, line: `${program}: same (${x.insns} xlated insns identical${x.userAddressDelta !== undefined ? `, arena addresses moved by ${x.userAddressDelta} where each load mapped its arena` : ''}${x.progAuxPointers ? `, ${x.progAuxPointers} bpf_prog_aux pointer(s) the verifier loads for a helper differ, as between any two loads` : ''}${reloText})` };
    const d = x.firstDiff!;
    return { ...base, verdict: 'differs', xlated: x, line: `${program}: differs at xlated insn ${d.insn}: ours \`${d.ours}\`, libbpf \`${d.theirs}\`${reloText}` };
  }
  if (ours.status === 'loaded') return { ...base, verdict: 'only-ours-loaded', line: `${program}: ours loaded, libbpf ${theirs.status}: ${theirs.reason ?? '?'}${reloText}` };
  if (theirs.status === 'loaded') return { ...base, verdict: 'only-reference-loaded', line: `${program}: libbpf loaded, ours ${ours.status}: ${ours.reason ?? '?'}${reloText}` };
  if (ours.status === theirs.status) return { ...base, verdict: 'same', line: `${program}: same (both ${ours.status}; ours: ${ours.reason ?? '?'}; libbpf: ${theirs.reason ?? '?'})` };
  return { ...base, verdict: 'differs', line: `${program}: ours ${ours.status} (${ours.reason ?? '?'}), libbpf ${theirs.status} (${theirs.reason ?? '?'})${reloText}` };
}
