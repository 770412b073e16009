// Joined vmlinux BTFs: one C header describing the types of several kernels.
//
// Every named type is fingerprinted structurally per kernel (a Merkle hash: members by name,
// bit offset, bitfield size and type; by-value references include the referenced type's own
// fingerprint, pointers only its name, so a change deep inside an embedded struct changes its
// parents but a change behind a pointer does not). Equal fingerprints across kernels are one
// layout and are emitted once. For a name with several layouts, the newest kernel's layout
// keeps the name and every other layout becomes a flavour `name___<oldest kernel>` that the
// CO-RE loader matches to `name` by its essential name.
//
// Output order is independent of BTF ids: units are sorted by name and emitted depth first
// along their by-value dependencies, so the same kernels give the same bytes.

import { createHash } from 'node:crypto';
import type { Btf, BtfType, Member } from '../core/btf/btf.js';
import { Kind } from '../core/btf/kinds.js';
import { UsageError } from '../core/errors.js';

export interface JoinInput {
  /** Kernel id as in kernels/matrix.yaml (`6.1-rt`). */
  id: string;
  btf: Btf;
}

export interface JoinStats {
  kernels: string[];
  bytes: number;
  lines: number;
  /** Named types (struct/union/enum/typedef) emitted, flavours included. */
  types: number;
  /** Emitted types whose name carries a kernel flavour (`___5_10`). */
  flavoured: number;
  /** Distinct type names that have more than one layout across the kernels. */
  namesWithLayouts: number;
  /** Member lines marked `only in`. */
  onlyInMembers: number;
}

/** An emitted struct/union/enum/typedef: its C spelling and where its layout came from. */
export interface EmittedType {
  /** `struct task_struct___5_10`, `u32`. */
  spelling: string;
  /** Kernels (ids) that have this layout. */
  kernels: string[];
  /** The kernel whose BTF was rendered and the type's id there. */
  kernel: string;
  id: number;
  /** The kernel flavour suffix (`5_10`) when this is not the plain-named layout. */
  flavour?: string;
}

export interface JoinResult {
  header: string;
  stats: JoinStats;
  types: EmittedType[];
}

/** `6.1-rt` → `6_1_rt`: a kernel id as a C identifier fragment. */
export function flavourSuffix(kernelId: string): string {
  const s = kernelId.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[0-9A-Za-z]/.test(s) ? s : `k${s}`;
}

type NameSpace = 'tag' | 'typedef';

interface Variant {
  ns: NameSpace;
  name: string;
  hash: string;
  /** Kernel indexes (ascending) whose BTF has this layout. */
  kernels: number[];
  /** The representative: the newest kernel that has it, and its type id there. */
  k: number;
  id: number;
  emitted: string;
  flavour: string | undefined;
  /** Type id of this layout per kernel index. */
  ids: Map<number, number>;
}

interface Unit {
  key: string;
  sort: string;
  text: () => string;
  deps: () => string[];
}

const sha = (s: string): string => createHash('sha1').update(s).digest('base64').slice(0, 22);

const isNamedUnitKind = (k: Kind): boolean => k === Kind.STRUCT || k === Kind.UNION || k === Kind.ENUM || k === Kind.ENUM64 || k === Kind.TYPEDEF;

/** Per-kernel structural fingerprints. */
class Fingerprints {
  private readonly named = new Map<number, string>();
  private readonly refs = [new Map<number, string>(), new Map<number, string>()];
  constructor(readonly btf: Btf) {}

  /** Layout identity of a named struct/union/enum/typedef. */
  deep(id: number): string {
    let h = this.named.get(id);
    if (h !== undefined) return h;
    h = sha(this.body(id, 0));
    this.named.set(id, h);
    return h;
  }

  private body(id: number, depth: number): string {
    if (depth > 64) return '!deep';
    const t = this.btf.type(id);
    switch (t.kind) {
      case Kind.STRUCT: case Kind.UNION:
        return `${t.kind === Kind.STRUCT ? 's' : 'u'}${t.name}/${t.size}{${t.members.map((m) => `${m.name}@${m.bitOffset}:${m.bitfieldSize}=${this.ref(m.type, true, depth + 1)}`).join(';')}}`;
      case Kind.ENUM: case Kind.ENUM64:
        return `e${t.name}/${t.size}${t.signed ? 's' : 'u'}{${t.values.map((v) => `${v.name}=${v.value}`).join(';')}}`;
      case Kind.TYPEDEF:
        return `t${t.name}=${this.ref(t.type, true, depth + 1)}`;
      default:
        return this.ref(id, true, depth + 1);
    }
  }

