// USDT notes, argument specs and executable symbols read by our pure modules (harness/core/usdt.ts,
// harness/core/binary.ts), checked against independent witnesses on real files: a program with
// sys/sdt.h probes compiled here by gcc (test/runtime/fixtures/usdt_target.c; needs Debian's
// systemtap-sdt-dev), Debian's libc.so.6, and binutils' readelf / nm / objdump. The layout of
// struct __bpf_usdt_spec is checked against the BTF clang wrote for usdt.bpf.h (read by bpftool),
// the pt_regs register offsets against <asm/ptrace.h> (offsetof, compiled by cc).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ElfBinary, binarySearchPath, parseBinary, STT_FUNC } from '../../harness/core/binary.js';
import { globMatch } from '../../harness/core/glob.js';
import {
  ARG_SPEC_LAYOUT, arm64RegisterOffset, executableMappings, mappedAddress, parseUsdtArgs, SPEC_LAYOUT, USDT_ARG_SPEC_SIZE, USDT_SPEC_SIZE, usdtLocations,
  usdtNotes, usdtSpecBytes, UsdtArgType, x86RegisterOffset,
} from '../../harness/core/usdt.js';
import { cacheDir } from '../../harness/paths.js';
import { bpftoolDump, compileAndRunC, compileBpf } from '../helpers/tools.js';

const SOURCE = 'test/runtime/fixtures/usdt_target.c';
const SDT_HEADER = '/usr/include/x86_64-linux-gnu/sys/sdt.h';
const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';

/** gcc -O2 -g of the target (cached by source and flags); `pie` builds an ET_DYN. */
function compileTarget(pie: boolean): string {
  if (!existsSync(SDT_HEADER) && !existsSync('/usr/include/sys/sdt.h')) throw new Error(`sys/sdt.h missing: apt-get install systemtap-sdt-dev`);
  const flags = ['-O2', '-g', '-Wall', pie ? '-pie' : '-no-pie', ...(pie ? ['-fPIE'] : [])];
  const h = createHash('sha256').update(readFileSync(SOURCE)).update(flags.join(' ')).digest('hex').slice(0, 16);
  const out = join(cacheDir('test-objects'), `usdt_target-${h}`);
  if (!existsSync(out)) {
    execFileSync('gcc', [...flags, '-o', `${out}.${process.pid}.tmp`, SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(`${out}.${process.pid}.tmp`, out);
  }
  return out;
}

const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });

/** readelf -n: the stapsdt notes as binutils prints them. */
function readelfNotes(path: string): { provider: string; name: string; location: number; base: number; semaphore: number; args: string }[] {
  const out: ReturnType<typeof readelfNotes> = [];
  const re = /Provider: (\S+)\n\s+Name: (\S+)\n\s+Location: 0x([0-9a-f]+), Base: 0x([0-9a-f]+), Semaphore: 0x([0-9a-f]+)\n\s+Arguments: ?([^\n]*)/g;
  for (const m of run('readelf', ['-n', path]).matchAll(re))
    out.push({ provider: m[1]!, name: m[2]!, location: parseInt(m[3]!, 16), base: parseInt(m[4]!, 16), semaphore: parseInt(m[5]!, 16), args: m[6]!.trim() });
  return out;
}

/** readelf -S: name → [address, file offset]. */
function readelfSections(path: string): Map<string, [number, number]> {
  const m = new Map<string, [number, number]>();
  for (const x of run('readelf', ['-S', '-W', path]).matchAll(/\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)/g)) m.set(x[1]!, [parseInt(x[2]!, 16), parseInt(x[3]!, 16)]);
  return m;
}

