// The linked object's BTF before de-duplication: every input's types appended in input order,
// with their ids renumbered, except
//  - a global's VAR or FUNC, which appears once (where the global is first mentioned) and says
//    what its winning definition says (its type, and global rather than extern linkage); while
//    only externs mention it, what the first extern says;
//  - DATASECs, rebuilt at the end, one per output section: static variables at their input
//    offset plus where their section went, each global once, at its definition's final place.
//    `.kconfig` and `.ksyms` (externs the loader resolves) have no ELF section and size 0; the
//    `.extern` DATASEC of plain `extern` declarations is dropped, as its entries are resolved here.

import { Kind } from '../btf/kinds.js';
import { remapType, type TypeSpec } from '../btf/writer.js';
import { isNonStatic, type InputObject } from './input.js';
import type { SectionLayout } from './sections.js';
import type { SymbolTable } from './symbols.js';

export interface MergedBtf {
  /** id i + 1 is types[i]. */
  types: TypeSpec[];
  /** Per input: its type id → the merged id (0 for void). */
  ids: Map<InputObject, Int32Array>;
}

const EXTERN_DATASEC = '.extern';

type Slot = { input: InputObject; id: number; global?: string };

export function mergeBtf(inputs: readonly InputObject[], layout: SectionLayout, symbols: SymbolTable): MergedBtf {
  // Ids first (a type may refer to one defined after it), contents second.
  const slots: Slot[] = [];
  const ids = new Map<InputObject, Int32Array>();
  const globalIds = new Map<string, number>();
  for (const input of inputs) {
    const btf = input.btf;
    const map = new Int32Array(btf.count);
    ids.set(input, map);
    for (let id = 1; id < btf.count; id++) {
      if (btf.kind(id) === Kind.DATASEC) continue;
      if (isNonStatic(btf, id)) {
        const name = btf.name(id);
        if (symbols.globals.has(name)) {
          const known = globalIds.get(name);
          if (known !== undefined) {
            map[id] = known;
            continue;
          }
          slots.push({ input, id, global: name });
          globalIds.set(name, (map[id] = slots.length));
          continue;
        }
      }
      slots.push({ input, id });
      map[id] = slots.length;
    }
  }

  const names = externParamNames(symbols);
  const types: TypeSpec[] = slots.map((s) => {
    let { input, id } = s;
    if (s.global) {
      const g = symbols.globals.get(s.global)!;
      const winner = g.definition ?? g.declarations[0]!;
      [input, id] = [winner.input, winner.btf.id];
    }
    const map = ids.get(input)!;
    const t = remapType(input.btf.type(id), (x) => map[x]!);
    const named = names.get(input)?.get(id);
    if (named && t.kind === Kind.FUNC_PROTO) t.params = t.params.map((p, i) => (p.name ? p : { ...p, name: named[i] ?? '' }));
    return t;
  });

  for (const name of datasecOrder(inputs)) {
    const id = types.push(datasec(name, inputs, layout, symbols, ids, globalIds));
    for (const input of inputs) for (const ds of input.datasecs) if (ds.name === name) ids.get(input)![ds.id] = id;
  }
  return { types, ids };
}

/**
 * Parameter names for the prototypes of extern function declarations, from the definition that
 * resolved them: clang leaves an extern's parameters unnamed, and with the names the two
 * prototypes are the same type, which de-duplication then keeps once.
 */
function externParamNames(symbols: SymbolTable): Map<InputObject, Map<number, string[]>> {
  const out = new Map<InputObject, Map<number, string[]>>();
  for (const g of symbols.globals.values()) {
    const def = g.definition;
    if (!def || def.input.btf.kind(def.btf.id) !== Kind.FUNC) continue;
    const proto = def.input.btf.type(def.input.btf.sizeOrType(def.btf.id));
    if (proto.kind !== Kind.FUNC_PROTO) continue;
    for (const d of g.declarations) {
      if (d === def || d.input.btf.kind(d.btf.id) !== Kind.FUNC) continue;
      let m = out.get(d.input);
      if (!m) out.set(d.input, (m = new Map()));
      m.set(d.input.btf.sizeOrType(d.btf.id), proto.params.map((p) => p.name));
    }
  }
  return out;
}

/**
 * Output sections with a DATASEC: in the order sections first appear (which is the output order),
 * a BTF-only one (`.ksyms`) right after the sections of the input that names it first.
 */
function datasecOrder(inputs: readonly InputObject[]): string[] {
  const named = new Set(inputs.flatMap((i) => i.datasecs.map((d) => d.name)));
  const order: string[] = [];
  const add = (n: string) => {
    if (named.has(n) && n !== EXTERN_DATASEC && !order.includes(n)) order.push(n);
  };
  for (const input of inputs) {
    for (const s of input.sections) if (s.role === 'content') add(s.elf.name);
    for (const d of input.datasecs) add(d.name);
  }
  return order;
}

function datasec(name: string, inputs: readonly InputObject[], layout: SectionLayout, symbols: SymbolTable, ids: Map<InputObject, Int32Array>, globalIds: Map<string, number>): TypeSpec {
  const vars: { type: number; offset: number; size: number }[] = [];
  const listed = new Set<string>();
  for (const input of inputs) {
    const ds = input.datasecs.find((d) => d.name === name);
    if (!ds) continue;
    const elfSec = input.sections.find((s) => s.role === 'content' && s.elf.name === name);
    const chunk = elfSec ? layout.chunk(input, elfSec.elf.index) : undefined;
    if (chunk?.duplicate) continue;
    const map = ids.get(input)!;
    for (const v of ds.vars) {
      const g = isNonStatic(input.btf, v.type) ? symbols.globals.get(input.btf.name(v.type)) : undefined;
      if (!g) {
        vars.push({ type: map[v.type]!, offset: (chunk?.offset ?? 0) + v.offset, size: v.size });
        continue;
      }
      if (listed.has(g.name)) continue;
      listed.add(g.name);
      const def = g.definition;
      const placed = def?.chunk?.out.name === name;
      vars.push({
        type: globalIds.get(g.name)!,
        offset: placed ? def!.chunk!.offset + def!.sym.value : (chunk?.offset ?? 0) + v.offset,
        size: placed ? definedSize(def!.input, def!.btf.id, v.size) : v.size,
      });
    }
  }
  vars.sort((a, b) => a.offset - b.offset);
  return { kind: Kind.DATASEC, name, size: layout.section(name)?.size ?? 0, vars };
}

/**
 * A defined variable's size as its definition's object states it (an extern may have said
 * `int x[]`; an initialised map-in-map is longer than its type).
 */
function definedSize(input: InputObject, varId: number, fallback: number): number {
  for (const ds of input.datasecs) for (const v of ds.vars) if (v.type === varId) return v.size;
  const t = input.btf.type(varId);
  if (t.kind !== Kind.VAR) return fallback;
  try {
    return input.btf.sizeOf(t.type);
  } catch {
    return fallback;
  }
}
