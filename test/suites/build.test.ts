// The suites on the host, without a VM: every suite compiles with clang-19 against one
// vmlinux.h, every spec validates against its object, and every object relocates offline
// against the BTF of every kernel in the store (real Debian kernels) with no error and no
// reachable poisoned instruction. The CO-RE choices each suite exists to prove are asserted on
// the relocation records, and the host truth (bpftool) is cross-checked with our BTF reader.
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBtf, type Btf } from '../../harness/core/btf/btf.js';
import { Kind } from '../../harness/core/btf/kinds.js';
import { relocateObject, type RelocateReport } from '../../harness/core/relocate.js';
import { KernelStore, type KernelArtifacts } from '../../harness/kernels/store.js';
import { buildSuites, hostTruth, hostTruthFile, listSuites, modulesFor, objectGlobals, versionCodeOfPackage, type BuiltSuite } from '../../harness/suites/build.js';
import { elfSection } from '../../harness/kernels/extract.js';
import { moduleNeeds } from '../../harness/suites/types.js';
import { loadObjectSpec } from '../../harness/core/object/index.js';

const KERNELS = ['5.10', '6.1', '6.1-cloud', '6.1-rt', '6.12', '7.2', '7.3'];
const SUITES = ['bitfields', 'block-io', 'enums-and-sizes', 'globals', 'iter-num', 'kconfig', 'kernel-version', 'module-btf', 'netns', 'renamed-field', 'ringbuf-fentry', 'task-fields'];
const store = new KernelStore();
let built: BuiltSuite[];
/** Per kernel: its vmlinux BTF and the BTF of the modules the suites need (split on vmlinux's; none on 5.10). */
const kernels = new Map<string, { art: KernelArtifacts; btf: Btf; modules: Btf[] }>();
const reports = new Map<string, RelocateReport>(); // `${suite}@${kernel}`

const verCmp = (a: string, b: string) => {
  const [a1, a2] = a.split('.').map(Number);
  const [b1, b2] = b.split('.').map(Number);
  return a1! - b1! || a2! - b2!;
};

beforeAll(async () => {
  built = await buildSuites({ store });
  for (const id of KERNELS) {
    const art = await store.fetch(id);
    const btf = parseBtf(new Uint8Array(readFileSync(art.btf)), { source: id });
    const modules: Btf[] = [];
    for (const m of await store.modules(art, modulesFor(built.map((b) => b.spec), art.config))) {
      const sec = elfSection(readFileSync(m.path), '.BTF', m.member);
      if (sec) modules.push(parseBtf(new Uint8Array(sec), { source: m.member, base: btf }));
    }
    kernels.set(id, { art, btf, modules });
  }
  for (const s of built) {
    const bytes = new Uint8Array(readFileSync(s.object));
    for (const [id, k] of kernels) reports.set(`${s.name}@${id}`, relocateObject(bytes, `${s.name}.bpf.o`, s.sha256, { vmlinux: k.btf, modules: k.modules }, id).report);
  }
}, 240_000);

const report = (suite: string, kernel: string) => reports.get(`${suite}@${kernel}`)!;
const relos = (suite: string, kernel: string, spec: string, kind?: string) =>
  report(suite, kernel).relocations.filter((r) => r.spec === spec && (kind === undefined || r.kind === kind));

