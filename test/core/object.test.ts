// ObjectSpec and linking on clang-compiled fixtures. Witnesses: llvm-readobj (symbols,
// relocations), bpftool (libbpf's skeleton: program/map order and the .kconfig layout; libbpf's
// static linker: DATASEC sizes and offsets), the installed UAPI header (enum values), and the
// fixture's C source for what it declares.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBtf } from '../../harness/core/btf/btf.js';
import { Kind } from '../../harness/core/btf/kinds.js';
import { parseElf, STT_FUNC } from '../../harness/core/elf.js';
import { FormatError } from '../../harness/core/errors.js';
import {
  BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_KFUNC_CALL, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, CALL, LD_IMM64, disassemble, readInsn,
} from '../../harness/core/insn.js';
import {
  AttachType, MapType, ProgType, type ObjectSpec, classifySection, linkProgram, loadObjectSpec,
} from '../../harness/core/object/index.js';
import { compileFixture, readobjJson, scratchDir, tool, type ReadobjJson } from '../fixtures/compile.js';

interface Skeleton { maps: string[]; progs: string[]; structs: Map<string, string[]> }

/** What libbpf (through bpftool's skeleton generator) sees in the object. */
function skeleton(path: string): Skeleton {
  const text = tool('bpftool', ['gen', 'skeleton', path, 'name', 'obj']);
  const maps = [...text.matchAll(/s->maps\[\d+\]\.name = "([^"]+)";/g)].map((m) => m[1]!);
  const progs = [...text.matchAll(/s->progs\[\d+\]\.name = "([^"]+)";/g)].map((m) => m[1]!);
  const structs = new Map<string, string[]>();
  for (const m of text.matchAll(/struct obj__(\w+) \{\n([\s\S]*?)\t\} \*/g)) {
    structs.set(m[1]!, m[2]!.split('\n').map((l) => /(\w+)(\[\d+\])?;$/.exec(l.trim())?.[1] ?? '').filter((n) => n && !n.startsWith('__pad')));
  }
  return { maps, progs, structs };
}

let obj: ObjectSpec;
let path: string;
let bytes: Uint8Array;
let ro: ReadobjJson;
let scratch: string;
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
beforeAll(() => {
  scratch = scratchDir();
  ({ path, bytes } = compileFixture('objects'));
  obj = loadObjectSpec(bytes, 'objects.bpf.o');
  ro = readobjJson(path);
});

