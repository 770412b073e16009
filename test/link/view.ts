// What a loader sees of an object, as plain data to compare two linkers' outputs with: programs,
// functions, maps (definitions, key/value type names, initial data, map-in-map slots), externs,
// the BTF variables of each DATASEC, the CO-RE relocations applied offline against one kernel's
// BTF, and each program as our loader links it after that relocation (instruction bytes, map and
// extern references by name, func/line info by name and source line).
import type { Btf } from '../../harness/core/btf/btf.js';
import { Kind } from '../../harness/core/btf/kinds.js';
import { linkProgram, loadObjectSpec, type MapSpec } from '../../harness/core/object/index.js';
import { relocateSpec } from '../../harness/core/relocate.js';

const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('hex') : '');

export function objectView(bytes: Uint8Array, name: string, vmlinux: Btf) {
  const spec = loadObjectSpec(bytes, name);
  const btf = spec.btf;
  const tn = (id: number) => (id ? btf.typeName(id) : '');
  const map = (m: MapSpec): Record<string, unknown> => ({
    name: m.name, kind: m.kind, section: m.section, type: m.type, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries,
    flags: m.flags, numaNode: m.numaNode, pinning: m.pinning, mapExtra: String(m.mapExtra), frozen: m.frozen,
    key: tn(m.keyTypeId), value: tn(m.valueTypeId), data: hex(m.data), initValues: m.initValues ?? [], inner: m.inner ? map(m.inner) : null,
  });
  const datasecs: Record<string, string[]> = {};
  for (let id = 1; id < btf.count; id++) {
    const t = btf.type(id);
    if (t.kind !== Kind.DATASEC) continue;
    datasecs[t.name] = t.vars.map((v) => `${btf.typeName(v.type)}: ${tn(btf.sizeOrType(v.type))}`).sort();
  }
  const relocated = relocateSpec(spec, '', { vmlinux }, 'vmlinux');
  const programs = spec.programs.map((p) => {
    const l = linkProgram(spec, p);
    return {
      name: p.name, section: p.section, type: p.type, autoload: p.autoload, hidden: p.hidden, insnCount: p.insnCount,
      insns: hex(l.insns),
      layout: l.layout.map((f) => `${f.name}@${f.start}`),
      maps: l.mapRefs.map((r) => `${r.insn}: ${spec.maps[r.map]!.name}${r.offset === undefined ? '' : `+${r.offset}`}`),
      externs: l.externRefs.map((r) => `${r.insn}: ${spec.externs[r.extern]!.name}`),
      funcInfo: l.funcInfo.map((f) => `${f.insnOff}: ${btf.typeName(f.typeId)}`),
      lineInfo: l.lineInfo.map((x) => `${x.insnOff}: ${btf.str(x.fileNameOff)}:${x.line}:${x.col} ${btf.str(x.lineOff)}`),
    };
  });
  return {
    license: spec.license,
    programs,
    functions: spec.functions.map((f) => `${f.section}:${f.name}${f.global ? ' global' : ''}${f.hidden ? ' hidden' : ''} ${f.insnCount}`).sort(),
    maps: spec.maps.map(map),
    externs: spec.externs.map((e) => ({ name: e.name, kind: e.kind, weak: e.weak, func: e.func, typed: e.typed, offset: e.offset ?? null, size: e.size ?? null, type: tn(e.valueTypeId) })),
    datasecs,
    relocations: relocated.report.relocations,
    structOps: spec.structOps.map((s) => ({ name: s.name, type: s.type, data: hex(s.data), programs: s.programs })),
  };
}