describe('build', () => {
  it('compiles every suite once into the object cache, with a stable sha256', async () => {
    expect(listSuites()).toEqual(SUITES);
    expect(built.map((b) => b.name)).toEqual(SUITES);
    for (const b of built) {
      expect(createHash('sha256').update(readFileSync(b.object)).digest('hex')).toBe(b.sha256);
      expect(b.object).toMatch(new RegExp(`/objects/${b.name}-[0-9a-f]{16}\\.bpf\\.o$`)); // named by its compile key
      expect(b.spec.name).toBe(b.name);
    }
    const mtimes = built.map((b) => statSync(b.object).mtimeMs);
    const again = await buildSuites({ store });
    expect(again.map((b) => b.sha256)).toEqual(built.map((b) => b.sha256));
    expect(again.map((b) => statSync(b.object).mtimeMs)).toEqual(mtimes); // not recompiled
  });

  it('observes only globals the object has, and the programs write them', () => {
    for (const b of built) {
      const obj = loadObjectSpec(new Uint8Array(readFileSync(b.object)), b.name);
      const g = objectGlobals(obj);
      for (const c of b.spec.checks) if (!c.observe.startsWith('ringbuf:')) expect(['.bss', '.data'], `${b.name}: ${c.observe}`).toContain(g.get(c.observe));
      for (const k of Object.keys(b.spec.rodata ?? {})) expect(g.get(k.split('.')[0]!)).toBe('.rodata');
    }
  });

  it('the globals suite has the seed layout: cfg in .rodata, stats in .bss, a non-zero counter in .data', () => {
    const obj = loadObjectSpec(new Uint8Array(readFileSync(built.find((b) => b.name === 'globals')!.object)), 'globals');
    const g = objectGlobals(obj);
    expect([g.get('cfg'), g.get('stats'), g.get('counter')]).toEqual(['.rodata', '.bss', '.data']);
    const data = obj.maps.find((m) => m.section === '.data')!.data!;
    expect(new DataView(data.buffer, data.byteOffset).getInt32(0, true)).toBe(1000);
  });
});