describe('loadObjectSpec', () => {
  it('finds the programs libbpf finds, with the extents of their symbols', () => {
    const sk = skeleton(path);
    expect(obj.programs.map((p) => p.name)).toEqual(sk.progs);
    for (const p of obj.programs) {
      const sym = ro.Symbols.find((s) => s.Symbol.Name.Name === p.name)!.Symbol;
      expect(sym.Type.Value).toBe(STT_FUNC);
      expect(sym.Section.Name).toBe(p.section);
      expect(p.sectionOffset).toBe(sym.Value / 8);
      expect(p.insnCount).toBe(sym.Size / 8);
      expect(p.funcInfo[0]).toEqual({ insnOff: 0, typeId: obj.btf.byName(p.name).find((id) => obj.btf.kind(id) === Kind.FUNC) });
      expect(p.lineInfo.length).toBeGreaterThan(0);
    }
    // Two programs share one section; .text holds only subprograms.
    expect(obj.programs.filter((p) => p.section === 'tp/syscalls/sys_enter_getpid').map((p) => p.name)).toEqual(['tp_first', 'tp_second']);
    expect(obj.functions.filter((f) => f.section === '.text').map((f) => [f.name, f.global])).toEqual([['global_helper', true], ['static_helper', false], ['loop_cb', false]]);
  });

  it('classifies program sections with the UAPI values of linux/bpf.h', () => {
    const { bytes: u } = compileFixture('uapi_enums');
    const elf = parseElf(u, 'uapi_enums.bpf.o');
    const btf = parseBtf(elf.data(elf.section('.BTF')!));
    const uapi = new Map<string, number>();
    const max = new Map<string, number>();
    for (const e of ['bpf_prog_type', 'bpf_attach_type', 'bpf_map_type']) {
      const t = btf.type(btf.byName(e).find((id) => btf.kind(id) === Kind.ENUM)!);
      if (t.kind !== Kind.ENUM) throw new Error(e);
      for (const v of t.values) if (!v.name.startsWith('__MAX')) uapi.set(v.name, Number(v.value));
      max.set(e, Math.max(...t.values.filter((v) => !v.name.startsWith('__MAX')).map((v) => Number(v.value))));
    }
    // Values the installed header has must match; newer ones (e.g. NETFILTER on a 6.1 header) must come after its last value.
    const check = (consts: Record<string, number>, prefix: string, e: string) => {
      let known = 0;
      for (const [k, v] of Object.entries(consts)) {
        const w = uapi.get(prefix + k);
        if (w === undefined) expect(v, k).toBeGreaterThan(max.get(e)!);
        else { expect(v, k).toBe(w); known++; }
      }
      expect(known).toBe(max.get(e)! + 1); // we name every value the header has (0..max, no gaps)
    };
    check(ProgType, 'BPF_PROG_TYPE_', 'bpf_prog_type');
    check(AttachType, 'BPF_', 'bpf_attach_type');
    check(MapType, 'BPF_MAP_TYPE_', 'bpf_map_type');

    const byName = new Map(obj.programs.map((p) => [p.name, p]));
    const pick = (n: string) => { const p = byName.get(n)!; return [p.type, p.expectedAttachType, p.attachTo, p.sleepable]; };
    expect(pick('tp_first')).toEqual([uapi.get('BPF_PROG_TYPE_TRACEPOINT'), undefined, 'syscalls/sys_enter_getpid', false]);
    expect(pick('kp')).toEqual([uapi.get('BPF_PROG_TYPE_KPROBE'), undefined, 'do_nanosleep', false]);
    expect(pick('btf_tp')).toEqual([uapi.get('BPF_PROG_TYPE_TRACING'), uapi.get('BPF_TRACE_RAW_TP'), 'sched_switch', false]);
    expect(pick('fe')).toEqual([uapi.get('BPF_PROG_TYPE_TRACING'), uapi.get('BPF_TRACE_FENTRY'), 'do_nanosleep', false]);
    expect(pick('xdp_pass')).toEqual([uapi.get('BPF_PROG_TYPE_XDP'), uapi.get('BPF_XDP'), undefined, false]); // as libbpf ≥ 1.0 loads SEC("xdp")
    expect(pick('sock')).toEqual([uapi.get('BPF_PROG_TYPE_SOCKET_FILTER'), undefined, undefined, false]);
    expect(pick('lsm_open')).toEqual([uapi.get('BPF_PROG_TYPE_LSM'), uapi.get('BPF_LSM_MAC'), 'file_open', true]);

    const legacy = loadObjectSpec(compileFixture('legacy').bytes, 'legacy.bpf.o');
    const table = Object.fromEntries(legacy.programs.map((p) => [p.section, [p.type, p.expectedAttachType ?? null, p.attachTo ?? null, p.sleepable]]));
    const u2 = (n: string) => uapi.get(n)!;
    expect(table).toEqual({
      'kprobe/sys_getpid': [u2('BPF_PROG_TYPE_KPROBE'), null, 'sys_getpid', false],
      'kretprobe/sys_getpid': [u2('BPF_PROG_TYPE_KPROBE'), null, 'sys_getpid', false],
      'tracepoint/sched/sched_switch': [u2('BPF_PROG_TYPE_TRACEPOINT'), null, 'sched/sched_switch', false],
      'raw_tp/sys_enter': [u2('BPF_PROG_TYPE_RAW_TRACEPOINT'), null, 'sys_enter', false],
      'raw_tracepoint/sys_exit': [u2('BPF_PROG_TYPE_RAW_TRACEPOINT'), null, 'sys_exit', false],
      'fexit/do_nanosleep': [u2('BPF_PROG_TYPE_TRACING'), u2('BPF_TRACE_FEXIT'), 'do_nanosleep', false],
      'fmod_ret/security_file_open': [u2('BPF_PROG_TYPE_TRACING'), u2('BPF_MODIFY_RETURN'), 'security_file_open', false],
      'iter/task': [u2('BPF_PROG_TYPE_TRACING'), u2('BPF_TRACE_ITER'), 'task', false],
      syscall: [u2('BPF_PROG_TYPE_SYSCALL'), null, null, true],
      tc: [u2('BPF_PROG_TYPE_SCHED_CLS'), null, null, false],
      classifier: [u2('BPF_PROG_TYPE_SCHED_CLS'), null, null, false],
      'cgroup_skb/ingress': [u2('BPF_PROG_TYPE_CGROUP_SKB'), u2('BPF_CGROUP_INET_INGRESS'), null, false],
      'cgroup_skb/egress': [u2('BPF_PROG_TYPE_CGROUP_SKB'), u2('BPF_CGROUP_INET_EGRESS'), null, false],
      perf_event: [u2('BPF_PROG_TYPE_PERF_EVENT'), null, null, false],
      'lsm/bpf': [u2('BPF_PROG_TYPE_LSM'), u2('BPF_LSM_MAC'), 'bpf', false],
      'fentry.s/do_nanosleep': [u2('BPF_PROG_TYPE_TRACING'), u2('BPF_TRACE_FENTRY'), 'do_nanosleep', true],
    });
    expect(classifySection('.text').type).toBe(0);
    expect(classifySection('fentry').targetError).toMatch(/no attach target/); // libbpf ≥ 1.0 knows SEC("fentry"); its load needs a target
    expect(classifySection('xdp/extra').kind).toBe('unknown');
  });

  it('finds the maps libbpf finds, in the same order, with the attributes the source declares', () => {
    const sk = skeleton(path);
    // libbpf prefixes internal maps with the object name (when it fits in 15 characters).
    expect(obj.maps.map((m) => m.name)).toEqual(sk.maps.map((n) => n.replace(/^obj\./, '.')));
    const m = Object.fromEntries(obj.maps.map((x) => [x.name, x]));
    const attrs = (n: string) => { const x = m[n]!; return [x.type, x.keySize, x.valueSize, x.maxEntries, x.flags, x.pinning]; };
    expect(attrs('inner_a')).toEqual([MapType.HASH, 4, 8, 8, 0, 0]);
    expect(attrs('outer')).toEqual([MapType.ARRAY_OF_MAPS, 4, 4, 4, 0, 0]);
    expect(attrs('events_hash')).toEqual([MapType.HASH, 4, 32, 1024, 1 /* BPF_F_NO_PREALLOC */, 0]);
    expect(attrs('counters')).toEqual([MapType.PERCPU_ARRAY, 4, 8, 3, 0, 0]);
    expect(attrs('rb')).toEqual([MapType.RINGBUF, 0, 0, 4096, 0, 0]);
    expect(attrs('pinned_lru')).toEqual([MapType.LRU_HASH, 8, 4, 16, 0, 1 /* LIBBPF_PIN_BY_NAME */]);
    expect(obj.btf.typeName(m['events_hash']!.valueTypeId)).toBe('struct event');
    expect(obj.btf.typeName(m['events_hash']!.keyTypeId)).toBe('__u32');
    expect(m['counters']!.keyTypeId).toBe(0);
    const inner = m['outer']!.inner!;
    expect([inner.type, inner.keySize, inner.valueSize, inner.maxEntries]).toEqual([MapType.HASH, 4, 8, 8]);
    expect(m['outer']!.initValues).toEqual([{ slot: 0, target: 'inner_a' }, { slot: 2, target: 'inner_b' }]);
    for (const x of obj.maps.filter((y) => y.kind === 'btf')) {
      const sym = ro.Symbols.find((s) => s.Symbol.Name.Name === x.name)!.Symbol;
      expect([sym.Section.Name, sym.Value]).toEqual(['.maps', x.offset]);
      expect(obj.btf.name(x.btfVarId!)).toBe(x.name);
    }
  });

  it('makes one array map per global data section, holding the section', () => {
    const dir = scratch;
    for (const name of ['.data', '.rodata', '.data.foo', '.bss']) {
      const x = obj.maps.find((y) => y.name === name)!;
      const sec = ro.Sections.find((s) => s.Section.Name.Name === name)!.Section;
      expect([x.kind, x.type, x.keySize, x.valueSize, x.maxEntries, x.frozen]).toEqual(['data', MapType.ARRAY, 4, sec.Size, 1, name === '.rodata']);
      const dump = join(dir, `dump${name}`);
      if (name !== '.bss') execFileSync('llvm-objcopy-19', ['--dump-section', `${name}=${dump}`, path]); // NOBITS has no contents to dump
      expect(Buffer.from(x.data!).equals(name === '.bss' ? Buffer.alloc(sec.Size) : readFileSync(dump)), name).toBe(true);
      expect(obj.btf.kind(x.valueTypeId)).toBe(Kind.DATASEC);
      expect(obj.btf.name(x.valueTypeId)).toBe(name);
      expect(obj.btf.sizeOf(x.valueTypeId)).toBe(sec.Size);
    }
    // String literals: a mergeable-strings section without a DATASEC, still a frozen map holding the bytes.
    const str = obj.maps.find((y) => y.name === '.rodata.str1.1')!;
    execFileSync('llvm-objcopy-19', ['--dump-section', `.rodata.str1.1=${join(dir, 'dump.str')}`, path]);
    expect([str.frozen, str.valueTypeId, Buffer.from(str.data!).equals(readFileSync(join(dir, 'dump.str')))]).toEqual([true, 0, true]);
    expect(Buffer.from(str.data!).toString('latin1')).toContain('sock %d');
    const foo = obj.maps.find((y) => y.name === '.data.foo')!.data!;
    expect(new DataView(foo.buffer).getInt32(0, true)).toBe(0x1234);
  });

  it('fixes DATASEC sizes and offsets exactly as libbpf\'s linker does', () => {
    const linked = join(scratch, 'linked.o');
    execFileSync('bpftool', ['gen', 'object', linked, path]);
    const types = (JSON.parse(tool('bpftool', ['-j', 'btf', 'dump', 'file', linked])) as { types: { id: number; kind: string; name: string; size?: number; vars?: { type_id: number; offset: number; size: number }[] }[] }).types;
    const byId = new Map(types.map((t) => [t.id, t]));
    let checked = 0;
    for (const ds of types.filter((t) => t.kind === 'DATASEC' && t.name !== '.kconfig' && t.name !== '.ksyms')) {
      const ours = obj.btf.type(obj.btf.byName(ds.name).find((id) => obj.btf.kind(id) === Kind.DATASEC)!);
      if (ours.kind !== Kind.DATASEC) throw new Error(ds.name);
      expect(ours.size, ds.name).toBe(ds.size);
      const theirs = ds.vars!.map((v) => [byId.get(v.type_id)!.name, v.offset, v.size]).sort((a, b) => (a[1] as number) - (b[1] as number));
      expect(ours.vars.map((v) => [obj.btf.name(v.type), v.offset, v.size]), ds.name).toEqual(theirs);
      checked++;
    }
    expect(checked).toBe(6);
  });

  it('keeps type ids and string offsets of the compiled BTF', () => {
    const elf = parseElf(bytes, 'o');
    const raw = parseBtf(elf.data(elf.section('.BTF')!));
    expect(obj.btf.count).toBeGreaterThanOrEqual(raw.count);
    for (let id = 1; id < raw.count; id++) {
      expect(obj.btf.kind(id)).toBe(raw.kind(id));
      expect(obj.btf.nameOff(id)).toBe(raw.nameOff(id));
    }
    for (const l of [...obj.btfExt!.lineInfo.values()].flat()) expect(obj.btf.str(l.lineOff)).toBe(raw.str(l.lineOff));
  });

  it('leaves no extern linkage or unnamed kfunc parameter the kernel would refuse', () => {
    const btf = obj.btf;
    let datasecs = 0;
    for (let id = 1; id < btf.count; id++) {
      const t = btf.type(id);
      if (t.kind === Kind.VAR) expect(t.linkage, t.name).toBeLessThanOrEqual(1);
      if (t.kind === Kind.FUNC) {
        expect(t.linkage, t.name).toBeLessThanOrEqual(1);
        const proto = btf.type(t.type);
        if (proto.kind !== Kind.FUNC_PROTO) throw new Error(t.name);
        for (const prm of proto.params) if (prm.type !== 0) expect(prm.name, `${t.name} parameter`).not.toBe('');
      }
      if (t.kind === Kind.DATASEC) {
        datasecs++;
        let end = 0;
        for (const v of t.vars) {
          expect(btf.kind(v.type), `${t.name} entry`).toBe(Kind.VAR);
          expect(v.offset, `${t.name}: ${btf.name(v.type)}`).toBeGreaterThanOrEqual(end);
          expect(v.size).toBeGreaterThanOrEqual(btf.sizeOf(btf.sizeOrType(v.type)));
          end = v.offset + v.size;
        }
        expect(end, t.name).toBeLessThanOrEqual(t.size);
      }
    }
    expect(datasecs).toBe(8);
    const kc = btf.type(btf.byName('.kconfig')[0]!);
    if (kc.kind !== Kind.DATASEC) throw new Error('.kconfig');
    expect(kc.vars.map((v) => [btf.name(v.type), v.offset])).toEqual(obj.externs.filter((e) => e.kind === 'kconfig').map((e) => [e.name, e.offset]));
  });

  it('names what is wrong in a malformed object', () => {
    const elf = parseElf(bytes, 'a.o');
    const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
    // A call relocation on an ld_imm64.
    const relText = elf.section('.rel.text')!;
    const b1 = new Uint8Array(bytes);
    dv(b1).setUint32(relText.offset + 8, 10 /* R_BPF_64_32 */, true);
    expect(() => loadObjectSpec(b1, 'a.o')).toThrow(/^a\.o: section \d+ \(\.text\): relocation at 40: call relocation on a non-call instruction \(opcode 0x18\)$/);
    // A relocation outside its section.
    const b2 = new Uint8Array(bytes);
    dv(b2).setBigUint64(relText.offset, 0x10000n, true);
    expect(() => loadObjectSpec(b2, 'a.o')).toThrow(/relocation at 65536 is outside \.text/);
    // A map definition with an attribute libbpf does not know: rename 'max_entries' in the BTF strings.
    const btfSec = elf.section('.BTF')!;
    const b3 = new Uint8Array(bytes);
    const at = Buffer.from(b3.buffer, b3.byteOffset + btfSec.offset, btfSec.size).indexOf('max_entries\0');
    b3.set(new TextEncoder().encode('max_entriez'), btfSec.offset + at);
    expect(() => loadObjectSpec(b3, 'a.o')).toThrow(/^a\.o: map 'inner_a': unknown map attribute 'max_entriez'$/);
    // A function symbol that overruns its section.
    const sym = elf.symbols.find((s) => s.name === 'tp_second')!;
    const symtab = elf.sections.find((s) => s.type === 2)!;
    const b4 = new Uint8Array(bytes);
    dv(b4).setBigUint64(symtab.offset + sym.index * 24 + 16, 0x8000n, true);
    expect(() => loadObjectSpec(b4, 'a.o')).toThrow(/^a\.o: function 'tp_second' in tp\/syscalls\/sys_enter_getpid: bad extent/);
  });

  it('refuses a map whose value type has no size, naming the map, as libbpf refuses to open it', () => {
    const unsized = compileFixture('unsized_value');
    expect(() => tool('bpftool', ['gen', 'skeleton', unsized.path, 'name', 'x'])).toThrow(/map 'unsized': can't determine value size/);
    expect(() => loadObjectSpec(unsized.bytes, 'u.o')).toThrow(/^u\.o: map 'unsized': cannot size its value type struct only_declared \(type #\d+ \(FWD\) has no size\)$/);
  });

  it('discovers kconfig and ksym externs; lays out .kconfig like libbpf', () => {
    const weak = new Set(ro.Symbols.filter((s) => s.Symbol.Section.Value === 0 && s.Symbol.Binding.Value === 2).map((s) => s.Symbol.Name.Name));
    const e = Object.fromEntries(obj.externs.map((x) => [x.name, x]));
    expect(Object.keys(e).sort()).toEqual(['CONFIG_BPF_SYSCALL', 'CONFIG_DEFAULT_HOSTNAME', 'CONFIG_HZ', 'LINUX_KERNEL_VERSION', 'bpf_prog_active', 'bpf_task_acquire', 'bpf_task_release', 'runqueues']);
    for (const x of obj.externs) expect(x.weak, x.name).toBe(weak.has(x.name));
    expect(obj.externs.filter((x) => x.kind === 'kconfig').map((x) => x.name).sort()).toEqual(['CONFIG_BPF_SYSCALL', 'CONFIG_DEFAULT_HOSTNAME', 'CONFIG_HZ', 'LINUX_KERNEL_VERSION']);
    expect([e['bpf_task_acquire']!.func, e['runqueues']!.func, e['runqueues']!.typed, e['bpf_prog_active']!.typed]).toEqual([true, false, true, false]);
    expect(e['CONFIG_DEFAULT_HOSTNAME']!.size).toBe(16);
    // libbpf's skeleton lists .kconfig fields in layout order.
    const order = obj.externs.filter((x) => x.kind === 'kconfig').sort((a, b) => a.offset! - b.offset!).map((x) => x.name);
    expect(order).toEqual(skeleton(path).structs.get('kconfig'));
    const kc = obj.maps.find((x) => x.kind === 'kconfig')!;
    expect(kc.valueSize).toBeGreaterThanOrEqual(Math.max(...obj.externs.filter((x) => x.kind === 'kconfig').map((x) => x.offset! + x.size!)));
  });

  it('reads a legacy maps section and the version section', () => {
    const { path: lp, bytes: lb } = compileFixture('legacy');
    const l = loadObjectSpec(lb, 'legacy.bpf.o');
    const lro = readobjJson(lp);
    expect(l.license).toBe('Dual BSD/GPL');
    expect(l.kernVersion).toBe(0x050a00);
    expect(l.maps.map((m) => [m.name, m.kind, m.type, m.keySize, m.valueSize, m.maxEntries])).toEqual([
      ['legacy_hash', 'legacy', MapType.HASH, 4, 8, 64],
      ['legacy_array', 'legacy', MapType.ARRAY, 4, 16, 2],
    ]);
    for (const m of l.maps) expect(m.offset).toBe(lro.Symbols.find((s) => s.Symbol.Name.Name === m.name)!.Symbol.Value);
    const lk = linkProgram(l, 'legacy_kp');
    expect(lk.mapRefs.map((r) => l.maps[r.map]!.name)).toEqual(['legacy_hash', 'legacy_array']);
  });
});

describe('linkProgram', () => {
  /** Relocations of a section as llvm-readobj reports them: insn index → symbol. */
  const relocsOf = (section: string) => {
    const idx = ro.Sections.find((s) => s.Section.Name.Name === `.rel${section}`)?.Section.Index;
    const g = ro.Relocations.find((r) => r.SectionIndex === idx);
    return new Map((g?.Relocs ?? []).map(({ Relocation: r }) => [r.Offset / 8, { type: r.Type.Value, sym: ro.Symbols[r.Symbol.Value]!.Symbol }]));
  };

  it('appends every reachable subprogram once and fixes call offsets', () => {
    const layouts = Object.fromEntries(obj.programs.map((p) => [p.name, linkProgram(obj, p).layout.map((l) => l.name)]));
    expect(layouts).toEqual({
      tp_first: ['tp_first', 'global_helper', 'static_helper'],
      tp_second: ['tp_second', 'loop_cb', 'static_helper'],
      kp: ['kp'], btf_tp: ['btf_tp'], fe: ['fe', 'static_helper'], xdp_pass: ['xdp_pass'], sock: ['sock'], lsm_open: ['lsm_open'],
    });
    for (const p of obj.programs) {
      const l = linkProgram(obj, p);
      const starts = new Map(l.layout.map((x) => [x.start, x.name]));
      // Kernel rule: func_info exactly at each function start, naming it.
      expect(l.funcInfo.map((f) => [f.insnOff, obj.btf.name(f.typeId)])).toEqual(l.layout.map((x) => [x.start, x.name]));
      const n = l.insns.length / 8;
      for (let i = 0; i < n; i++) {
        const insn = readInsn(l.insns, i);
        if ((insn.code === CALL && insn.src === BPF_PSEUDO_CALL) || (insn.code === LD_IMM64 && insn.src === BPF_PSEUDO_FUNC)) {
          expect(starts.has(i + insn.imm + 1), `${p.name} insn ${i}: ${disassemble(l.insns)[i]}`).toBe(true);
        }
        if (insn.code === LD_IMM64) i++;
      }
      expect(l.lineInfo[0]!.insnOff).toBe(0);
      for (const li of l.lineInfo) expect(li.insnOff).toBeLessThan(n);
    }
    // The bpf_loop callback is referenced as a function pointer.
    const t2 = linkProgram(obj, 'tp_second');
    const cb = t2.layout.find((x) => x.name === 'loop_cb')!.start;
    const refs = [];
    for (let i = 0; i < t2.insns.length / 8; i++) {
      const insn = readInsn(t2.insns, i);
      if (insn.code === LD_IMM64 && insn.src === BPF_PSEUDO_FUNC) refs.push(i + insn.imm + 1);
    }
    expect(refs).toEqual([cb]);
  });

  it('copies each function unchanged except where relocations apply', () => {
    const elf = parseElf(bytes, 'o');
    for (const p of obj.programs) {
      const l = linkProgram(obj, p);
      for (const part of l.layout) {
        const orig = elf.data(elf.section(part.section)!);
        const f = obj.functions.find((x) => x.name === part.name)!;
        const rel = relocsOf(part.section);
        for (let j = 0; j < part.insnCount; j++) {
          const a = orig.subarray((f.sectionOffset + j) * 8, (f.sectionOffset + j + 1) * 8);
          const b = l.insns.subarray((part.start + j) * 8, (part.start + j + 1) * 8);
          const touched = rel.has(f.sectionOffset + j) || rel.has(f.sectionOffset + j - 1) || (a[0] === CALL && a[1]! >> 4 === BPF_PSEUDO_CALL);
          if (!touched) expect(Buffer.from(b).equals(Buffer.from(a)), `${part.name}+${j}`).toBe(true);
        }
      }
    }
  });

  it('turns map, data and extern references into placeholders the runtime fills', () => {
    for (const p of obj.programs) {
      const l = linkProgram(obj, p);
      const seen = new Set<number>();
      for (const part of l.layout) {
        const f = obj.functions.find((x) => x.name === part.name)!;
        for (const [at, r] of relocsOf(part.section)) {
          if (at < f.sectionOffset || at >= f.sectionOffset + f.insnCount) continue;
          const i = part.start + at - f.sectionOffset;
          seen.add(i);
          const insn = readInsn(l.insns, i);
          const hi = insn.code === LD_IMM64 ? readInsn(l.insns, i + 1).imm : 0;
          const sym = r.sym;
          const ref = l.mapRefs.find((m) => m.insn === i);
          const ext = l.externRefs.find((m) => m.insn === i);
          if (sym.Section.Name === '.maps') {
            expect([insn.src, obj.maps[insn.imm]!.name, ref?.map]).toEqual([BPF_PSEUDO_MAP_FD, sym.Name.Name, insn.imm]);
          } else if (sym.Section.Value === 0) {
            const e = obj.externs[ext!.extern]!;
            expect(e.name).toBe(sym.Name.Name);
            if (e.kind === 'kconfig') expect([insn.src, obj.maps[insn.imm]!.name, hi, ref?.offset]).toEqual([BPF_PSEUDO_MAP_VALUE, '.kconfig', e.offset, e.offset]);
            else if (insn.code === CALL) expect([insn.src, e.func]).toEqual([BPF_PSEUDO_KFUNC_CALL, true]);
            else expect(insn.src).toBe(0);
          } else if (sym.Type.Value === STT_FUNC || sym.Section.Name === '.text') {
            // code reference: checked by the layout test
          } else {
            // Global data: map value reference at the variable's offset (section symbols carry it in imm).
            const expectedOff = (sym.Type.Value === 3 ? 0 : sym.Value) + readInsn(obj.sections.get(part.section)!, at).imm;
            expect([insn.src, obj.maps[insn.imm]!.name, hi, ref?.offset]).toEqual([BPF_PSEUDO_MAP_VALUE, sym.Section.Name, expectedOff, expectedOff]);
          }
        }
      }
      for (const r of [...l.mapRefs, ...l.externRefs]) expect(seen.has(r.insn)).toBe(true);
    }
  });

  it('links the current (CO-RE patched) section bytes and never writes them', () => {
    const o = loadObjectSpec(bytes, 'objects.bpf.o');
    const sec = o.sections.get('tp/syscalls/sys_enter_getpid')!;
    const before = new Uint8Array(sec);
    // insn 2 of tp_first carries a CO-RE byte_off relocation (r1 = 0): patch it as the engine would.
    expect(readInsn(sec, 2).code).toBe(0xb7);
    new DataView(sec.buffer, sec.byteOffset).setInt32(2 * 8 + 4, 1234, true);
    const l = linkProgram(o, 'tp_first');
    expect(readInsn(l.insns, 2).imm).toBe(1234);
    l.insns.fill(0);
    before.set(sec.subarray(16, 24), 16);
    expect(Buffer.from(sec).equals(Buffer.from(before))).toBe(true);
  });
});

describe('malformed objects', () => {
  it('rejects every truncation with a FormatError', () => {
    let n = 0;
    for (let len = 0; len < bytes.length; len += len < 256 ? 1 : 17) {
      try {
        loadObjectSpec(bytes.subarray(0, len), 'a.o');
        throw new Error(`truncation at ${len} accepted`);
      } catch (e) {
        expect(e, `truncated at ${len}: ${String(e)}`).toBeInstanceOf(FormatError);
        n++;
      }
    }
    expect(n).toBeGreaterThan(1500);
  });

  it('never throws anything but FormatError on random corruption', () => {
    const elf = parseElf(bytes, 'a.o');
    const regions = ['.BTF', '.BTF.ext', '.symtab', '.maps', '.rel.text', '.reltp/syscalls/sys_enter_getpid', '.rel.maps'].map((n) => elf.section(n)!);
    let seed = 4242;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    let rejected = 0;
    for (let k = 0; k < 1000; k++) {
      const b = new Uint8Array(bytes);
      const sec = regions[k % regions.length]!;
      const pos = sec.offset + Math.floor(rnd() * sec.size);
      b[pos] = Math.floor(rnd() * 256);
      if (rnd() < 0.3) b[pos + 1] = Math.floor(rnd() * 256);
      try {
        const o = loadObjectSpec(b, 'a.o');
        for (const p of o.programs) linkProgram(o, p);
      } catch (e) {
        if (!(e instanceof FormatError)) throw new Error(`corruption of ${sec.name} at ${pos}: ${(e as Error).stack}`);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(30);
  });
});