/** readelf -s / --dyn-syms: the defined FUNC and OBJECT symbols as "name@@VER value type bind". */
function readelfSymbols(path: string, dyn: boolean): string[] {
  const text = run('readelf', [dyn ? '--dyn-syms' : '--syms', '-W', path]);
  const table = dyn ? text : text.slice(text.indexOf("Symbol table '.symtab'"));
  const out: string[] = [];
  for (const line of table.split('\n')) {
    const m = /^\s*\d+: ([0-9a-f]+)\s+\d+\s+(FUNC|OBJECT)\s+(\w+)\s+\w+\s+(\S+)\s+(\S+)/.exec(line);
    if (!m || m[4] === 'UND') continue;
    out.push(`${m[5]!.replace(/ \(\d+\)$/, '')} ${parseInt(m[1]!, 16)} ${m[2]} ${m[3]}`);
  }
  return out.sort();
}

function ourSymbols(bin: ElfBinary, table: '.symtab' | '.dynsym'): string[] {
  const type = (t: number) => (t === STT_FUNC ? 'FUNC' : t === 1 ? 'OBJECT' : undefined);
  const bind = ['LOCAL', 'GLOBAL', 'WEAK'];
  return bin.symbols(table)
    .filter((s) => type(s.type) && s.shndx !== 0)
    // readelf prints a version after the name, except on the symbols that name a version themselves.
    .map((s) => `${s.name}${s.version && s.version !== s.name ? `${s.hiddenVersion ? '@' : '@@'}${s.version}` : ''} ${s.value} ${type(s.type)} ${bind[s.bind]}`)
    .sort();
}

/** The bytes objdump -s prints at `address` (hex): what a uprobe at the file offset we compute must find there. */
function objdumpBytes(path: string, address: number, n = 8): string {
  const out = run('objdump', ['-s', '-j', '.text', `--start-address=0x${address.toString(16)}`, `--stop-address=0x${(address + n).toString(16)}`, path]);
  // " 4010da 9066 833d4d2f 0000      .f.=M/..": the address, 35 columns of hex groups, then text.
  const hex = out.split('\n').map((l) => /^ ([0-9a-f]+) (.{35})/.exec(l)).filter((m) => m).map((m) => m![2]!.replace(/\s/g, '')).join('');
  if (hex.length !== 2 * n) throw new Error(`objdump printed ${hex.length / 2} bytes at 0x${address.toString(16)}:\n${out}`);
  return hex;
}
const fileBytes = (bin: ElfBinary, offset: number, n = 8) => Buffer.from(bin.bytes.subarray(offset, offset + n)).toString('hex');

let exec: string;
let pie: string;
let execBin: ElfBinary;
let pieBin: ElfBinary;

beforeAll(() => {
  exec = compileTarget(false);
  pie = compileTarget(true);
  execBin = parseBinary(new Uint8Array(readFileSync(exec)), exec);
  pieBin = parseBinary(new Uint8Array(readFileSync(pie)), pie);
}, 60_000);