describe('offline relocation against every kernel', () => {
  it('has no error, no reachable poisoned relocation and no missing kfunc at or above minKernel; below it, something that cannot load', () => {
    const runnable = new Map<string, string[]>();
    for (const b of built) {
      const obj = loadObjectSpec(new Uint8Array(readFileSync(b.object)), b.name);
      for (const id of KERNELS) {
        const { art, btf } = kernels.get(id)!;
        const series = art.version.split('.').slice(0, 2).join('.');
        // Below minKernel, or a module's types wanted where modules carry no BTF (5.10).
        const tooOld = (b.spec.minKernel !== undefined && verCmp(series, b.spec.minKernel) < 0) || (moduleNeeds(b.spec).some((m) => m.btf) && kernels.get(id)!.modules.length === 0);
        const bad = report(b.name, id).relocations
          .filter((r) => r.status === 'error' || (r.status === 'poisoned' && r.reachable !== false))
          .map((r) => `${b.name}@${id} ${r.kind} ${r.type}.${r.spec}: ${r.error}`);
        const missing = obj.externs.filter((e) => e.kind === 'ksym' && e.func && !btf.byName(e.name).some((i) => btf.kind(i) === Kind.FUNC)).map((e) => `${b.name}@${id}: kfunc ${e.name} missing`);
        if (tooOld) expect([...bad, ...missing].length, `${b.name}@${id} is below minKernel ${b.spec.minKernel}`).toBeGreaterThan(0);
        else {
          expect([...bad, ...missing]).toEqual([]);
          runnable.set(b.name, [...(runnable.get(b.name) ?? []), id]);
        }
      }
    }
    for (const s of SUITES.filter((n) => n !== 'iter-num' && n !== 'module-btf')) expect(runnable.get(s), s).toEqual(KERNELS);
    expect(runnable.get('iter-num')).toEqual(['6.12', '7.2', '7.3']);
    expect(runnable.get('module-btf')).toEqual(KERNELS.filter((k) => k !== '5.10'));
  });

  it('every suite but iter-num (6.4) needs at most 5.8, so 5.10 and up run them all', () => {
    for (const b of built.filter((x) => x.name !== 'iter-num')) expect(verCmp(b.spec.minKernel ?? '0.0', '5.10'), b.name).toBeLessThanOrEqual(0);
    expect(built.find((x) => x.name === 'iter-num')!.spec.minKernel).toBe('6.4');
  });

  it('renamed-field takes task_struct___old.state on 5.10 and task_struct.__state on 6.1 and later', () => {
    const old = relos('renamed-field', '5.10', 'state', 'byte_off')[0]!;
    expect([old.type, old.status, old.target]).toEqual(['struct task_struct___old', 'ok', 16]);
    expect(relos('renamed-field', '5.10', '__state', 'field_exists')[0]!.target).toBe(0);
    for (const r of relos('renamed-field', '5.10', '__state', 'byte_off')) expect([r.status, r.reachable]).toEqual(['poisoned', false]);
    for (const id of KERNELS.filter((k) => k !== '5.10')) {
      const btf = kernels.get(id)!.btf;
      const ts = btf.type(btf.byName('task_struct').find((i) => btf.kind(i) === Kind.STRUCT)!);
      const stateOff = ts.kind === Kind.STRUCT ? ts.members.find((m) => m.name === '__state')!.bitOffset / 8 : -1;
      const cur = relos('renamed-field', id, '__state', 'byte_off')[0]!;
      expect([cur.type, cur.status, cur.target], id).toEqual(['struct task_struct', 'ok', stateOff]);
      expect(relos('renamed-field', id, '__state', 'byte_sz')[0]!.target, id).toBe(4);
      expect(relos('renamed-field', id, 'state', 'field_exists').find((r) => r.type === 'struct task_struct___old')!.target, id).toBe(0);
      for (const r of relos('renamed-field', id, 'state', 'byte_off')) expect([r.type, r.status, r.reachable], id).toEqual(['struct task_struct___old', 'poisoned', false]);
    }
  });

  it('task-fields relocates task_struct.pid to each kernel\'s offset', () => {
    const offsets = new Set<number>();
    for (const [id, k] of kernels) {
      const ts = k.btf.type(k.btf.byName('task_struct').find((i) => k.btf.kind(i) === Kind.STRUCT)!);
      const pid = ts.kind === Kind.STRUCT ? ts.members.find((m) => m.name === 'pid')!.bitOffset / 8 : -1;
      // BPF_CORE_READ and tsk + bpf_core_field_offset share one computed address (as both reads
      // do in the seed's listing); the second is the stored core_offset. The plain
      // __builtin_offsetof read has no relocation at all: clang folded it from vmlinux.h.
      const rs = relos('task-fields', id, 'pid', 'byte_off');
      expect(rs.length, id).toBe(2);
      for (const r of rs) expect([r.status, r.target], id).toEqual(['ok', pid]);
      offsets.add(pid);
    }
    expect(offsets.size).toBeGreaterThan(3); // the field really moves across the matrix
  });

  it('bitfields: sk_userlocks is a 4-bit bitfield on 5.10/6.1 and a u8 from 6.12; sk_protocol a u16 everywhere', () => {
    const shift = (id: string, f: string) => relos('bitfields', id, f, 'rshift_u64')[0]!.target;
    for (const id of ['5.10', '6.1', '6.1-cloud', '6.1-rt']) expect(shift(id, 'sk_userlocks'), id).toBe(60);
    for (const id of ['6.12', '7.2', '7.3']) expect(shift(id, 'sk_userlocks'), id).toBe(56);
    for (const id of KERNELS) {
      expect(shift(id, 'sk_protocol'), id).toBe(48);
      expect(relos('bitfields', id, 'sk_protocol', 'byte_sz')[0]!.target, id).toBe(2);
      expect(shift(id, '__sk_common.skc_net_refcnt'), id).toBe(63);
    }
    // sk_protocol and sk_type swap places in 7.x
    const off = (id: string, f: string) => relos('bitfields', id, f, 'byte_off')[0]!.target as number;
    expect(off('6.1', 'sk_protocol')).toBeGreaterThan(off('6.1', 'sk_type'));
    expect(off('7.3', 'sk_protocol')).toBeLessThan(off('7.3', 'sk_type'));
  });

  it('module-btf: tun_file and tun_struct exist only in tun.ko\'s BTF, and relocate there; without module BTF (5.10) they cannot', () => {
    for (const id of KERNELS) {
      const { btf, modules } = kernels.get(id)!;
      expect(btf.byName('tun_file'), id).toEqual([]);
      const rs = report('module-btf', id).relocations.filter((r) => r.type.startsWith('struct tun_'));
      expect(rs.length, id).toBeGreaterThan(5);
      if (id === '5.10') {
        expect(modules, id).toEqual([]);
        for (const r of rs.filter((x) => x.kind === 'byte_off')) expect(r.status, `${id} ${r.spec}`).toBe('poisoned');
        continue;
      }
      // tun for module-btf; null_blk (and configfs, which it depends on) for block-io.
      expect(modules.map((m) => m.source.split('/').pop()!.replace(/\.ko.*/, '')).sort(), id).toEqual(['configfs', 'null_blk', 'tun']);
      for (const r of rs) expect(r.status, `${id} ${r.kind} ${r.type}.${r.spec}`).toBe('ok');
    }
    // tun_file grows and `detached` moves across the matrix (a relocation that matters).
    const sizes = new Set(KERNELS.filter((k) => k !== '5.10').map((id) => relos('module-btf', id, '', 'type_size')[0]!.target));
    expect(sizes.size).toBeGreaterThan(2);
  });

  it('block-io: the disk through rq->rq_disk and REQ_OP_WRITE from enum req_opf on 5.10; rq->q->disk and enum req_op after', () => {
    for (const id of KERNELS) {
      const old = id === '5.10';
      expect(relos('block-io', id, 'rq_disk', 'field_exists')[0]!.target, id).toBe(old ? 1 : 0);
      expect(relos('block-io', id, 'REQ_OP_WRITE', 'enumval_exists').find((r) => r.type === 'enum req_op')!.target, id).toBe(old ? 0 : 1);
      const disk = relos('block-io', id, 'disk', 'byte_off').find((r) => r.type === 'struct request_queue')!;
      expect([disk.status, disk.reachable === false], id).toEqual(old ? ['poisoned', true] : ['ok', false]);
      const rqDisk = relos('block-io', id, 'rq_disk', 'byte_off')[0]!;
      expect([rqDisk.status, rqDisk.reachable === false], id).toEqual(old ? ['ok', false] : ['poisoned', true]);
    }
  });

  it('enums-and-sizes: guarded relocations are poisoned only where the kernel lacks the type or enumerator', () => {
    const poisoned = (id: string) => report('enums-and-sizes', id).relocations.filter((r) => r.status === 'poisoned').map((r) => `${r.type}:${r.spec}`).sort();
    const cm = (e: string) => `enum bpf_map_type___cm:${e}___cm`;
    expect(poisoned('5.10')).toEqual([cm('BPF_MAP_TYPE_ARENA'), cm('BPF_MAP_TYPE_BLOOM_FILTER'), cm('__MAX_BPF_MAP_TYPE')]);
    // a missing type is not poisoned: its size and existence relocate to 0
    expect(relos('enums-and-sizes', '5.10', '', 'type_size').find((r) => r.type === 'struct bpf_iter_num___cm')!.target).toBe(0);
    expect(poisoned('6.1')).toEqual([cm('BPF_MAP_TYPE_ARENA'), cm('__MAX_BPF_MAP_TYPE')]); // BLOOM_FILTER (5.16) present
    expect(poisoned('7.3')).toEqual([]);
  });
});

