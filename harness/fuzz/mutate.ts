// Seeded mutators. Generic ones (bit flips, interesting bytes and words, truncation, duplicated
// or deleted ranges) and structure-aware ones that aim at the fields a loader trusts: section
// headers, symbols, BTF type records (type loops, huge vlen/nelems, nested arrays whose sizes
// multiply past 2^53, dangling ids, bad string offsets) and CO-RE records (access strings like
// "0:99999:0", kinds 13..255, wild type ids and instruction offsets).

import { type Layout, type Field, type TypeRec, MODIFIER_KINDS, K, u32 } from './layout.js';

/** sfc32: small, fast, seedable; good enough to spread mutations. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number, stream = 0) {
    this.a = seed >>> 0;
    this.b = (stream ^ 0x9e3779b9) >>> 0;
    this.c = 0x243f6a88;
    this.d = 1;
    for (let i = 0; i < 12; i++) this.u32();
  }
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
}

export const INTERESTING8 = [0, 1, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40];
export const INTERESTING32 = [0, 1, 2, 3, 4, 7, 8, 12, 16, 24, 64, 0xff, 0xffff, 0x10000, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff, 0x4000_0000, 0x0100_0000];

const ACCESS_STRINGS = ['0:99999:0', '0:-1', '', '0::1', ':', '0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0',
  '99999999999999999999', '0:1e9', 'x', '1', '0:4294967295', '0:1:2:3:4:5', '-0', '0:0x10', '0 :1', '4294967296'];

export interface Mutated {
  bytes: Uint8Array;
  steps: string[];
}

type Mut = (b: Uint8Array, rng: Rng, lay: Layout) => { bytes?: Uint8Array; step: string } | undefined;

function put(b: Uint8Array, off: number, size: number, v: number): void {
  if (off < 0 || off + size > b.length) return;
  if (size === 8) {
    put(b, off, 4, v % 0x1_0000_0000);
    put(b, off + 4, 4, Math.floor(v / 0x1_0000_0000));
    return;
  }
  for (let i = 0; i < size; i++) b[off + i] = Math.floor(v / 2 ** (8 * i)) & 0xff;
}

function interestingFor(f: Field, rng: Rng, b: Uint8Array): number {
  const cur = f.off + 4 <= b.length ? u32(b, f.off) : 0;
  switch (rng.int(6)) {
    case 0: return rng.pick(INTERESTING32);
    case 1: return (cur + rng.int(9) - 4) >>> 0; // off by a few
    case 2: return b.length + rng.int(64) - 32; // around the end of the file
    case 3: return f.size === 8 ? rng.pick([2 ** 53, 2 ** 63, 2 ** 64 - 1, 2 ** 32, 2 ** 53 - 1]) : rng.pick(INTERESTING32);
    case 4: return rng.u32();
    default: return cur * 2 + rng.int(2);
  }
}

// --- generic ---
const bitFlip: Mut = (b, rng) => {
  const n = 1 + rng.int(8);
  const at: number[] = [];
  for (let i = 0; i < n; i++) {
    const o = rng.int(b.length);
    b[o]! ^= 1 << rng.int(8);
    at.push(o);
  }
  return { step: `bitflip @${at.join(',')}` };
};
const byteSet: Mut = (b, rng) => {
  const o = rng.int(b.length);
  const v = rng.pick(INTERESTING8);
  b[o] = v;
  return { step: `byte @${o} = 0x${v.toString(16)}` };
};
const word32: Mut = (b, rng) => {
  const o = rng.int(b.length >> 2) << 2;
  const v = rng.pick(INTERESTING32);
  put(b, o, 4, v);
  return { step: `u32 @${o} = 0x${v.toString(16)}` };
};
const truncate: Mut = (b, rng) => {
  const n = rng.chance(0.5) ? rng.int(b.length) : b.length - 1 - rng.int(Math.min(64, b.length));
  return { bytes: b.slice(0, Math.max(0, n)), step: `truncate to ${n}` };
};
const duplicate: Mut = (b, rng) => {
  const s = rng.int(b.length);
  const l = 1 + rng.int(Math.min(256, b.length - s));
  const at = rng.int(b.length);
  const out = new Uint8Array(b.length + l);
  out.set(b.subarray(0, at));
  out.set(b.subarray(s, s + l), at);
  out.set(b.subarray(at), at + l);
  return { bytes: out, step: `duplicate [${s},+${l}) at ${at}` };
};
const remove: Mut = (b, rng) => {
  const s = rng.int(b.length);
  const l = 1 + rng.int(Math.min(64, b.length - s));
  const out = new Uint8Array(b.length - l);
  out.set(b.subarray(0, s));
  out.set(b.subarray(s + l), s);
  return { bytes: out, step: `delete [${s},+${l})` };
};

// --- structure-aware ---
const field: Mut = (b, rng, lay) => {
  if (!lay.fields.length) return undefined;
  const f = rng.pick(lay.fields);
  const v = interestingFor(f, rng, b);
  put(b, f.off, f.size, v);
  return { step: `${f.label} @${f.off} = 0x${v.toString(16)}` };
};
const types = (lay: Layout, pred: (t: TypeRec) => boolean) => lay.btf?.types.filter(pred) ?? [];
const selfLoop: Mut = (b, rng, lay) => {
  const ts = types(lay, (t) => t.refs.length > 0);
  if (!ts.length) return undefined;
  const t = rng.pick(ts);
  const r = rng.pick(t.refs);
  put(b, r, 4, t.id);
  return { step: `btf type #${t.id}: ref @${r} = itself` };
};
const pairLoop: Mut = (b, rng, lay) => {
  const ts = types(lay, (t) => MODIFIER_KINDS.has(t.kind) || t.kind === K.ARRAY || t.kind === K.STRUCT);
  if (ts.length < 2) return undefined;
  const x = rng.pick(ts);
  const y = rng.pick(ts);
  if (x.refs.length === 0 || y.refs.length === 0) return undefined;
  put(b, x.refs[0]!, 4, y.id);
  put(b, y.refs[0]!, 4, x.id);
  return { step: `btf types #${x.id} <-> #${y.id} refer to each other` };
};
const typedefLoop: Mut = (b, rng, lay) => {
  // Turn a record with no extra data into a TYPEDEF/CONST/PTR of itself or of a later type that points back.
  const ts = types(lay, (t) => MODIFIER_KINDS.has(t.kind) || t.kind === 7 || t.kind === 12 || t.kind === 16);
  if (!ts.length) return undefined;
  const t = rng.pick(ts);
  const kind = rng.pick([K.TYPEDEF, 10, 9, K.PTR, 18, 11]);
  put(b, t.off + 4, 4, (kind << 24) >>> 0);
  const later = ts.find((u) => u.id > t.id && MODIFIER_KINDS.has(u.kind));
  if (later && rng.chance(0.5)) {
    put(b, t.off + 8, 4, later.id);
    put(b, later.off + 8, 4, t.id);
    return { step: `btf type #${t.id} -> kind ${kind} of #${later.id}, which points back` };
  }
  put(b, t.off + 8, 4, t.id);
  return { step: `btf type #${t.id} -> kind ${kind} of itself` };
};
const hugeVlen: Mut = (b, rng, lay) => {
  const ts = types(lay, (t) => t.vlen > 0 || t.kind === K.STRUCT);
  if (!ts.length) return undefined;
  const t = rng.pick(ts);
  const v = rng.pick([0xffff, 0x8000, t.vlen + 1, 0x7fff]);
  put(b, t.off + 4, 2, v);
  return { step: `btf type #${t.id} vlen = ${v}` };
};
const hugeNelems: Mut = (b, rng, lay) => {
  const arrays = types(lay, (t) => t.kind === K.ARRAY);
  if (!arrays.length) return undefined;
  const a = rng.pick(arrays);
  const n = rng.pick([0xffff_ffff, 0x8000_0000, 0x7fff_ffff, 0x1_0000]);
  put(b, a.nelems!, 4, n);
  const other = arrays.filter((x) => x.id !== a.id);
  if (other.length && rng.chance(0.6)) {
    // Nested arrays: a's element type is another huge array, so sizeof multiplies past 2^53.
    const c = rng.pick(other);
    put(b, c.nelems!, 4, 0xffff_ffff);
    put(b, a.refs[0]!, 4, c.id);
    return { step: `btf array #${a.id} nelems ${n} of array #${c.id} nelems 0xffffffff` };
  }
  return { step: `btf array #${a.id} nelems = ${n}` };
};
const danglingRef: Mut = (b, rng, lay) => {
  const ts = types(lay, (t) => t.refs.length > 0);
  if (!ts.length) return undefined;
  const t = rng.pick(ts);
  const r = rng.pick(t.refs);
  const n = lay.btf!.types.length;
  const v = rng.pick([n + 1, n + 2, 0xffff_ffff, 0x7fff_ffff, 0, rng.int(n + 1)]);
  put(b, r, 4, v);
  return { step: `btf type #${t.id}: ref @${r} = ${v}` };
};
const retarget: Mut = (b, rng, lay) => {
  // A type id pointing at a type of the wrong kind (a struct member typed as a FUNC, ...).
  const ts = types(lay, (t) => t.refs.length > 0);
  if (!ts.length) return undefined;
  const t = rng.pick(ts);
  const r = rng.pick(t.refs);
  const v = rng.pick(lay.btf!.types).id;
  put(b, r, 4, v);
  return { step: `btf type #${t.id}: ref @${r} = #${v}` };
};
const kindChange: Mut = (b, rng, lay) => {
  const ts = types(lay, () => true);
  if (!ts.length) return undefined;
  const t = rng.pick(ts);
  const k = rng.chance(0.3) ? 20 + rng.int(12) : rng.int(20);
  const info = u32(b, t.off + 4);
  put(b, t.off + 4, 4, ((info & 0x80ffffff) | (k << 24)) >>> 0);
  return { step: `btf type #${t.id} kind ${t.kind} -> ${k}` };
};
const nameOff: Mut = (b, rng, lay) => {
  const ts = types(lay, () => true);
  if (!ts.length) return undefined;
  const t = rng.pick(ts);
  const len = lay.btf!.strLen;
  const v = rng.pick([len, len - 1, len + 1, 0xffff_ffff, rng.int(len)]);
  // the type's own name, or a member/param name word
  const at = t.vlen > 0 && rng.chance(0.5) && (t.kind === K.STRUCT || t.kind === K.UNION || t.kind === 6 || t.kind === K.FUNC_PROTO) ? t.off + 12 : t.off;
  put(b, at, 4, v);
  return { step: `btf type #${t.id} name word @${at} = ${v}` };
};
const unterminate: Mut = (b, rng, lay) => {
  const s = lay.btf;
  if (!s || s.strLen < 2) return undefined;
  const o = s.strStart + s.strLen - 1 - rng.int(Math.min(s.strLen - 1, 16));
  b.fill(0x41, o, s.strStart + s.strLen);
  return { step: `btf strings unterminated from @${o}` };
};
const accessStr: Mut = (b, rng, lay) => {
  const recs = lay.coreRecs.filter((r) => r.str);
  if (!recs.length) return undefined;
  const r = rng.pick(recs);
  const { off, len } = r.str!;
  const want = rng.pick(ACCESS_STRINGS);
  const s = want.slice(0, len);
  for (let i = 0; i < len; i++) b[off + i] = i < s.length ? s.charCodeAt(i) : 0;
  return { step: `core_relo @${r.off}: access string "${s}"` };
};
const accessPtr: Mut = (b, rng, lay) => {
  const s = lay.btf;
  if (!s || !lay.coreRecs.length) return undefined;
  const r = rng.pick(lay.coreRecs);
  const v = rng.pick([rng.int(s.strLen), s.strLen, 0, 0xffff_ffff]);
  put(b, r.off + 8, 4, v);
  return { step: `core_relo @${r.off}: access string offset = ${v}` };
};
const reloKind: Mut = (b, rng, lay) => {
  if (!lay.coreRecs.length) return undefined;
  const r = rng.pick(lay.coreRecs);
  const k = rng.chance(0.5) ? rng.int(13) : 13 + rng.int(243);
  put(b, r.off + 12, 4, k);
  return { step: `core_relo @${r.off}: kind = ${k}` };
};
const reloType: Mut = (b, rng, lay) => {
  if (!lay.coreRecs.length) return undefined;
  const r = rng.pick(lay.coreRecs);
  const n = lay.btf?.types.length ?? 10;
  const v = rng.pick([0, rng.int(n + 1), n, n + 1, 0xffff_ffff]);
  put(b, r.off + 4, 4, v);
  return { step: `core_relo @${r.off}: type id = ${v}` };
};
const reloInsn: Mut = (b, rng, lay) => {
  if (!lay.coreRecs.length) return undefined;
  const r = rng.pick(lay.coreRecs);
  const cur = u32(b, r.off);
  const v = rng.pick([cur + 1, cur + 4, cur + 8, 0xffff_fff8, 0x7fff_fff8, cur * 16]) >>> 0;
  put(b, r.off, 4, v);
  return { step: `core_relo @${r.off}: insn_off = ${v}` };
};
const sectionRange: Mut = (b, rng, lay) => {
  if (!lay.shdrs.length) return undefined;
  const p = rng.pick(lay.shdrs);
  const which = rng.pick([24, 32, 40, 44, 4]);
  const v = which === 4 ? rng.pick([1, 2, 3, 8, 9, 4, 0x6fff_fff5]) : which >= 40 ? rng.pick([0, 1, lay.shdrs.length, 0xffff, 0xffff_ffff]) : rng.pick([0, b.length, b.length - 1, 0x4000_0000, 2 ** 53, 2 ** 64 - 1]);
  put(b, p + which, which >= 40 || which === 4 ? 4 : 8, v);
  return { step: `shdr @${p} +${which} = ${v}` };
};

// --- instructions: crafted jumps and calls for the linker and the reachability walk ---
function insn(b: Uint8Array, at: number, code: number, regs: number, off: number, imm: number): void {
  if (at < 0 || at + 8 > b.length) return;
  b[at] = code;
  b[at + 1] = regs;
  put(b, at + 2, 2, off & 0xffff);
  put(b, at + 4, 4, imm >>> 0);
}
const insns: Mut = (b, rng, lay) => {
  if (!lay.code.length) return undefined;
  const c = rng.pick(lay.code);
  const n = c.size >> 3;
  const i = rng.int(n);
  const at = c.off + i * 8;
  switch (rng.int(9)) {
    case 0: insn(b, at, 0x05, 0, -1, 0); return { step: `${c.name} insn ${i}: ja -1 (self loop)` };
    case 1: {
      const off = rng.pick([-i - 1, n - i, n - i - 1, 0x7fff, -0x8000, rng.int(n) - i - 1]);
      insn(b, at, rng.pick([0x05, 0x15, 0x55, 0xa5, 0x16, 0x06]), rng.int(11) | (rng.int(11) << 4), off, rng.pick([0, 1, -1]));
      return { step: `${c.name} insn ${i}: jump off ${off}` };
    }
    case 2: {
      // r1 = 0; loop: r1 += 1; if r1 < N goto loop — constant tracking must not spin N times.
      insn(b, at, 0xb7, 1, 0, 0);
      insn(b, at + 8, 0x07, 1, 0, 1);
      insn(b, at + 16, 0xa5, 1, -2, rng.pick([1_000_000, 0x7fff_ffff, 100_000]));
      return { step: `${c.name} insn ${i}: counting loop` };
    }
    case 3: {
      const imm = rng.pick([-1, -i - 1, n - i, 0x7fff_ffff, -0x8000_0000, rng.int(n) - i - 1]);
      insn(b, at, 0x85, 0x10, 0, imm);
      return { step: `${c.name} insn ${i}: bpf-to-bpf call imm ${imm}` };
    }
    case 4: insn(b, c.off + c.size - 8, 0x18, rng.int(2) << 4, 0, 0); return { step: `${c.name}: ld_imm64 in the last slot` };
    case 5: {
      let k = 0;
      for (let p = c.off; p + 8 <= c.off + c.size; p += 8) if (b[p] === 0x95) { insn(b, p, 0x05, 0, 0, 0); k++; }
      return { step: `${c.name}: ${k} exits turned into ja 0` };
    }
    case 6: insn(b, at, 0x18, rng.pick([0x10, 0x20, 0x50, 0x60, 0xf0, 0x21]), 0, rng.pick([0, 1, 0xffff_ffff, 0x7fff_ffff])); return { step: `${c.name} insn ${i}: ld_imm64 pseudo` };
    case 7: {
      // Jumps that land in the middle of an ld_imm64.
      for (let p = c.off; p + 16 <= c.off + c.size; p += 8) if (b[p] === 0x18) {
        const t = (p - c.off) >> 3;
        insn(b, at, 0x05, 0, t + 1 - i - 1, 0);
        return { step: `${c.name} insn ${i}: ja into the second half of ld_imm64 at ${t}` };
      }
      return undefined;
    }
    default: {
      // Many forks: a run of conditional jumps on unknown registers, each doubling the paths.
      const k = Math.min(24, n - i - 1);
      for (let j = 0; j < k; j++) insn(b, at + j * 8, 0x15, 2, 0, j);
      return { step: `${c.name} insn ${i}: ${k} forks in a row` };
    }
  }
};
const loopEveryEntry: Mut = (b, rng, lay) => {
  const cs = lay.code.filter((c) => c.entries.length > 0);
  if (!cs.length) return undefined;
  const c = rng.pick(cs);
  const n = rng.pick([100_000, 1_000_000, 0x7fff_ffff]);
  for (const at of c.entries) {
    if (at + 24 > c.off + c.size) continue;
    insn(b, at, 0xb7, 1, 0, 0);
    insn(b, at + 8, 0x07, 1, 0, 1);
    insn(b, at + 16, 0xa5, 1, -2, n);
  }
  return { step: `${c.name}: counting loop (to ${n}) at each of ${c.entries.length} function entries` };
};
const allRefsSelf: Mut = (b, rng, lay) => {
  // Every reference of one record points back at it: a FUNC_PROTO whose return and params are itself,
  // a struct whose members all have its own type. Walks that branch per member/param must stay bounded.
  const ts = types(lay, (t) => t.refs.length > 1);
  if (!ts.length) return undefined;
  const t = rng.pick(ts);
  for (const r of t.refs) put(b, r, 4, t.id);
  return { step: `btf type #${t.id} (kind ${t.kind}): all ${t.refs.length} references point at itself` };
};
const mutualProtos: Mut = (b, rng, lay) => {
  const ps = types(lay, (t) => t.kind === K.FUNC_PROTO || t.kind === K.STRUCT);
  if (ps.length < 2) return undefined;
  const x = rng.pick(ps);
  const y = rng.pick(ps);
  for (const r of x.refs) put(b, r, 4, y.id);
  for (const r of y.refs) put(b, r, 4, x.id);
  return { step: `btf types #${x.id} and #${y.id}: every reference of each points at the other` };
};
const reloOnType: Mut = (b, rng, lay) => {
  // A type-based relocation (8..12) or field relocation on a struct whose members are itself.
  const recs = lay.coreRecs.filter((r) => r.str && r.str.len >= 1);
  const ss = types(lay, (t) => t.kind === K.STRUCT && t.refs.length > 0);
  if (!recs.length || !ss.length) return undefined;
  const r = rng.pick(recs);
  const t = rng.pick(ss);
  if (rng.chance(0.5)) for (const ref of t.refs) put(b, ref, 4, t.id);
  put(b, r.off + 4, 4, t.id);
  const kind = rng.pick([8, 9, 12, 7, 0, 2]);
  put(b, r.off + 12, 4, kind);
  const str = kind >= 6 ? '0' : rng.pick(['0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0', '0:1:0:1:0:1:0:1', '0:0']);
  const s2 = str.slice(0, r.str!.len);
  for (let i = 0; i < r.str!.len; i++) b[r.str!.off + i] = i < s2.length ? s2.charCodeAt(i) : 0;
  return { step: `core_relo @${r.off}: kind ${kind} "${s2}" on struct #${t.id}` };
};
const cloneNames: Mut = (b, rng, lay) => {
  // Many types share one name: every relocation rooted there gets every one of them as a candidate.
  const ss = types(lay, (t) => t.kind === K.STRUCT || t.kind === K.UNION);
  if (ss.length < 2) return undefined;
  const r = rng.pick(ss);
  const name = u32(b, r.off);
  const all = rng.chance(0.5);
  let k = 0;
  for (const t of types(lay, (t) => all || t.kind === K.STRUCT || t.kind === K.UNION || t.kind === K.TYPEDEF || t.kind === 7)) {
    put(b, t.off, 4, name);
    k++;
  }
  return { step: `${k} types renamed like struct #${r.id}` };
};
const funcSym: Mut = (b, rng, lay) => {
  // Functions cut short, shifted, overlapping or unaligned: what the linker and func_info trust.
  if (!lay.funcSyms.length) return undefined;
  const p = rng.pick(lay.funcSyms);
  const value = u32(b, p + 8);
  const size = u32(b, p + 16);
  const other = u32(b, rng.pick(lay.funcSyms) + 8);
  switch (rng.int(5)) {
    case 0: { const v = Math.max(0, size - 8 * (1 + rng.int(4))); put(b, p + 16, 8, v); return { step: `func sym @${p}: size ${size} -> ${v}` }; }
    case 1: { const v = size + 8 * (1 + rng.int(64)); put(b, p + 16, 8, v); return { step: `func sym @${p}: size ${size} -> ${v}` }; }
    case 2: { const v = value + rng.pick([4, 8, 16, 1]); put(b, p + 8, 8, v); return { step: `func sym @${p}: value ${value} -> ${v}` }; }
    case 3: put(b, p + 8, 8, other); return { step: `func sym @${p}: value ${value} -> ${other} (another function's start)` };
    default: put(b, p + 16, 8, 0); return { step: `func sym @${p}: size 0` };
  }
};
const longNames: Mut = (b, rng, lay) => {
  if (!lay.strtabs.length) return undefined;
  const t = rng.pick(lay.strtabs);
  const s = t.off + rng.int(t.size - 1);
  const e = Math.min(t.off + t.size - 1, s + 200 + rng.int(2000));
  for (let i = s; i < e; i++) if (b[i] === 0) b[i] = 0x5f;
  return { step: `ELF string table @${s}..${e}: NULs removed (long names)` };
};

const GENERIC: Mut[] = [bitFlip, byteSet, word32, truncate, duplicate, remove];
const STRUCTURED: Mut[] = [field, field, field, selfLoop, pairLoop, typedefLoop, hugeVlen, hugeNelems, hugeNelems, danglingRef, retarget, kindChange, nameOff, unterminate,
  accessStr, accessStr, accessPtr, reloKind, reloType, reloInsn, sectionRange, insns, insns, insns, longNames, loopEveryEntry, allRefsSelf, allRefsSelf, mutualProtos, reloOnType, reloOnType, cloneNames, funcSym, funcSym];

/** Applies 1..4 mutations (structure-aware ones 70% of the time) to a copy of `seed`. */
export function mutate(seed: Uint8Array, lay: Layout, rng: Rng, structuredOnly = false): Mutated {
  let b: Uint8Array = new Uint8Array(seed);
  const steps: string[] = [];
  const n = 1 + rng.int(rng.chance(0.7) ? 2 : 4);
  for (let i = 0; i < n && b.length > 0; i++) {
    const pool = structuredOnly || rng.chance(0.7) ? STRUCTURED : GENERIC;
    let r: ReturnType<Mut> | undefined;
    for (let tries = 0; tries < 4 && !r; tries++) r = rng.pick(pool)(b, rng, lay);
    if (!r) r = rng.pick(GENERIC)(b, rng, lay)!;
    if (r.bytes) b = r.bytes;
    steps.push(r.step);
  }
  return { bytes: b, steps };
}