  /** How a reference to `id` looks from its user (by value: layout matters; behind a pointer: only the name). */
  ref(id: number, byValue: boolean, depth = 0): string {
    const cache = this.refs[byValue ? 1 : 0]!;
    const c = cache.get(id);
    if (c !== undefined) return c;
    const r = this.refUncached(id, byValue, depth);
    if (depth < 3) cache.set(id, r);
    return r;
  }

  private refUncached(id: number, byValue: boolean, depth: number): string {
    if (depth > 64) return '!deep';
    const t = this.btf.type(id);
    switch (t.kind) {
      case Kind.UNKN: return 'void';
      case Kind.INT: return `i${t.name}/${t.size}/${t.encoding}/${t.bits}/${t.bitOffset}`;
      case Kind.FLOAT: return `f${t.name}/${t.size}`;
      case Kind.PTR: return `*${this.ref(t.type, false, depth + 1)}`;
      case Kind.CONST: return `c${this.ref(t.type, byValue, depth + 1)}`;
      case Kind.VOLATILE: return `v${this.ref(t.type, byValue, depth + 1)}`;
      case Kind.RESTRICT: return `r${this.ref(t.type, byValue, depth + 1)}`;
      case Kind.TYPE_TAG: return this.ref(t.type, byValue, depth + 1);
      case Kind.ARRAY: return `[${t.nelems}]${this.ref(t.type, byValue, depth + 1)}`;
      case Kind.FWD: return `${t.union ? 'U' : 'S'}${t.name}`;
      case Kind.FUNC_PROTO:
        return `(${t.params.map((p) => this.ref(p.type, false, depth + 1)).join(',')})${this.ref(t.type, false, depth + 1)}`;
      case Kind.STRUCT: case Kind.UNION: case Kind.ENUM: case Kind.ENUM64: case Kind.TYPEDEF: {
        if (t.name === '') return `{${sha(this.body(id, depth + 1))}}`;
        const tag = t.kind === Kind.TYPEDEF ? 'T' : t.kind === Kind.ENUM || t.kind === Kind.ENUM64 ? 'E' : t.kind === Kind.UNION ? 'U' : 'S';
        return byValue ? `${tag}${t.name}#${this.deep(id)}` : `${tag}${t.name}`;
      }
      default: return `?${t.kind}`;
    }
  }
}

/** Member paths of a struct/union as CO-RE sees them: anonymous members are transparent. */
function fieldPaths(btf: Btf, id: number, prefix: string, out: Set<string>, depth = 0): void {
  if (depth > 16) return;
  const t = btf.type(skipMods(btf, id));
  if (t.kind !== Kind.STRUCT && t.kind !== Kind.UNION) return;
  for (const m of t.members) {
    let mid = skipMods(btf, m.type);
    for (let i = 0; i < 8 && btf.kind(mid) === Kind.ARRAY; i++) mid = skipMods(btf, (btf.type(mid) as { type: number }).type);
    const mt = btf.type(mid);
    const anonAggregate = (mt.kind === Kind.STRUCT || mt.kind === Kind.UNION) && mt.name === '';
    if (m.name === '') {
      if (anonAggregate) fieldPaths(btf, mt.id, prefix, out, depth + 1);
      continue;
    }
    out.add(prefix + m.name);
    if (anonAggregate) fieldPaths(btf, mt.id, `${prefix}${m.name}.`, out, depth + 1);
  }
}

/** Skips const/volatile/restrict/type tags (not typedefs). */
function skipMods(btf: Btf, id: number): number {
  for (let i = 0; i < 64; i++) {
    const k = btf.kind(id);
    if (k !== Kind.CONST && k !== Kind.VOLATILE && k !== Kind.RESTRICT && k !== Kind.TYPE_TAG) return id;
    id = btf.sizeOrType(id);
  }
  return id;
}