describe('host truth', () => {
  it('agrees with our BTF reader on every key, and with the relocations the engine computed', async () => {
    for (const id of ['5.10', '6.1-rt', '7.3']) {
      const truth = await hostTruth(id, { store });
      const { btf: vmlinux, art, modules } = kernels.get(id)!;
      // vmlinux first, then each module (a module's split view answers vmlinux ids too).
      const named = (name: string, kinds: Kind[]): { v: Btf; i: number } | undefined => {
        for (const v of [vmlinux, ...modules]) {
          const i = v.byName(name).find((x) => kinds.includes(v.kind(x)));
          if (i !== undefined) return { v, i };
        }
        return undefined;
      };
      for (const [key, value] of Object.entries(truth)) {
        const [what, a = '', b = ''] = key.split('.');
        let mine: unknown;
        if (what === 'enum' || what === 'enumexists') {
          const e = named(a, [Kind.ENUM, Kind.ENUM64]);
          const t = e === undefined ? undefined : e.v.type(e.i);
          const v = t && (t.kind === Kind.ENUM || t.kind === Kind.ENUM64) ? t.values.find((x) => x.name === b) : undefined;
          mine = what === 'enumexists' ? v !== undefined : Number(v!.value);
        } else if (what === 'size' || what === 'exists' || what === 'typeid') {
          const kind = { struct: Kind.STRUCT, union: Kind.UNION, enum: Kind.ENUM, typedef: Kind.TYPEDEF, int: Kind.INT }[a]!;
          const t = named(b, [kind]);
          mine = what === 'exists' ? t !== undefined : what === 'typeid' ? t?.i : t!.v.sizeOf(t!.i);
        } else if (what === 'field' || what === 'offset' || what === 'fieldsize') {
          const { v, i } = named(a, [Kind.STRUCT, Kind.UNION])!;
          const s = v.type(i);
          const m = s.kind === Kind.STRUCT || s.kind === Kind.UNION ? s.members.find((x) => x.name === b) : undefined;
          mine = what === 'field' ? m !== undefined : what === 'offset' ? m!.bitOffset / 8 : v.sizeOf(m!.type);
        } else if (what === 'kernel') {
          mine = versionCodeOfPackage(art.version);
        } else if (what === 'config') {
          mine = new RegExp(`^${a}=(.*)$`, 'm').exec(readFileSync(art.config, 'utf8'))?.[1];
        }
        expect(mine, `${id} ${key}`).toEqual(value);
      }
      // The engine's relocated values for enums-and-sizes equal bpftool's view of the same kernel.
      const rep = report('enums-and-sizes', id);
      const val = (kind: string, type: string, spec: string) => rep.relocations.find((r) => r.kind === kind && r.type === type && r.spec === spec)?.target;
      expect(val('enumval_value', 'enum cpuhp_state', 'CPUHP_AP_ONLINE_DYN')).toBe(truth['enum.cpuhp_state.CPUHP_AP_ONLINE_DYN']);
      expect(val('enumval_value', 'enum pageflags', 'PG_uptodate')).toBe(truth['enum.pageflags.PG_uptodate']);
      expect(val('type_size', 'struct task_struct', '')).toBe(truth['size.struct.task_struct']);
      expect(val('type_size', 'struct sock', '')).toBe(truth['size.struct.sock']);
      expect(val('target_type_id', 'struct task_struct', '')).toBe(truth['typeid.struct.task_struct']);
      expect(Boolean(val('type_exists', 'struct bpf_iter_num___cm', ''))).toBe(truth['exists.struct.bpf_iter_num']);
      // module-btf: relocated against tun.ko's BTF, the engine agrees with bpftool reading that
      // module's .BTF on top of the kernel's (5.10: modules without BTF, the types do not exist).
      const mod = report('module-btf', id);
      const mval = (kind: string, type: string, spec: string) => mod.relocations.find((r) => r.kind === kind && r.type === type && r.spec === spec)?.target;
      expect(Boolean(mval('type_exists', 'struct tun_file___cm', '')), id).toBe(truth['exists.struct.tun_file']);
      if (id === '5.10') continue;
      expect(mval('type_size', 'struct tun_file___cm', ''), id).toBe(truth['size.struct.tun_file']);
      expect(mval('byte_off', 'struct tun_file___cm', 'detached'), id).toBe(truth['offset.tun_file.detached']);
      expect(mval('target_type_id', 'struct tun_struct___cm', ''), id).toBe(truth['typeid.struct.tun_struct']);
      expect(truth['typeid.struct.tun_struct'] as number, id).toBeGreaterThanOrEqual(kernels.get(id)!.btf.count); // a module id, after vmlinux's
      // Every module's ids start after vmlinux's, so tun's and null_blk's overlap: whichever
      // module comes last, tun's types resolve in tun.
      const tunKeys = ['size.struct.tun_file', 'offset.tun_file.detached', 'fieldsize.tun_file.detached'];
      for (const order of [['tun', 'null_blk'], ['null_blk', 'tun']]) {
        const t = await hostTruth(id, { store, keys: tunKeys, modules: order });
        expect([t['size.struct.tun_file'], t['offset.tun_file.detached'], t['fieldsize.tun_file.detached']], `${id} ${order}`).toEqual([truth['size.struct.tun_file'], truth['offset.tun_file.detached'], 8]);
      }
    }
  }, 120_000);

  it('LINUX_KERNEL_VERSION truth comes from the package version, patch level capped at 255', async () => {
    expect(versionCodeOfPackage('5.10.237-1')).toBe((5 << 16) + (10 << 8) + 237);
    expect(versionCodeOfPackage('5.10.300-1')).toBe((5 << 16) + (10 << 8) + 255);
    expect(versionCodeOfPackage('7.3.4-1~bpo13+1')).toBe((7 << 16) + (3 << 8) + 4);
    const t = await hostTruth('7.3', { store, keys: ['kernel.version', 'config.CONFIG_PREEMPT_RT', 'config.CONFIG_PHYLIB'] });
    expect(t['kernel.version']).toBe(versionCodeOfPackage(kernels.get('7.3')!.art.version));
    expect(t['config.CONFIG_PHYLIB']).toBe('y');
    expect('config.CONFIG_PREEMPT_RT' in t).toBe(false); // "is not set" → absent
    const rt = await hostTruth('6.1-rt', { store, keys: ['config.CONFIG_PREEMPT_RT'] });
    expect(rt['config.CONFIG_PREEMPT_RT']).toBe('y');
  });

  it('host truth is kept on disk by its inputs: a kept answer is used, a missing one is worked out again', async () => {
    // A key no other test asks for, so the planted answer below cannot reach another test.
    const keys = ['exists.struct.cm_truth_memo_probe', 'kernel.version'];
    const t = await hostTruth('6.1', { store, keys });
    expect(t['exists.struct.cm_truth_memo_probe']).toBe(false);
    const file = await hostTruthFile(kernels.get('6.1')!.art, keys);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(t);
    writeFileSync(file, JSON.stringify({ ...t, 'exists.struct.cm_truth_memo_probe': true }));
    expect((await hostTruth('6.1', { store, keys }))['exists.struct.cm_truth_memo_probe']).toBe(true);
    rmSync(file);
    expect((await hostTruth('6.1', { store, keys }))['exists.struct.cm_truth_memo_probe']).toBe(false);
    // Other inputs, another entry: a different kernel's BTF does not see this one.
    expect((await hostTruth('7.3', { store, keys }))['kernel.version']).toBe(versionCodeOfPackage(kernels.get('7.3')!.art.version));
  });
});