describe('USDT notes (witness: readelf -n)', () => {
  it('every note of the executable and of the PIE, field by field', () => {
    for (const path of [exec, pie]) {
      const bin = parseBinary(new Uint8Array(readFileSync(path)), path);
      const witness = readelfNotes(path);
      expect(witness.length).toBe(4); // cm:tick, cm:sema, cm:twice at two sites
      expect(usdtNotes(bin)).toEqual(witness);
    }
  });

  it('the fixture has what the guest test relies on: a semaphore on cm:sema only, two cm:twice sites, six cm:tick arguments', () => {
    const notes = usdtNotes(execBin);
    expect(notes.filter((n) => n.semaphore).map((n) => n.name)).toEqual(['sema']);
    expect(notes.filter((n) => n.name === 'twice').length).toBe(2);
    expect(notes.find((n) => n.name === 'tick')!.args.split(' ').length).toBe(6);
  });

  it('locations: the file offset holds the probe nop objdump shows at the address; the semaphore offset is its place in .probes (readelf -S)', () => {
    for (const bin of [execBin, pieBin]) {
      const sections = readelfSections(bin.source);
      const [probesAddr, probesOff] = sections.get('.probes')!;
      for (const name of ['tick', 'sema', 'twice']) {
        const locs = usdtLocations(bin, 'cm', name);
        expect(locs.length).toBe(name === 'twice' ? 2 : 1);
        for (const l of locs) {
          // No prelink: .stapsdt.base is where the notes say, so the address is the note's.
          expect(l.address).toBe(l.note.location);
          expect(bin.bytes[l.fileOffset]).toBe(0x90); // sys/sdt.h's probe site is a 1-byte nop on x86
          expect(fileBytes(bin, l.fileOffset)).toBe(objdumpBytes(bin.source, l.address));
          expect(l.semaphoreOffset).toBe(l.note.semaphore ? l.note.semaphore - probesAddr + probesOff : 0);
        }
      }
      expect(usdtLocations(bin, 'cm', 'nope')).toEqual([]);
    }
    expect(execBin.type).toBe(2);
    expect(pieBin.type).toBe(3);
  });

  it('a .stapsdt.base that moved after the notes were written moves the probe address with it', () => {
    const bytes = new Uint8Array(execBin.bytes);
    const bin = parseBinary(bytes, 'moved');
    const base = bin.section('.stapsdt.base')!;
    const before = usdtLocations(bin, 'cm', 'tick')[0]!;
    // Rewrite the section header's sh_addr as a prelink would: 16 bytes later.
    const dv = new DataView(bytes.buffer);
    const shoff = Number(dv.getBigUint64(40, true));
    dv.setBigUint64(shoff + base.index * 64 + 16, BigInt(base.addr + 16), true);
    const after = usdtLocations(parseBinary(bytes, 'moved'), 'cm', 'tick')[0]!;
    expect(after.address).toBe(before.address + 16);
    expect(after.fileOffset).toBe(before.fileOffset + 16);
  });
});