function skipModsAndTypedefs(btf: Btf, id: number): number {
  for (let i = 0; i < 64; i++) {
    const k = btf.kind(id);
    if (k !== Kind.CONST && k !== Kind.VOLATILE && k !== Kind.RESTRICT && k !== Kind.TYPE_TAG && k !== Kind.TYPEDEF) return id;
    id = btf.sizeOrType(id);
  }
  return id;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Joins the BTF of several kernels into one C header. `kernels` is ordered oldest first: the
 * last kernel's layouts keep the plain names.
 */
export function joinBtf(kernels: JoinInput[]): JoinResult {
  if (kernels.length === 0) throw new UsageError('btf join needs at least one kernel');
  const ids = kernels.map((k) => k.id);
  if (new Set(ids).size !== ids.length) throw new UsageError(`btf join: kernel listed twice (${ids.join(', ')})`);
  const fps = kernels.map((k) => new Fingerprints(k.btf));
  const label = (ks: number[]): string => ks.map((i) => ids[i]).join(', ');
  const nK = kernels.length;

  // 1. Collect layouts per (namespace, name).
  const byName = new Map<string, Map<string, { kernels: number[]; ids: Map<number, number> }>>();
  const fwdNames = new Map<string, boolean>(); // struct/union names only declared (FWD), value: union?
  const anonEnums = new Map<string, { kernels: number[]; k: number; id: number }>();
  for (let k = 0; k < nK; k++) {
    const btf = kernels[k]!.btf;
    const referenced = new Set<number>();
    for (let id = 1; id < btf.count; id++) {
      const t = btf.type(id);
      if (t.kind === Kind.STRUCT || t.kind === Kind.UNION) for (const m of t.members) referenced.add(m.type);
      else if (t.kind === Kind.FUNC_PROTO) for (const p of t.params) referenced.add(p.type);
      if ('type' in t) referenced.add(t.type);
    }
    for (let id = 1; id < btf.count; id++) {
      const kind = btf.kind(id);
      if (kind === Kind.FWD) {
        const n = btf.name(id);
        if (n !== '' && !fwdNames.has(n)) fwdNames.set(n, btf.kindFlag(id));
        continue;
      }
      if (!isNamedUnitKind(kind)) continue;
      const name = btf.name(id);
      if (name === '') {
        if ((kind === Kind.ENUM || kind === Kind.ENUM64) && !referenced.has(id)) {
          const h = fps[k]!.deep(id);
          let e = anonEnums.get(h);
          if (!e) anonEnums.set(h, (e = { kernels: [], k, id }));
          if (!e.kernels.includes(k)) e.kernels.push(k);
          e.k = k;
          e.id = id;
        }
        continue;
      }
      // The compiler's own typedefs (`__builtin_va_list`) cannot be redeclared.
      if (name.startsWith('__builtin_')) continue;
      const ns: NameSpace = kind === Kind.TYPEDEF ? 'typedef' : 'tag';
      const key = `${ns}:${name}`;
      let layouts = byName.get(key);
      if (!layouts) byName.set(key, (layouts = new Map()));
      const h = fps[k]!.deep(id);
      let l = layouts.get(h);
      if (!l) layouts.set(h, (l = { kernels: [], ids: new Map() }));
      if (!l.kernels.includes(k)) l.kernels.push(k);
      if (!l.ids.has(k)) l.ids.set(k, id);
    }
  }

  // 2. Name the layouts.
  const variants: Variant[] = [];
  const variantOf: Map<number, Variant>[] = kernels.map(() => new Map());
  const plainOf = new Map<string, Variant>();
  const kernelsOfName = new Map<string, number[]>();
  let namesWithLayouts = 0;
  for (const key of [...byName.keys()].sort(cmp)) {
    const [nsStr, name] = [key.slice(0, key.indexOf(':')), key.slice(key.indexOf(':') + 1)] as [NameSpace, string];
    const layouts = [...byName.get(key)!.entries()].map(([hash, l]) => ({ hash, ...l }));
    const newestK = Math.max(...layouts.flatMap((l) => l.kernels));
    const kernelsWithName = [...new Set(layouts.flatMap((l) => l.kernels))].sort((a, b) => a - b);
    kernelsOfName.set(key, kernelsWithName);
    // Newest kernel's layouts first (several when one kernel has duplicates), then by oldest kernel, then hash.
    layouts.sort((a, b) => {
      const an = a.kernels.includes(newestK) ? 0 : 1;
      const bn = b.kernels.includes(newestK) ? 0 : 1;
      if (an !== bn) return an - bn;
      const ao = Math.min(...a.kernels), bo = Math.min(...b.kernels);
      if (ao !== bo) return ao - bo;
      return cmp(a.hash, b.hash);
    });
    if (layouts.length > 1) namesWithLayouts++;
    const used = new Set<string>();
    let dup = 1;
    for (const l of layouts) {
      l.kernels.sort((a, b) => a - b);
      let emitted: string;
      let flavour: string | undefined;
      if (l.kernels.includes(newestK)) {
        emitted = dup === 1 ? name : `${name}___${dup}`;
        dup++;
      } else {
        flavour = flavourSuffix(ids[l.kernels[0]!]!);
        emitted = `${name}___${flavour}`;
        for (let n = 2; used.has(emitted); n++) emitted = `${name}___${flavour}_${n}`;
      }
      used.add(emitted);
      const repK = l.kernels[l.kernels.length - 1]!;
      const v: Variant = { ns: nsStr, name, hash: l.hash, kernels: l.kernels, k: repK, id: l.ids.get(repK)!, emitted, flavour, ids: l.ids };
      variants.push(v);
      if (!plainOf.has(key)) plainOf.set(key, v);
      for (const [k, id] of l.ids) variantOf[k]!.set(id, v);
    }
  }

  // 3. Rendering helpers.
  const enumNamesUsed = new Set<string>();
  const enumNameFor = new Map<string, string>(); // `${unitKey}|${path}|${name}` → C name
  let onlyInMembers = 0;

  /** The C spelling of a named type referenced from kernel k. */
  const spell = (k: number, t: BtfType, byValue: boolean): string => {
    const tag = t.kind === Kind.STRUCT ? 'struct ' : t.kind === Kind.UNION ? 'union ' : t.kind === Kind.TYPEDEF ? '' : 'enum ';
    const v = byValue ? variantOf[k]!.get(t.id) : plainOf.get(`${t.kind === Kind.TYPEDEF ? 'typedef' : 'tag'}:${t.name}`);
    const n = v?.emitted ?? t.name;
    // A plain-name pointer to a tag whose plain layout has another kind (struct vs union) keeps its own kind.
    if (!byValue && v && t.kind !== Kind.TYPEDEF) {
      const vk = kernels[v.k]!.btf.kind(v.id);
      return (vk === Kind.STRUCT ? 'struct ' : vk === Kind.UNION ? 'union ' : 'enum ') + n;
    }
    return tag + n;
  };

  interface Ctx {
    k: number;
    unit: string;
    flavour: string | undefined;
    /** Kernels that have this unit's name, and per field path the kernels that have it. */
    paths: Map<string, number[]> | undefined;
    pathKernels: number[];
  }

  const enumBody = (ctx: Ctx, t: BtfType & { kind: Kind.ENUM | Kind.ENUM64 }, indent: string, where: string): string => {
    if (t.values.length === 0) return '{}';
    const lines = t.values.map((v) => {
      const key = `${ctx.unit}|${where}|${v.name}`;
      let cname = enumNameFor.get(key);
      if (cname === undefined) {
        cname = ctx.flavour ? `${v.name}___${ctx.flavour}` : v.name;
        for (let n = 2; enumNamesUsed.has(cname); n++) cname = `${ctx.flavour ? `${v.name}___${ctx.flavour}` : `${v.name}___`}${ctx.flavour ? '_' : ''}${n}`;
        enumNamesUsed.add(cname);
        enumNameFor.set(key, cname);
      }
      const val = v.value;
      const lit = val > 0x7fffffffn ? `${val}ULL` : val < -0x80000000n ? `${val}LL` : `${val}`;
      return `${indent}\t${cname} = ${lit},`;
    });
    return `{\n${lines.join('\n')}\n${indent}}`;
  };

  /** 1- and 2-byte enums (`enum rw_hint : u8` in C23 kernels) are packed so structs keep their layout. */
  const enumAttr = (t: { size: number }): string => (t.size < 4 ? ' __attribute__((packed))' : '');

  const alignCache = kernels.map(() => new Map<number, number>());
  const packedCache = kernels.map(() => new Map<number, boolean>());
  const alignOf = (k: number, id: number, depth = 0): number => {
    const btf = kernels[k]!.btf;
    id = skipModsAndTypedefs(btf, id);
    const c = alignCache[k]!.get(id);
    if (c !== undefined) return c;
    const t = btf.type(id);
    let a = 1;
    if (depth > 64) return 1;
    switch (t.kind) {
      case Kind.INT: case Kind.FLOAT: case Kind.ENUM: case Kind.ENUM64: a = Math.min(Math.max(t.size, 1), t.kind === Kind.INT && t.size === 16 ? 16 : 8); break;
      case Kind.PTR: a = 8; break;
      case Kind.ARRAY: a = alignOf(k, t.type, depth + 1); break;
      case Kind.STRUCT: case Kind.UNION:
        a = layout(k, id).packed ? 1 : Math.max(1, ...t.members.filter((m) => m.name !== '' || m.bitfieldSize === 0).map((m) => alignOf(k, m.type, depth + 1)));
        break;
      default: a = 1;
    }
    alignCache[k]!.set(id, a);
    return a;
  };
  const sizeOf = (k: number, id: number): number => kernels[k]!.btf.sizeOf(id);

  /** Decides packing and padding: returns per member the padding bits to emit before it. */
  const layout = (k: number, id: number): { packed: boolean; pads: number[]; tail: number } => {
    const btf = kernels[k]!.btf;
    const t = btf.type(id) as BtfType & { kind: Kind.STRUCT | Kind.UNION; members: Member[]; size: number };
    const sim = (packed: boolean): { ok: boolean; pads: number[]; tail: number } => {
      const pads: number[] = [];
      if (t.kind === Kind.UNION) {
        if (packed) return { ok: true, pads: t.members.map(() => 0), tail: 0 };
        let maxSize = 0;
        let maxAlign = 1;
        for (const m of t.members) {
          maxSize = Math.max(maxSize, m.bitfieldSize || sizeOf(k, m.type) * 8);
          if (m.name !== '' || m.bitfieldSize === 0) maxAlign = Math.max(maxAlign, alignOf(k, m.type));
        }
        const natural = Math.ceil(maxSize / (maxAlign * 8)) * maxAlign;
        return { ok: natural <= t.size && t.size % maxAlign === 0, pads: t.members.map(() => 0), tail: 0 };
      }
      let pos = 0;
      let maxAlign = 1;
      for (const m of t.members) {
        const size = sizeOf(k, m.type) * 8;
        const align = packed ? 1 : alignOf(k, m.type);
        let natural: number;
        if (m.bitfieldSize > 0) {
          if (packed) natural = pos;
          else {
            const unit = size || 8;
            natural = Math.floor(pos / unit) === Math.floor((pos + m.bitfieldSize - 1) / unit) ? pos : Math.ceil(pos / unit) * unit;
          }
          if (!packed && m.name !== '') maxAlign = Math.max(maxAlign, align);
        } else {
          natural = Math.ceil(pos / (align * 8)) * align * 8;
          maxAlign = Math.max(maxAlign, align);
        }
        if (natural > m.bitOffset) return { ok: false, pads: [], tail: 0 };
        // Padding fills [pos, bitOffset); then the member must land exactly there.
        pads.push(natural === m.bitOffset ? 0 : m.bitOffset - pos);
        pos = m.bitOffset + (m.bitfieldSize > 0 ? m.bitfieldSize : size);
      }
      const end = Math.ceil(pos / (maxAlign * 8)) * maxAlign * 8;
      if (end > t.size * 8) return { ok: packed, pads, tail: t.size * 8 - pos };
      if (!packed && (t.size * 8) % (maxAlign * 8) !== 0) return { ok: false, pads, tail: 0 };
      return { ok: true, pads, tail: end === t.size * 8 ? 0 : t.size * 8 - pos };
    };
    const cached = packedCache[k]!.get(id);
    if (cached !== undefined) {
      const r = sim(cached);
      return { packed: cached, pads: r.pads, tail: r.tail };
    }
    let r = sim(false);
    let packed = false;
    if (!r.ok) {
      packed = true;
      r = sim(true);
    }
    packedCache[k]!.set(id, packed);
    return { packed, pads: r.pads, tail: Math.max(0, r.tail) };
  };

  const padding = (bits: number, startBit: number, indent: string): string[] => {
    const out: string[] = [];
    let pos = startBit;
    const end = startBit + bits;
    while (pos < end) {
      if (pos % 8 !== 0) {
        const n = Math.min(end, Math.ceil(pos / 8) * 8) - pos;
        out.push(`${indent}char: ${n};`);
        pos += n;
        continue;
      }
      const left = end - pos;
      const [ty, w] = left >= 64 && pos % 64 === 0 ? ['long', 64] : left >= 32 && pos % 32 === 0 ? ['int', 32] : left >= 16 && pos % 16 === 0 ? ['short', 16] : left >= 8 ? ['char', 8] : ['char', left];
      out.push(`${indent}${ty}: ${w};`);
      pos += w as number;
    }
    return out;
  };

  const aggBody = (ctx: Ctx, id: number, indent: string, path: string): string => {
    const btf = kernels[ctx.k]!.btf;
    const t = btf.type(id) as BtfType & { kind: Kind.STRUCT | Kind.UNION; members: Member[]; size: number };
    const { pads, tail } = layout(ctx.k, id);
    const lines: string[] = [];
    let pos = 0;
    t.members.forEach((m, i) => {
      const ind = `${indent}\t`;
      if (pads[i]) lines.push(...padding(pads[i]!, pos, ind));
      const mt = btf.type(skipMods(btf, m.type));
      const anon = (mt.kind === Kind.STRUCT || mt.kind === Kind.UNION) && mt.name === '';
      const sub = m.name === '' ? path : `${path}${m.name}.`;
      let decl = render(ctx, m.type, m.name, ind, true, sub);
      if (m.bitfieldSize > 0) decl += `: ${m.bitfieldSize}`;
      let comment = '';
      if (ctx.paths && m.name !== '') {
        const have = ctx.paths.get(path + m.name) ?? [];
        if (have.length > 0 && have.length < ctx.pathKernels.length) {
          comment = ` /* only in: ${label(have)} */`;
          onlyInMembers++;
        }
      }
      if (m.name === '' && !anon && m.bitfieldSize === 0) decl = render(ctx, m.type, `__anon_${i}`, ind, true, sub);
      lines.push(`${ind}${decl};${comment}`);
      pos = m.bitOffset + (m.bitfieldSize > 0 ? m.bitfieldSize : sizeOf(ctx.k, m.type) * 8);
    });
    if (tail > 0 && t.kind === Kind.STRUCT) lines.push(...padding(tail, pos, `${indent}\t`));
    return `{\n${lines.join('\n')}${lines.length ? '\n' : ''}${indent}}`;
  };

  const packedAttr = (k: number, id: number): string => (layout(k, id).packed ? ' __attribute__((packed))' : '');

  /** Renders a declaration of `inner` with type `id` (from kernel ctx.k). */
  const render = (ctx: Ctx, id: number, inner: string, indent: string, byValue: boolean, path: string, depth = 0): string => {
    const btf = kernels[ctx.k]!.btf;
    const t = btf.type(id);
    const join = (base: string, decl: string): string => (decl === '' ? base : decl.startsWith('[') || decl.startsWith('(') && base.endsWith('*') ? base + decl : `${base} ${decl}`);
    if (depth > 64) return join('void', inner);
    switch (t.kind) {
      case Kind.UNKN: return join('void', inner);
      case Kind.INT: case Kind.FLOAT: return join(t.name, inner);
      case Kind.PTR: {
        const target = skipMods(btf, t.type);
        const tk = btf.kind(target);
        const d = tk === Kind.ARRAY || tk === Kind.FUNC_PROTO ? `(*${inner})` : `*${inner}`;
        return render(ctx, t.type, d, indent, false, path, depth + 1);
      }
      case Kind.CONST: case Kind.VOLATILE: case Kind.RESTRICT: {
        const q = t.kind === Kind.CONST ? 'const' : t.kind === Kind.VOLATILE ? 'volatile' : 'restrict';
        const target = btf.kind(skipMods(btf, t.type));
        if (target === Kind.FUNC_PROTO) return render(ctx, t.type, inner, indent, byValue, path, depth + 1);
        if (target === Kind.PTR || t.kind === Kind.RESTRICT) return render(ctx, t.type, `${q} ${inner}`.trimEnd(), indent, byValue, path, depth + 1);
        const r = render(ctx, t.type, inner, indent, byValue, path, depth + 1);
        return r.startsWith(`${q} `) ? r : `${q} ${r}`;
      }
      case Kind.TYPE_TAG: return render(ctx, t.type, inner, indent, byValue, path, depth + 1);
      case Kind.ARRAY: return render(ctx, t.type, `${inner}[${t.nelems}]`, indent, byValue, path, depth + 1);
      case Kind.FUNC_PROTO: {
        const ps = t.params.map((p, i) => (p.type === 0 && i === t.params.length - 1 ? '...' : render(ctx, p.type, '', indent, false, path, depth + 1)));
        return render(ctx, t.type, `${inner}(${ps.length ? ps.join(', ') : 'void'})`, indent, false, path, depth + 1);
      }
      case Kind.FWD: return join(`${t.union ? 'union' : 'struct'} ${plainOf.get(`tag:${t.name}`)?.emitted ?? t.name}`, inner);
      case Kind.STRUCT: case Kind.UNION:
        if (t.name === '') return join(`${t.kind === Kind.STRUCT ? 'struct' : 'union'}${packedAttr(ctx.k, id)} ${aggBody(ctx, id, indent, path)}`, inner);
        return join(spell(ctx.k, t, byValue), inner);
      case Kind.ENUM: case Kind.ENUM64:
        if (t.name === '') return join(`enum ${enumBody(ctx, t, indent, path + '#' + fps[ctx.k]!.deep(id))}${enumAttr(t)}`, inner);
        return join(spell(ctx.k, t, byValue), inner);
      case Kind.TYPEDEF: return join(spell(ctx.k, t, byValue), inner);
      default: return join('void', inner);
    }
  };

  /** Units a declaration of `id` needs first: complete by-value aggregates and every typedef/enum. */
  const depsOf = (k: number, id: number, needComplete: boolean, byValue: boolean, out: Set<string>, depth = 0): void => {
    if (depth > 64) return;
    const btf = kernels[k]!.btf;
    const t = btf.type(id);
    switch (t.kind) {
      case Kind.PTR: depsOf(k, t.type, false, false, out, depth + 1); return;
      case Kind.CONST: case Kind.VOLATILE: case Kind.RESTRICT: case Kind.TYPE_TAG: depsOf(k, t.type, needComplete, byValue, out, depth + 1); return;
      case Kind.ARRAY: depsOf(k, t.type, true, byValue, out, depth + 1); return;
      case Kind.FUNC_PROTO:
        depsOf(k, t.type, false, false, out, depth + 1);
        for (const p of t.params) if (p.type) depsOf(k, p.type, false, false, out, depth + 1);
        return;
      case Kind.STRUCT: case Kind.UNION:
        if (t.name === '') {
          for (const m of t.members) depsOf(k, m.type, true, true, out, depth + 1);
          return;
        }
        if (needComplete) out.add(unitKeyOf(k, t, byValue));
        return;
      case Kind.ENUM: case Kind.ENUM64:
        if (t.name !== '') out.add(unitKeyOf(k, t, byValue));
        return;
      case Kind.TYPEDEF:
        out.add(unitKeyOf(k, t, byValue));
        if (needComplete) depsOf(k, t.type, true, true, out, depth + 1);
        return;
      default:
    }
  };
  const unitKeyOf = (k: number, t: BtfType, byValue: boolean): string => {
    const ns = t.kind === Kind.TYPEDEF ? 'typedef' : 'tag';
    const v = byValue ? variantOf[k]!.get(t.id) : plainOf.get(`${ns}:${t.name}`);
    return `${ns}:${v?.emitted ?? t.name}`;
  };

  // 4. Units.
  const units = new Map<string, Unit>();
  const tagUnits: { kind: 'struct' | 'union'; name: string }[] = [];
  const groups = new Map<string, Variant[]>();
  for (const v of variants) {
    const g = groups.get(`${v.ns}:${v.name}`);
    if (g) g.push(v);
    else groups.set(`${v.ns}:${v.name}`, [v]);
  }
  for (const v of variants) {
    const key = `${v.ns}:${v.emitted}`;
    const btf = kernels[v.k]!.btf;
    const t = btf.type(v.id);
    const nameKernels = kernelsOfName.get(`${v.ns}:${v.name}`)!;
    const others = groups.get(`${v.ns}:${v.name}`)!.filter((o) => o !== v);
    let paths: Map<string, number[]> | undefined;
    if ((t.kind === Kind.STRUCT || t.kind === Kind.UNION) && (others.length > 0 || nameKernels.length < nK)) {
      paths = new Map();
      for (const o of [v, ...others]) {
        for (const k of o.kernels) {
          const s = new Set<string>();
          const oid = o.ids.get(k);
          if (oid === undefined) continue;
          fieldPaths(kernels[k]!.btf, oid, '', s);
          for (const p of s) {
            const l = paths.get(p) ?? [];
            if (!l.includes(k)) l.push(k);
            paths.set(p, l);
          }
        }
      }
      for (const l of paths.values()) l.sort((a, b) => a - b);
    }
    const ctx: Ctx = { k: v.k, unit: key, flavour: v.flavour, paths, pathKernels: nameKernels };
    const comment = (): string => {
      const parts: string[] = [];
      if (others.length > 0) {
        parts.push(`layout in: ${label(v.kernels)}`);
        parts.push(`other layouts: ${others.map((o) => `${o.emitted} (${label(o.kernels)})`).join('; ')}`);
      } else if (nameKernels.length < nK) parts.push(`only in: ${label(nameKernels)}`);
      return parts.length ? `/* ${parts.join('; ')} */\n` : '';
    };
    if (t.kind === Kind.STRUCT || t.kind === Kind.UNION) tagUnits.push({ kind: t.kind === Kind.STRUCT ? 'struct' : 'union', name: v.emitted });
    units.set(key, {
      key,
      sort: `${v.name}\u0000${v.emitted}`,
      deps: () => {
        const out = new Set<string>();
        if (t.kind === Kind.STRUCT || t.kind === Kind.UNION) for (const m of t.members) depsOf(v.k, m.type, true, true, out);
        else if (t.kind === Kind.TYPEDEF) depsOf(v.k, t.type, false, true, out);
        out.delete(key);
        return [...out].sort(cmp);
      },
      text: () => {
        if (t.kind === Kind.STRUCT || t.kind === Kind.UNION) {
          return `${comment()}${t.kind === Kind.STRUCT ? 'struct' : 'union'} ${v.emitted} ${aggBody(ctx, v.id, '', '')}${packedAttr(v.k, v.id)};\n`;
        }
        if ((t.kind === Kind.ENUM || t.kind === Kind.ENUM64) && t.values.length === 0) return `${comment()}enum ${v.emitted};\n`;
        if (t.kind === Kind.ENUM || t.kind === Kind.ENUM64) return `${comment()}enum ${v.emitted} ${enumBody(ctx, t, '', '')}${enumAttr(t)};\n`;
        if (t.kind === Kind.TYPEDEF) return `${comment()}typedef ${render(ctx, t.type, v.emitted, '', true, '')};\n`;
        return '';
      },
    });
  }
  // Top-level anonymous enums: their enumerators are what programs use.
  const anonList = [...anonEnums.entries()].map(([h, e]) => ({ h, ...e, kernels: e.kernels.sort((a, b) => a - b) }));
  anonList.sort((a, b) => {
    const an = a.kernels.includes(nK - 1) ? 0 : 1, bn = b.kernels.includes(nK - 1) ? 0 : 1;
    if (an !== bn) return an - bn;
    const t1 = kernels[a.k]!.btf.type(a.id) as { values: { name: string }[] };
    const t2 = kernels[b.k]!.btf.type(b.id) as { values: { name: string }[] };
    return cmp(t1.values[0]?.name ?? '', t2.values[0]?.name ?? '') || cmp(a.h, b.h);
  });
  const anonKeys: string[] = [];
  for (const e of anonList) {
    const key = `anon-enum:${e.h}`;
    const t = kernels[e.k]!.btf.type(e.id) as BtfType & { kind: Kind.ENUM | Kind.ENUM64 };
    const flavour = e.kernels.includes(nK - 1) ? undefined : flavourSuffix(ids[e.kernels[0]!]!);
    const ctx: Ctx = { k: e.k, unit: key, flavour, paths: undefined, pathKernels: [] };
    anonKeys.push(key);
    units.set(key, {
      key,
      sort: '',
      deps: () => [],
      text: () => `${e.kernels.length < nK ? `/* only in: ${label(e.kernels)} */\n` : ''}enum ${enumBody(ctx, t, '', '')};\n`,
    });
  }

  // 5. Emit: enumerators of anonymous enums first (newest kernels' first, so they keep plain
  // names), then named types depth first in name order.
  const out: string[] = [];
  out.push(
    `/* Joined vmlinux BTF of: ${ids.join(', ')} (generated by corematrix btf join; do not edit). */`,
    '#ifndef __VMLINUX_H__',
    '#define __VMLINUX_H__',
    '',
    '#ifndef BPF_NO_PRESERVE_ACCESS_INDEX',
    '#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)',
    '#endif',
    '',
  );
  const decls = new Map<string, string>();
  for (const u of tagUnits) decls.set(u.name, `${u.kind} ${u.name};`);
  for (const [n, union] of fwdNames) if (!plainOf.has(`tag:${n}`)) decls.set(n, `${union ? 'union' : 'struct'} ${n};`);
  out.push(...[...decls.keys()].sort(cmp).map((n) => decls.get(n)!), '');
  for (const key of anonKeys) out.push(units.get(key)!.text());
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (key: string): void => {
    if (done.has(key) || visiting.has(key)) return;
    const u = units.get(key);
    if (!u) return;
    visiting.add(key);
    for (const d of u.deps()) visit(d);
    visiting.delete(key);
    done.add(key);
    out.push(u.text());
  };
  const named = [...units.values()].filter((u) => !u.key.startsWith('anon-enum:')).sort((a, b) => cmp(a.sort, b.sort));
  for (const u of named) visit(u.key);
  out.push(
    '#ifndef BPF_NO_PRESERVE_ACCESS_INDEX',
    '#pragma clang attribute pop',
    '#endif',
    '',
    '#endif /* __VMLINUX_H__ */',
    '',
  );
  const header = out.join('\n');
  const kindWord = (v: Variant): string => {
    const k = kernels[v.k]!.btf.kind(v.id);
    return k === Kind.STRUCT ? 'struct ' : k === Kind.UNION ? 'union ' : k === Kind.TYPEDEF ? '' : 'enum ';
  };
  return {
    header,
    types: variants.map((v) => ({ spelling: kindWord(v) + v.emitted, kernels: v.kernels.map((i) => ids[i]!), kernel: ids[v.k]!, id: v.id, ...(v.flavour ? { flavour: v.flavour } : {}) })),
    stats: {
      kernels: ids,
      bytes: Buffer.byteLength(header),
      lines: header.split('\n').length - 1,
      types: variants.length,
      flavoured: variants.filter((v) => v.flavour !== undefined).length,
      namesWithLayouts,
      onlyInMembers,
    },
  };
}
