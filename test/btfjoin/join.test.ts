// btf join on the real matrix kernels' BTF: the joined header is deterministic, compiles for the
// BPF target next to libbpf's headers, reproduces every kernel's struct sizes and member offsets
// (checked by clang with static assertions), and a program written against its ___5_10 flavour
// relocates on all eight kernels.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { flavourSuffix, joinBtf, type JoinInput, type JoinResult } from '../../harness/btfjoin/join.js';
import { loadKernelBtfs } from '../../harness/btfjoin/load.js';
import type { Btf } from '../../harness/core/btf/btf.js';
import { Kind } from '../../harness/core/btf/kinds.js';
import { readTargetBtf, relocateObject } from '../../harness/core/relocate.js';
import { KernelStore } from '../../harness/kernels/store.js';

const ALL = ['5.10', '6.1', '6.1-cloud', '6.1-rt', '6.12', '6.12-nonetns', '7.2', '7.3', '7.x'];
const CFLAGS = ['-g', '-O2', '-target', 'bpf', '-D__TARGET_ARCH_x86'];
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

let kernels: JoinInput[];
let joined: JoinResult;
let dir: string;

beforeAll(async () => {
  kernels = await loadKernelBtfs(['all']);
  joined = joinBtf(kernels);
  dir = mkdtempSync(join(tmpdir(), 'btfjoin-'));
  writeFileSync(join(dir, 'vmlinux_joined.h'), joined.header);
}, 300_000);

/** The body of `struct <name> { ... };` as emitted. */
function body(header: string, decl: string): string {
  const start = header.indexOf(`\n${decl} {\n`);
  expect(start, decl).toBeGreaterThan(0);
  return header.slice(start + 1, header.indexOf('\n};\n', start) + 4);
}