describe('suite folders', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cm-suites-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a compile error names the suite source', async () => {
    cpSync(join(import.meta.dirname, '../../suites/globals'), join(dir, 'broken'), { recursive: true });
    writeFileSync(join(dir, 'broken/spec.yaml'), readFileSync(join(dir, 'broken/spec.yaml'), 'utf8').replace('name: globals', 'name: broken'));
    writeFileSync(join(dir, 'broken/prog.bpf.c'), readFileSync(join(dir, 'broken/prog.bpf.c'), 'utf8').replace('stats++;', 'stats++ +;'));
    // Named where it is (a folder outside the working directory: its absolute path), not suites/broken.
    const err = (await buildSuites({ store, suitesDir: dir, names: ['broken'] }).catch((e: unknown) => e)) as Error;
    expect(err.message.startsWith(`${join(dir, 'broken/prog.bpf.c')}: clang-19 failed: `), err.message).toBe(true);
    expect(err.message).toMatch(/prog\.bpf\.c:\d+:\d+: error:/);
  });

  it('an observe naming no global of the object is an error with the spec line', async () => {
    cpSync(join(import.meta.dirname, '../../suites/kconfig'), join(dir, 'kc'), { recursive: true });
    const spec = readFileSync(join(dir, 'kc/spec.yaml'), 'utf8').replace('name: kconfig', 'name: kc').replace('observe: hz,', 'observe: hertz,');
    writeFileSync(join(dir, 'kc/spec.yaml'), spec);
    const line = spec.split('\n').findIndex((l) => l.includes('observe: hertz')) + 1;
    await expect(buildSuites({ store, suitesDir: dir, names: ['kc'] })).rejects.toThrow(`${join(dir, 'kc/spec.yaml')}:${line}: no global variable 'hertz' in the object (globals: `);
  });

  it('an unknown suite name is a usage error listing the suites', async () => {
    await expect(buildSuites({ store, names: ['nope'] })).rejects.toThrow(`unknown suite 'nope' (suites: ${SUITES.join(', ')})`);
  });
});