describe('argument specs → struct __bpf_usdt_spec', () => {
  it('struct layout equals the BTF of usdt.bpf.h as clang compiled it (bpftool)', () => {
    const obj = compileBpf('test/runtime/fixtures/uprobe_usdt.bpf.c', ['-D__TARGET_ARCH_x86']);
    const types = bpftoolDump(obj);
    const spec = types.find((t) => t.name === '__bpf_usdt_spec') as unknown as { size: number; members: { name: string; bits_offset: number }[] };
    const arg = types.find((t) => t.name === '__bpf_usdt_arg_spec') as unknown as { size: number; members: { name: string; bits_offset: number }[] };
    const offsets = (t: typeof spec) => Object.fromEntries(t.members.map((m) => [m.name, m.bits_offset / 8]));
    expect(spec.size).toBe(USDT_SPEC_SIZE);
    expect(arg.size).toBe(USDT_ARG_SPEC_SIZE);
    expect(offsets(spec)).toEqual({ args: SPEC_LAYOUT.args, usdt_cookie: SPEC_LAYOUT.usdtCookie, arg_cnt: SPEC_LAYOUT.argCnt });
    expect(offsets(arg)).toEqual({ val_off: ARG_SPEC_LAYOUT.valOff, arg_type: ARG_SPEC_LAYOUT.argType, reg_off: ARG_SPEC_LAYOUT.regOff, arg_signed: ARG_SPEC_LAYOUT.argSigned, arg_bitshift: ARG_SPEC_LAYOUT.argBitshift });
    const e = types.find((t) => t.name === '__bpf_usdt_arg_type') as unknown as { values: { name: string; val: number }[] };
    expect(Object.fromEntries(e.values.map((v) => [v.name, v.val]))).toEqual({ BPF_USDT_ARG_CONST: UsdtArgType.CONST, BPF_USDT_ARG_REG: UsdtArgType.REG, BPF_USDT_ARG_REG_DEREF: UsdtArgType.REG_DEREF });
  });

  it('x86-64 register offsets equal offsetof(struct pt_regs, …) of <asm/ptrace.h>', () => {
    const regs = ['r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi', 'rip', 'rsp'];
    const out = compileAndRunC(`#include <stdio.h>\n#include <stddef.h>\n#include <asm/ptrace.h>\nint main(void){\n${regs.map((r) => `printf("%zu\\n", offsetof(struct pt_regs, ${r}));`).join('\n')}\nreturn 0;}\n`);
    expect(regs.map((r) => x86RegisterOffset(r))).toEqual(out.trim().split('\n').map(Number));
    // Sub-registers read the same slot (the spec's size says how much of it counts).
    for (const [sub, full] of [['eax', 'rax'], ['ax', 'rax'], ['al', 'rax'], ['sil', 'rsi'], ['r8d', 'r8'], ['r15b', 'r15'], ['esp', 'rsp'], ['eip', 'rip']] as const)
      expect(x86RegisterOffset(sub)).toBe(x86RegisterOffset(full));
    expect(x86RegisterOffset('ah')).toBeUndefined();
  });

  it('every argument of the compiled probes parses; each form gets its type, size, sign, offset and register', () => {
    for (const n of usdtNotes(execBin)) expect(parseUsdtArgs(n.args, 'x86_64').length).toBe(n.args ? n.args.split(' ').length : 0);
    const [a, b, c, d, e, f] = parseUsdtArgs('-4@%eax 1@%cl -2@%si 4@$5 8@-8(%rbp) -8@(%rsp)', 'x86_64');
    expect(a).toEqual({ text: '-4@%eax', type: UsdtArgType.REG, size: 4, signed: true, valOff: 0n, register: 'eax', regOff: 80 });
    expect(b).toMatchObject({ type: UsdtArgType.REG, size: 1, signed: false, regOff: 88 });
    expect(c).toMatchObject({ type: UsdtArgType.REG, size: 2, signed: true, regOff: 104 });
    expect(d).toMatchObject({ type: UsdtArgType.CONST, size: 4, signed: false, valOff: 5n, regOff: 0 });
    expect(e).toMatchObject({ type: UsdtArgType.REG_DEREF, size: 8, valOff: (1n << 64n) - 8n, register: 'rbp', regOff: 32 });
    expect(f).toMatchObject({ type: UsdtArgType.REG_DEREF, size: 8, signed: true, valOff: 0n, register: 'rsp', regOff: 152 });
    expect(parseUsdtArgs('-4@$-9', 'x86_64')[0]!.valOff).toBe((1n << 64n) - 9n);
    expect(parseUsdtArgs('', 'x86_64')).toEqual([]);
  });

  it('arm64 forms: [reg, off], [reg], constant, register', () => {
    const [a, b, c, d] = parseUsdtArgs('-4@[sp, 96] 8@[x19] 4@5 -8@x4', 'aarch64');
    expect(a).toMatchObject({ type: UsdtArgType.REG_DEREF, size: 4, signed: true, valOff: 96n, register: 'sp', regOff: 248 });
    expect(b).toMatchObject({ type: UsdtArgType.REG_DEREF, valOff: 0n, regOff: 19 * 8 });
    expect(c).toMatchObject({ type: UsdtArgType.CONST, valOff: 5n });
    expect(d).toMatchObject({ type: UsdtArgType.REG, size: 8, signed: true, regOff: 32 });
    expect(arm64RegisterOffset('x31')).toBeUndefined();
  });

  it('what libbpf does not read is an error naming the argument', () => {
    expect(() => parseUsdtArgs('-8@cm_value(%rip)', 'x86_64', 'usdt t:cm:x')).toThrow("usdt t:cm:x: argument #0 '-8@cm_value(%rip)' is not a spec libbpf reads on x86_64");
    expect(() => parseUsdtArgs('8@%rax 8@(%rax,%rbx,8)', 'x86_64')).toThrow(/argument #1 '8@\(%rax,%rbx,8\)' names register 'rax,%rbx,8'/);
    expect(() => parseUsdtArgs('3@%eax', 'x86_64')).toThrow(/has size 3/);
    expect(() => parseUsdtArgs('8@%xmm0', 'x86_64')).toThrow(/names register 'xmm0'/);
    expect(() => parseUsdtArgs(Array(13).fill('8@%rax').join(' '), 'x86_64')).toThrow(/more than 12 arguments/);
  });

  it('spec bytes: per argument val_off, type, reg_off, signedness and the bits to shift; then the cookie and the count', () => {
    const b = usdtSpecBytes(parseUsdtArgs('-4@%eax 8@-8(%rbp) 1@$200', 'x86_64'), 0xc0ffeen);
    const dv = new DataView(b.buffer);
    expect(b.length).toBe(208);
    expect([dv.getBigUint64(0, true), dv.getUint32(8, true), dv.getInt16(12, true), b[14], b[15]]).toEqual([0n, 1, 80, 1, 32]);
    expect([dv.getBigInt64(16, true), dv.getUint32(24, true), dv.getInt16(28, true), b[30], b[31]]).toEqual([-8n, 2, 32, 0, 0]);
    expect([dv.getBigUint64(32, true), dv.getUint32(40, true), b[46], b[47]]).toEqual([200n, 0, 0, 56]);
    expect(b.subarray(48, 192).every((x) => x === 0)).toBe(true);
    expect(dv.getBigUint64(192, true)).toBe(0xc0ffeen);
    expect(dv.getInt16(200, true)).toBe(3);
  });
});

describe('executable symbols (witnesses: readelf -s, objdump)', () => {
  it('.symtab and .dynsym of the target, and .dynsym of libc.so.6 with its symbol versions, equal readelf', () => {
    expect(ourSymbols(execBin, '.symtab')).toEqual(readelfSymbols(exec, false));
    expect(ourSymbols(execBin, '.dynsym')).toEqual(readelfSymbols(exec, true));
    const libc = parseBinary(new Uint8Array(readFileSync(LIBC)), LIBC);
    const ours = ourSymbols(libc, '.dynsym');
    expect(ours.length).toBeGreaterThan(2000);
    expect(ours).toEqual(readelfSymbols(LIBC, true));
  });

  it('function → file offset: the bytes there are the ones objdump shows at the symbol (target and libc)', () => {
    const nm = new Map(run('nm', ['--defined-only', exec]).trim().split('\n').map((l) => l.split(' ')).map(([v, , n]) => [n!, parseInt(v!, 16)]));
    for (const f of ['cm_work', 'cm_multi_one', 'main']) {
      const r = execBin.functionOffset(f);
      expect(r.table).toBe('.symtab'); // a non-PIE's .dynsym holds only what it imports
      expect(fileBytes(execBin, r.offset)).toBe(objdumpBytes(exec, nm.get(f)!));
    }
    const libc = parseBinary(new Uint8Array(readFileSync(LIBC)), LIBC);
    const dyn = new Map(run('readelf', ['--dyn-syms', '-W', LIBC]).split('\n').map((l) => /^\s*\d+: ([0-9a-f]+)\s+\d+\s+FUNC\s+\w+\s+\w+\s+\d+ (\S+)/.exec(l)).filter((m) => m).map((m) => [m![2]!, parseInt(m![1]!, 16)]));
    const strverscmp = libc.functionOffset('strverscmp');
    expect(strverscmp.table).toBe('.dynsym');
    expect(fileBytes(libc, strverscmp.offset)).toBe(objdumpBytes(LIBC, dyn.get('strverscmp@@GLIBC_2.2.5')!));
    // Two versions of realpath at two addresses: ambiguous unless a version is named, as in libbpf.
    expect(() => libc.functionOffset('realpath')).toThrow(/function 'realpath' is ambiguous in .dynsym/);
    expect(fileBytes(libc, libc.functionOffset('realpath@@GLIBC_2.3').offset)).toBe(objdumpBytes(LIBC, dyn.get('realpath@@GLIBC_2.3')!));
    expect(fileBytes(libc, libc.functionOffset('realpath@GLIBC_2.2.5').offset)).toBe(objdumpBytes(LIBC, dyn.get('realpath@GLIBC_2.2.5')!));
    expect(() => execBin.functionOffset('cm_missing')).toThrow(`${exec}: no function 'cm_missing' in .dynsym or .symtab`);
  });

  it('uprobe.multi patterns: the functions nm lists whose names match', () => {
    const names = run('nm', ['--defined-only', exec]).trim().split('\n').map((l) => l.split(' ')).filter(([, t]) => t === 'T' || t === 't').map(([, , n]) => n!);
    expect(execBin.functionsMatching('cm_multi_*').map((f) => f.name).sort()).toEqual(names.filter((n) => n.startsWith('cm_multi_')).sort());
    expect(execBin.functionsMatching('cm_multi_*').length).toBe(2);
    expect(execBin.functionsMatching('cm_w?rk').map((f) => f.name)).toEqual(['cm_work']);
    expect(execBin.functionsMatching('nothing*')).toEqual([]);
  });

  it('glob matching (core/glob.ts, which uprobe.multi patterns go through)', () => {
    const cases: [string, string, boolean][] = [
      ['cm_multi_one', 'cm_multi_*', true], ['cm_multi_', 'cm_multi_*', true], ['cm_multi', 'cm_multi_*', false],
      ['abc', 'a?c', true], ['ac', 'a?c', false], ['abcbd', '*b*d', true], ['abcbe', '*b*d', false], ['', '*', true], ['x', '', false], ['aXbXc', 'a*b*c', true],
    ];
    for (const [s, p, want] of cases) expect([s, p, globMatch(p, s)]).toEqual([s, p, want]);
  });

  it('search path of a bare name, as libbpf: libraries in LD_LIBRARY_PATH, /usr/lib64, /usr/lib, /lib/<triplet>; programs in PATH, /usr/bin, /usr/sbin', () => {
    expect(binarySearchPath('libc.so.6', { LD_LIBRARY_PATH: '/opt/l:', PATH: '/x' })).toEqual(['/opt/l/libc.so.6', '/usr/lib64/libc.so.6', '/usr/lib/libc.so.6', '/lib/x86_64-linux-gnu/libc.so.6']);
    expect(binarySearchPath('libfoo.so', {}, 'aarch64')).toEqual(['/usr/lib64/libfoo.so', '/usr/lib/libfoo.so', '/lib/aarch64-linux-gnu/libfoo.so']);
    expect(binarySearchPath('node', { PATH: '/a:/b/' })).toEqual(['/a/node', '/b/node', '/usr/bin/node', '/usr/sbin/node']);
  });

  it('process mappings: a file offset lands in the executable mapping that covers it', () => {
    const maps = [
      '7f0000000000-7f0000028000 r--p 00000000 08:01 123 /lib/x86_64-linux-gnu/libc.so.6',
      '7f0000028000-7f000017d000 r-xp 00028000 08:01 123 /lib/x86_64-linux-gnu/libc.so.6',
      '7f000017d000-7f00001d5000 r--p 0017d000 08:01 123 /lib/x86_64-linux-gnu/libc.so.6',
      '7f00001e0000-7f00001e2000 rw-p 00000000 00:00 0 ',
      '7f00001f0000-7f00001f1000 r-xp 00000000 08:01 9 /lib/x86_64-linux-gnu/libc.so.6 (deleted)',
    ].join('\n');
    const m = executableMappings(maps, '/lib/x86_64-linux-gnu/libc.so.6');
    expect(m).toEqual([{ start: 0x7f0000028000, end: 0x7f000017d000, offset: 0x28000 }]);
    expect(mappedAddress(m, 0xa0050)).toBe(0x7f00000a0050);
    expect(mappedAddress(m, 0x10)).toBeUndefined();
  });

  it('files that are not executables or shared objects are refused with a reason', () => {
    const obj = compileBpf('test/runtime/fixtures/uprobe_usdt.bpf.c', ['-D__TARGET_ARCH_x86']);
    expect(() => parseBinary(new Uint8Array(readFileSync(obj)), 'x.bpf.o')).toThrow('x.bpf.o: ELF type 1 is neither an executable (ET_EXEC) nor a shared object (ET_DYN) (at offset 16)');
    expect(() => parseBinary(new Uint8Array(10), 'short')).toThrow(/too short/);
    const cut = execBin.bytes.slice(0, 4096);
    expect(() => parseBinary(cut, 'cut')).toThrow(/cut: section header table .*past end of file/);
  });
});