describe('btf join', () => {
  it('turns kernel ids into C identifier suffixes', () => {
    expect(flavourSuffix('5.10')).toBe('5_10');
    expect(flavourSuffix('6.1-rt')).toBe('6_1_rt');
    expect(flavourSuffix('7.x')).toBe('7_x');
  });

  it('joins the kernels in matrix order, newest last', () => {
    expect(kernels.map((k) => k.id)).toEqual(ALL);
    expect(joined.stats.kernels).toEqual(ALL);
    expect(joined.header.startsWith('/* Joined vmlinux BTF of: 5.10, 6.1,')).toBe(true);
    expect(joined.header.includes('\n#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n')).toBe(true);
    expect(joined.header.includes('\n#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n')).toBe(true);
    expect(joined.header.endsWith('#endif /* __VMLINUX_H__ */\n')).toBe(true);
  });

  it('is deterministic: freshly parsed BTF gives the same bytes', async () => {
    const again = joinBtf(await loadKernelBtfs(['all']));
    expect(sha(again.header)).toBe(sha(joined.header));
    // Selector order does not matter either: the matrix decides which kernel is newest.
    const a = joinBtf(await loadKernelBtfs(['7.x', '5.10']));
    const b = joinBtf(await loadKernelBtfs(['5.10', '7.x']));
    expect(sha(a.header)).toBe(sha(b.header));
    expect(a.stats.kernels).toEqual(['5.10', '7.x']);
  }, 300_000);

  it('keeps the newest layout under the plain name and flavours the others', () => {
    const h = joined.header;
    const plain = body(h, 'struct task_struct');
    expect(plain).toMatch(/\tunsigned int __state; \/\* only in: 6\.1, 6\.1-cloud, 6\.1-rt, 6\.12, 6\.12-nonetns, 7\.2, 7\.3, 7\.x \*\//);
    expect(plain).not.toMatch(/\tvolatile long int state;/);
    const old = body(h, 'struct task_struct___5_10');
    expect(old).toMatch(/\tvolatile long int state; \/\* only in: 5\.10 \*\//);
    // The comment before the plain layout names every other layout and its kernels.
    const at = h.indexOf('\nstruct task_struct {\n');
    const comment = h.slice(h.lastIndexOf('/*', at), at);
    expect(comment).toMatch(/other layouts: .*task_struct___5_10 \(5\.10\)/);
    // The seed's CONFIG_NET_NS=n kernel: possible_net_t has no `net` there, a layout of its own.
    expect(h).toContain('other layouts: possible_net_t___6_12_nonetns (6.12-nonetns) */');
    // 7.3 and 7.x are the same kernel build: they never need a flavour of their own.
    expect(/___7_x\b/.test(h)).toBe(false);
    expect(/\bstruct task_struct___7_3\b/.test(h)).toBe(false);
    // A type identical in every kernel is emitted once, without a flavour or a comment.
    expect(h.split('\nstruct list_head {\n').length).toBe(2);
    expect(/\bstruct list_head___/.test(h)).toBe(false);
    const flavoured = joined.types.filter((t) => t.flavour !== undefined);
    for (const t of flavoured) expect(t.spelling.includes(`___${t.flavour}`)).toBe(true);
    expect(flavoured.length).toBe(joined.stats.flavoured);
    expect(joined.stats.flavoured).toBeGreaterThan(100);
  });

  it('suffixes the enumerators of flavoured enums', () => {
    const flavoured = joined.types.find((t) => t.flavour === '5_10' && t.spelling.startsWith('enum '));
    expect(flavoured).toBeDefined();
    const text = body(joined.header, flavoured!.spelling);
    const names = [...text.matchAll(/^\t(\w+) = /gm)].map((m) => m[1]!);
    expect(names.length).toBeGreaterThan(0);
    for (const n of names) expect(n.endsWith('___5_10')).toBe(true);
  });

  it('flavours typedefs whose target differs, pointing at the same kernel\'s layout', () => {
    const td = joined.types.filter((t) => t.flavour !== undefined && !/^(struct|union|enum) /.test(t.spelling));
    expect(td.length).toBeGreaterThan(0);
    const byId = new Map(kernels.map((k) => [k.id, k.btf]));
    let checked = 0;
    for (const t of td) {
      const btf = byId.get(t.kernel)!;
      const target = btf.type(btf.type(t.id).kind === Kind.TYPEDEF ? (btf.type(t.id) as { type: number }).type : 0);
      if (target.kind !== Kind.STRUCT || target.name === '') continue;
      // The typedef's target is the struct layout of the kernel the typedef came from.
      const emitted = joined.types.find((x) => x.spelling.startsWith(`struct ${target.name}`) && x.kernels.includes(t.kernel) && (x.spelling === `struct ${target.name}` || x.flavour !== undefined))!;
      const line = new RegExp(`\\ntypedef ${emitted.spelling.replace(/\W/g, (c) => `\\${c}`)} ${t.spelling};\\n`);
      expect(line.test(joined.header), `${t.spelling} → ${emitted.spelling}`).toBe(true);
      if (++checked === 20) break;
    }
    expect(checked).toBeGreaterThan(0);
  });

  it('a single kernel needs no flavours and marks no member', async () => {
    const one = joinBtf(await loadKernelBtfs(['6.1']));
    expect(one.stats.flavoured).toBe(0);
    expect(one.stats.onlyInMembers).toBe(0);
    expect(one.header.includes('only in:')).toBe(false);
  }, 120_000);

  it('the CLI refuses anything but `btf join`', async () => {
    const { btfCommand } = await import('../../harness/cli/btf.js');
    await expect(btfCommand.run(['frob'])).rejects.toThrow(/btf: expected 'btf join'/);
    await expect(btfCommand.run(['join', '--kernels', 'no-such-kernel'])).rejects.toThrow(/no-such-kernel/);
  });

  it('compiles for the BPF target with libbpf headers', () => {
    const src = join(dir, 'include-only.bpf.c');
    writeFileSync(src, '#include "vmlinux_joined.h"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_core_read.h>\n#include <bpf/bpf_tracing.h>\nchar LICENSE[] SEC("license") = "GPL";\n');
    const r = spawnSync('clang-19', [...CFLAGS, `-I${dir}`, '-c', src, '-o', join(dir, 'include-only.o')], { encoding: 'utf8' });
    expect(r.stderr).not.toContain('error:');
    expect(r.status).toBe(0);
  });

  it("reproduces every kernel's struct/union sizes and member offsets", () => {
    const byId = new Map(kernels.map((k) => [k.id, k.btf]));
    const asserts: string[] = [];
    let skipped = 0;
    for (const t of joined.types) {
      const btf = byId.get(t.kernel)!;
      const ty = btf.type(t.id);
      if (ty.kind !== Kind.STRUCT && ty.kind !== Kind.UNION) continue;
      // va_list is a kernel (x86) type the BPF target spells differently (clang's own builtin).
      if (containsVaList(btf, t.id)) {
        skipped++;
        continue;
      }
      asserts.push(`_Static_assert(sizeof(${t.spelling}) == ${ty.size}, "");`);
      for (const m of ty.members) {
        if (m.name !== '' && m.bitfieldSize === 0) asserts.push(`_Static_assert(__builtin_offsetof(${t.spelling}, ${m.name}) == ${m.bitOffset / 8}, "");`);
      }
    }
    expect(asserts.length).toBeGreaterThan(100_000);
    expect(skipped).toBeLessThan(10);
    const src = join(dir, 'layout.c');
    writeFileSync(src, `#include "vmlinux_joined.h"\n${asserts.join('\n')}\n`);
    const r = spawnSync('clang-19', ['-target', 'bpf', '-fsyntax-only', '-ferror-limit=20', `-I${dir}`, src], { encoding: 'utf8', maxBuffer: 1 << 26 });
    expect(r.stderr.split('\n').filter((l) => l.includes('error:')).slice(0, 5)).toEqual([]);
    expect(r.status).toBe(0);
  }, 120_000);

  it('a program using the ___5_10 flavour relocates on all eight kernels', async () => {
    const src = join(dir, 'renamed-field-joined.bpf.c');
    writeFileSync(src, readFileSync(new URL('./fixtures/renamed-field-joined.bpf.c', import.meta.url)));
    const obj = join(dir, 'renamed-field-joined.o');
    execFileSync('clang-19', [...CFLAGS, `-I${dir}`, '-c', src, '-o', obj]);
    const bytes = readFileSync(obj);
    const store = new KernelStore();
    for (const id of ALL) {
      const k = await store.fetch(id);
      const rep = relocateObject(bytes, obj, 'sha', { vmlinux: readTargetBtf(readFileSync(k.btf), id) }, id).report;
      const rel = rep.relocations;
      expect(rel.filter((x) => x.status === 'error'), id).toEqual([]);
      expect(rel.filter((x) => x.status === 'poisoned' && x.reachable !== false), id).toEqual([]);
      const exists = (type: string, spec: string) => rel.find((x) => x.kind === 'field_exists' && x.type === type && x.spec === spec)!.target;
      const live = (type: string, spec: string) => rel.filter((x) => x.type === type && x.spec === spec && x.kind !== 'field_exists').map((x) => x.status);
      const old = id === '5.10';
      expect(exists('struct task_struct', '__state'), id).toBe(old ? 0 : 1);
      expect(exists('struct task_struct___5_10', 'state'), id).toBe(old ? 1 : 0);
      expect(live('struct task_struct', '__state'), id).toEqual(old ? ['poisoned', 'poisoned'] : ['ok', 'ok']);
      expect(live('struct task_struct___5_10', 'state'), id).toEqual(old ? ['ok', 'ok'] : ['poisoned', 'poisoned']);
      const size = rel.find((x) => x.kind === 'byte_sz' && x.status === 'ok')!;
      expect(size.target, id).toBe(old ? 8 : 4);
    }
  }, 120_000);
});

/** Whether a struct/union holds (by value, at any depth) the kernel's va_list. */
function containsVaList(btf: Btf, id: number, depth = 0): boolean {
  if (depth > 32) return false;
  const t = btf.type(id);
  switch (t.kind) {
    case Kind.TYPEDEF:
      return t.name === '__builtin_va_list' || containsVaList(btf, t.type, depth + 1);
    case Kind.CONST: case Kind.VOLATILE: case Kind.RESTRICT: case Kind.TYPE_TAG: case Kind.ARRAY:
      return containsVaList(btf, t.type, depth + 1);
    case Kind.STRUCT: case Kind.UNION:
      return t.members.some((m) => containsVaList(btf, m.type, depth + 1));
    default:
      return false;
  }
}
