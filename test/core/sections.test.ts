// The SEC() table against libbpf itself. Witness: Debian bookworm's libbpf 1.1 (libbpf.so.1,
// through koffi): libbpf_prog_type_by_name() and libbpf_attach_type_by_name() for every name it
// knows, the list of its table's rows that it prints when a name is unknown, and
// bpf_object__open_mem() of a clang-compiled object (for `?` and the section names it keeps).
// Names newer than 1.1 are listed apart, with the UAPI enum names a current libbpf
// (libbpf/libbpf f7081a6, src/libbpf.c section_defs[]) gives them.
import koffi from 'koffi';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import {
  AttachType, ProgType, SECTION_DEFS, classifySection, findSectionDef, type AttachTarget, type ProgramKind,
} from '../../harness/core/object/sections.js';
import { BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS } from '../../harness/core/uapi.js';
import { compileBpf, writeTmp } from '../helpers/tools.js';

type ProgTypeName = keyof typeof ProgType;
type AttachTypeName = keyof typeof AttachType;

/** Every SEC() name libbpf documents, with targets where a row takes one (the brief's list and more). */
const NAMES = [
  'socket', 'sk_reuseport', 'sk_reuseport/migrate',
  'kprobe', 'kprobe/do_sys_open', 'kprobe/do_sys_open+0x10', 'kretprobe', 'kretprobe/do_sys_open',
  'ksyscall/openat', 'kretsyscall/openat', 'ksyscall', 'kretsyscall',
  'uprobe', 'uprobe//usr/bin/bash:readline', 'uprobe.s//usr/bin/bash:readline+8', 'uretprobe//lib/libc.so.6:malloc', 'uretprobe.s/libc.so.6:malloc',
  'usdt', 'usdt//usr/bin/node:node:gc__start',
  'kprobe.multi', 'kprobe.multi/tcp_*', 'kretprobe.multi', 'kretprobe.multi/vfs_?ead',
  'tracepoint/sched/sched_switch', 'tp/syscalls/sys_enter_getpid', 'tracepoint', 'tp',
  'raw_tracepoint/sys_enter', 'raw_tp/sys_exit', 'raw_tracepoint.w/bpf_test_finish', 'raw_tp.w/bpf_test_finish',
  'tp_btf/sched_switch', 'fentry/do_nanosleep', 'fexit/do_nanosleep', 'fmod_ret/security_file_open',
  'fentry.s/do_nanosleep', 'fexit.s/do_nanosleep', 'fmod_ret.s/security_file_open', 'fentry',
  'lsm/file_open', 'lsm.s/file_open', 'lsm_cgroup/socket_bind', 'iter/task', 'iter.s/task_file',
  'struct_ops/tcp_init', 'struct_ops', 'freplace/handler', 'syscall',
  'xdp', 'xdp.frags', 'xdp/devmap', 'xdp/cpumap', 'xdp.frags/devmap', 'xdp.frags/cpumap',
  'tc', 'classifier', 'action', 'perf_event', 'lwt_in', 'lwt_out', 'lwt_xmit', 'lwt_seg6local',
  'sockops', 'sk_skb', 'sk_skb/stream_parser', 'sk_skb/stream_verdict', 'sk_msg', 'sk_lookup',
  'lirc_mode2', 'flow_dissector', 'cgroup_skb/ingress', 'cgroup_skb/egress', 'cgroup/skb',
  'cgroup/sock', 'cgroup/sock_create', 'cgroup/sock_release', 'cgroup/post_bind4', 'cgroup/post_bind6',
  'cgroup/bind4', 'cgroup/bind6', 'cgroup/connect4', 'cgroup/connect6', 'cgroup/sendmsg4', 'cgroup/sendmsg6',
  'cgroup/recvmsg4', 'cgroup/recvmsg6', 'cgroup/getpeername4', 'cgroup/getpeername6',
  'cgroup/getsockname4', 'cgroup/getsockname6', 'cgroup/sysctl', 'cgroup/getsockopt', 'cgroup/setsockopt', 'cgroup/dev',
];

/** Names libbpf 1.1 does not know, with what a current libbpf makes of them (UAPI enum names). */
const NEWER: Record<string, [ProgTypeName, AttachTypeName | null]> = {
  'kprobe.session': ['KPROBE', 'TRACE_KPROBE_SESSION'],
  'kprobe.session/tcp_*': ['KPROBE', 'TRACE_KPROBE_SESSION'],
  'uprobe.multi//usr/bin/bash:read*': ['KPROBE', 'TRACE_UPROBE_MULTI'],
  'uretprobe.multi//usr/bin/bash:read*': ['KPROBE', 'TRACE_UPROBE_MULTI'],
  'uprobe.multi.s//usr/bin/bash:read*': ['KPROBE', 'TRACE_UPROBE_MULTI'],
  'uretprobe.multi.s//usr/bin/bash:read*': ['KPROBE', 'TRACE_UPROBE_MULTI'],
  'uprobe.session//usr/bin/bash:read*': ['KPROBE', 'TRACE_UPROBE_SESSION'],
  'uprobe.session.s//usr/bin/bash:read*': ['KPROBE', 'TRACE_UPROBE_SESSION'],
  'uprobe.multi': ['KPROBE', 'TRACE_UPROBE_MULTI'],
  'usdt.s//usr/bin/node:node:gc__start': ['KPROBE', null],
  'tracepoint.s/syscalls/sys_enter_openat': ['TRACEPOINT', null],
  'tp.s/syscalls/sys_enter_openat': ['TRACEPOINT', null],
  'raw_tracepoint.s/sys_enter': ['RAW_TRACEPOINT', null],
  'raw_tp.s/sys_enter': ['RAW_TRACEPOINT', null],
  'tp_btf.s/sys_enter': ['TRACING', 'TRACE_RAW_TP'],
  'fsession/do_nanosleep': ['TRACING', 'TRACE_FSESSION'],
  'fsession.s/do_nanosleep': ['TRACING', 'TRACE_FSESSION'],
  'fentry.multi/bpf_testmod:bpf_testmod_fentry_test*': ['TRACING', 'TRACE_FENTRY_MULTI'],
  'fexit.multi/do_*': ['TRACING', 'TRACE_FEXIT_MULTI'],
  'fsession.multi/do_*': ['TRACING', 'TRACE_FSESSION_MULTI'],
  'fentry.multi.s/do_*': ['TRACING', 'TRACE_FENTRY_MULTI'],
  'fexit.multi.s/do_*': ['TRACING', 'TRACE_FEXIT_MULTI'],
  'fsession.multi.s/do_*': ['TRACING', 'TRACE_FSESSION_MULTI'],
  'struct_ops.s/tcp_init': ['STRUCT_OPS', null],
  'tc/ingress': ['SCHED_CLS', 'TCX_INGRESS'],
  'tc/egress': ['SCHED_CLS', 'TCX_EGRESS'],
  'tcx/ingress': ['SCHED_CLS', 'TCX_INGRESS'],
  'tcx/egress': ['SCHED_CLS', 'TCX_EGRESS'],
  'netkit/primary': ['SCHED_CLS', 'NETKIT_PRIMARY'],
  'netkit/peer': ['SCHED_CLS', 'NETKIT_PEER'],
  'sk_skb/verdict': ['SK_SKB', 'SK_SKB_VERDICT'],
  'cgroup/connect_unix': ['CGROUP_SOCK_ADDR', 'CGROUP_UNIX_CONNECT'],
  'cgroup/sendmsg_unix': ['CGROUP_SOCK_ADDR', 'CGROUP_UNIX_SENDMSG'],
  'cgroup/recvmsg_unix': ['CGROUP_SOCK_ADDR', 'CGROUP_UNIX_RECVMSG'],
  'cgroup/getpeername_unix': ['CGROUP_SOCK_ADDR', 'CGROUP_UNIX_GETPEERNAME'],
  'cgroup/getsockname_unix': ['CGROUP_SOCK_ADDR', 'CGROUP_UNIX_GETSOCKNAME'],
  netfilter: ['NETFILTER', 'NETFILTER'],
};

/** Names no libbpf ≥ 1.0 knows (a name + '/' is not a target for an exact-name row; no partial prefixes). */
const UNKNOWN = [
  'foo/bar', 'xdp/extra', 'socket/filter', 'classifier/ingress', 'tc/ingressx', 'kprobex', 'kprobex/do_sys_open',
  'kprobe.multi2/x', 'cgroup/connect4/x', 'cgroup', 'cgroup_skb', 'fentry.multi.x/foo', 'sk_skb/parser', '',
  '.text', 'license', 'lsm_cgroupx/y', 'xdp.frags/', 'uprobe.multi.x/a:b', 'Kprobe/do_sys_open',
];

interface Libbpf {
  progType(name: string): { rc: number; type: number; attach: number };
  attachType(name: string): { rc: number; attach: number };
  /** Lines libbpf printed (any level) since the last call. */
  take(): string[];
  openPrograms(bytes: Uint8Array): { name: string; section: string; type: number; attach: number; autoload: boolean }[];
}

let lib: Libbpf;
beforeAll(() => {
  const so = koffi.load('libbpf.so.1');
  const libc = koffi.load('libc.so.6');
  const vsnprintf = libc.func('int vsnprintf(void *buf, size_t n, void *fmt, void *ap)');
  const proto = koffi.proto('int sections_test_print(int level, void *fmt, void *ap)');
  let lines: string[] = [];
  const buf = Buffer.alloc(1 << 16);
  // va_list on x86-64 is an array type: the callback receives it as a pointer, which vsnprintf takes.
  const cb = koffi.register((_level: number, fmt: unknown, ap: unknown) => {
    const n = Number(vsnprintf(buf, buf.length, fmt, ap));
    lines.push(buf.subarray(0, Math.max(0, Math.min(n, buf.length - 1))).toString('utf8'));
    return 0;
  }, koffi.pointer(proto));
  so.func('void *libbpf_set_print(sections_test_print *fn)')(cb);
  const byName = so.func('int libbpf_prog_type_by_name(const char *name, _Out_ int *prog_type, _Out_ int *attach_type)');
  const attachByName = so.func('int libbpf_attach_type_by_name(const char *name, _Out_ int *attach_type)');
  const openMem = so.func('void *bpf_object__open_mem(const uint8_t *buf, size_t size, void *opts)');
  const next = so.func('void *bpf_object__next_program(void *obj, void *prev)');
  const close = so.func('void bpf_object__close(void *obj)');
  const pName = so.func('const char *bpf_program__name(void *prog)');
  const pSection = so.func('const char *bpf_program__section_name(void *prog)');
  const pType = so.func('int bpf_program__type(void *prog)');
  const pAttach = so.func('int bpf_program__expected_attach_type(void *prog)');
  const pAutoload = so.func('bool bpf_program__autoload(void *prog)');
  lib = {
    progType(name) {
      const t = [-1];
      const a = [-1];
      const rc = byName(name, t, a) as number;
      return { rc, type: t[0]!, attach: a[0]! };
    },
    attachType(name) {
      const a = [-1];
      const rc = attachByName(name, a) as number;
      return { rc, attach: a[0]! };
    },
    take() {
      const l = lines;
      lines = [];
      return l;
    },
    openPrograms(bytes) {
      const obj = openMem(bytes, bytes.length, null);
      if (!obj) throw new Error(`bpf_object__open_mem failed: ${this.take().join(' | ')}`);
      const out = [];
      try {
        for (let p = next(obj, null); p; p = next(obj, p)) {
          out.push({ name: pName(p) as string, section: pSection(p) as string, type: pType(p) as number, attach: pAttach(p) as number, autoload: pAutoload(p) as boolean });
        }
      } finally {
        close(obj);
      }
      return out;
    },
  };
});

const ESRCH = 3;
const EINVAL = 22;
const attachOf = (k: ProgramKind) => k.expectedAttachType ?? 0;

/** The names libbpf's debug line after `label` lists ("libbpf: supported section(type) names are: socket ..."). */
function listAfter(lines: string[], label: string): string[] {
  const line = lines.find((l) => l.includes(label));
  expect(line, `libbpf printed '${label}'`).toBeDefined();
  return line!.slice(line!.indexOf(label) + label.length).trim().split(/\s+/);
}

describe('SEC() names against libbpf 1.1', () => {
  it('every row of libbpf 1.1 is a row here, spelled the same; the others are the NEWER names\' rows', () => {
    lib.take();
    expect(lib.progType('corematrix/no_such_section').rc).toBe(-ESRCH);
    const theirs = listAfter(lib.take(), 'supported section(type) names are:');
    expect(theirs.length).toBeGreaterThan(70);
    const ours = SECTION_DEFS.map((d) => d.sec);
    expect(theirs.filter((s) => !ours.includes(s))).toEqual([]);
    const newerRows = ours.filter((s) => !theirs.includes(s));
    expect(new Set(Object.keys(NEWER).map((n) => findSectionDef(n)?.sec))).toEqual(new Set(newerRows));
    console.log(`libbpf 1.1 rows: ${theirs.length}; ours: ${ours.length} (${newerRows.length} newer)`);

    // Its SEC_ATTACHABLE rows (what libbpf_attach_type_by_name answers for) are ours.
    expect(lib.attachType('corematrix/no_such_section').rc).toBe(-EINVAL);
    const attachable = listAfter(lib.take(), 'attachable section(type) names are:');
    const ourAttachable = theirs.filter((s) => classifySection(s.replace(/\+$/, '')).flags.attachable);
    expect(attachable.sort()).toEqual(ourAttachable.sort());
  });

  it('classifies every name libbpf 1.1 knows as it does (type, expected attach type, attachability)', () => {
    let known = 0;
    for (const name of NAMES) {
      const w = lib.progType(name);
      expect(w.rc, `libbpf 1.1 knows '${name}'`).toBe(0);
      const k = classifySection(name);
      expect([k.kind === 'unknown', k.type, attachOf(k)], name).toEqual([false, w.type, w.attach]);
      const a = lib.attachType(name);
      expect([k.flags.attachable, k.flags.attachable ? attachOf(k) : -1], `${name}: attachable`).toEqual([a.rc === 0, a.rc === 0 ? a.attach : -1]);
      known++;
    }
    console.log(`${known} names checked against libbpf_prog_type_by_name and libbpf_attach_type_by_name`);
  });

  it('every row of the table is exercised by a name above', () => {
    const used = new Set([...NAMES, ...Object.keys(NEWER)].map((n) => findSectionDef(n)?.sec));
    expect(SECTION_DEFS.map((d) => d.sec).filter((s) => !used.has(s))).toEqual([]);
  });

  it('names newer than 1.1: libbpf 1.1 rejects them, we give the current libbpf\'s UAPI types', () => {
    for (const [name, [type, attach]] of Object.entries(NEWER)) {
      expect(lib.progType(name).rc, `libbpf 1.1 does not know '${name}'`).toBe(-ESRCH);
      const k = classifySection(name);
      expect([k.type, k.expectedAttachType], name).toEqual([ProgType[type], attach === null ? undefined : AttachType[attach]]);
    }
    console.log(`${Object.keys(NEWER).length} names newer than libbpf 1.1`);
  });

  it('unknown names: libbpf rejects them too, and the reason says which and why', () => {
    for (const name of UNKNOWN) {
      expect(lib.progType(name).rc, `libbpf 1.1 rejects '${name}'`).toBe(-ESRCH);
      const k = classifySection(name);
      expect([k.kind, k.type, k.autoAttach, k.progFlags], name).toEqual(['unknown', ProgType.UNSPEC, false, 0]);
      expect(k.reason).toContain(`unknown section '${name}'`);
    }
    expect(classifySection('xdp/extra').reason).toMatch(/'xdp' takes no '\/target' since libbpf 1.0/);
    expect(classifySection('foo/bar').reason).not.toMatch(/takes no/);
    expect(classifySection('bad\nname').reason).not.toContain('\n');
  });

  it('`?name` is `name` with autoload off; libbpf keeps the name without the `?`', () => {
    const src = `#include <linux/bpf.h>
#define SEC(n) __attribute__((section(n), used))
char _license[] SEC("license") = "GPL";
SEC("?kprobe/do_nanosleep") int opt_kprobe(void *ctx) { return 0; }
SEC("kprobe/do_sys_open+0x10") int kp_offset(void *ctx) { return 1; }
SEC("?xdp.frags") int opt_frags(void *ctx) { return 2; }
SEC("?fentry/do_nanosleep") int opt_fentry(void *ctx) { return 3; }
SEC("cgroup/connect4") int connect4(void *ctx) { return 1; }
SEC("?cgroup_skb/ingress") int opt_ingress(void *ctx) { return 1; }
SEC("foo/bar") int unknown_section(void *ctx) { return 4; }
SEC("?lsm.s/file_open") int opt_lsm(void *ctx) { return 5; }
`;
    const bytes = new Uint8Array(readFileSync(compileBpf(writeTmp('sections-qmark.bpf.c', src))));
    const theirs = lib.openPrograms(bytes);
    const ours = loadObjectSpec(bytes, 'sections-qmark.bpf.o').programs;
    expect(ours.map((p) => p.name)).toEqual(theirs.map((p) => p.name));
    expect(theirs.length).toBe(8);
    for (const t of theirs) {
      const p = ours.find((o) => o.name === t.name)!;
      expect([p.section, p.type, attachOf(p), p.autoload], t.name).toEqual([`${t.autoload ? '' : '?'}${t.section}`, t.type, t.attach, t.autoload]);
    }
    expect(theirs.filter((t) => !t.autoload).length).toBe(5);
    const opt = ours.find((p) => p.name === 'opt_kprobe')!;
    expect([opt.kind, opt.attachTo, opt.section]).toEqual(['kprobe', 'do_nanosleep', '?kprobe/do_nanosleep']);
    expect(ours.find((p) => p.name === 'unknown_section')!.reason).toMatch(/^unknown section 'foo\/bar'/);
    expect(classifySection('?').reason).toMatch(/^unknown section ''/);
    expect(classifySection('?foo').autoload).toBe(false);
  });
});

describe('what the loader and an auto-attacher read from a row', () => {
  const target = (n: string): AttachTarget | undefined => {
    const k = classifySection(n);
    expect(k.targetError, n).toBeUndefined();
    return k.target;
  };
  const error = (n: string) => classifySection(n).targetError;

  it('kprobe targets: function, +offset (as strtol base 0 reads it), retprobe', () => {
    expect(target('kprobe/do_sys_open+0x10')).toEqual({ kind: 'kprobe', func: 'do_sys_open', offset: 16, retprobe: false });
    expect(classifySection('kprobe/do_sys_open+0x10').attachTo).toBe('do_sys_open+0x10');
    expect(target('kprobe/do_sys_open+010')).toEqual({ kind: 'kprobe', func: 'do_sys_open', offset: 8, retprobe: false });
    expect(target('kprobe/do_sys_open+12')).toEqual({ kind: 'kprobe', func: 'do_sys_open', offset: 12, retprobe: false });
    expect(target('kprobe/__x64_sys_openat.cold')).toEqual({ kind: 'kprobe', func: '__x64_sys_openat.cold', offset: 0, retprobe: false });
    expect(target('kretprobe/do_sys_open')).toEqual({ kind: 'kprobe', func: 'do_sys_open', offset: 0, retprobe: true });
    expect(error('kretprobe/do_sys_open+4')).toMatch(/kretprobe takes no offset/);
    expect(error('kprobe/do_sys_open+-4')).toMatch(/not a non-negative offset/);
    expect(error('kprobe/do_sys_open+0x')).toMatch(/not a non-negative offset/);
    expect(error('kprobe/do-sys-open')).toMatch(/not a kernel function name/);
    expect(error('kprobe/')).toMatch(/^section 'kprobe\/':/);
    // Bare names classify but are left to the user to attach.
    for (const bare of ['kprobe', 'kretprobe', 'ksyscall', 'uprobe', 'usdt', 'tp', 'raw_tp', 'kprobe.multi', 'kretprobe.multi', 'kprobe.session', 'uprobe.multi', 'fentry.multi']) {
      const k = classifySection(bare);
      expect([k.kind, k.autoAttach, k.target, k.targetError], bare).toEqual([bare, false, undefined, undefined]);
      expect(k.attachFn, bare).toBeDefined();
    }
  });

  it('kprobe.multi without a target: libbpf knows the type, nothing to auto-attach', () => {
    const k = classifySection('kprobe.multi');
    expect([k.type, k.expectedAttachType, k.autoAttach, k.attachTo]).toEqual([ProgType.KPROBE, AttachType.TRACE_KPROBE_MULTI, false, undefined]);
    expect(target('kretprobe.multi/vfs_*')).toEqual({ kind: 'kprobe_multi', pattern: 'vfs_*', retprobe: true, session: false });
    expect(target('kprobe.session/tcp_?')).toEqual({ kind: 'kprobe_multi', pattern: 'tcp_?', retprobe: false, session: true });
    expect(error('kprobe.multi/a b')).toMatch(/not a kernel function glob/);
  });

  it('user-space targets: uprobe, uprobe.multi, usdt', () => {
    expect(target('uprobe//usr/bin/bash:readline')).toEqual({ kind: 'uprobe', binary: '/usr/bin/bash', func: 'readline', offset: 0, retprobe: false });
    expect(target('uprobe.s//usr/bin/bash:readline+0x8')).toEqual({ kind: 'uprobe', binary: '/usr/bin/bash', func: 'readline', offset: 8, retprobe: false });
    expect(target('uprobe/libc.so.6:odd+name')).toEqual({ kind: 'uprobe', binary: 'libc.so.6', func: 'odd+name', offset: 0, retprobe: false });
    expect(target('uretprobe.s/libc.so.6:malloc')).toMatchObject({ retprobe: true });
    expect(error('uretprobe/libc.so.6:malloc+4')).toMatch(/uretprobe takes no offset/);
    expect(error('uprobe//usr/bin/bash')).toMatch(/not binary:function/);
    expect(target('uprobe.multi//usr/bin/bash:read*')).toEqual({ kind: 'uprobe_multi', binary: '/usr/bin/bash', pattern: 'read*', retprobe: false, session: false });
    expect(target('uretprobe.multi.s/libc.so.6:m*')).toMatchObject({ retprobe: true, session: false });
    expect(target('uprobe.session.s/libc.so.6:m*')).toMatchObject({ retprobe: false, session: true });
    expect(target('usdt//usr/bin/node:node:gc__start')).toEqual({ kind: 'usdt', binary: '/usr/bin/node', provider: 'node', name: 'gc__start' });
    expect(target('usdt.s/libc.so.6:libc:setjmp')).toEqual({ kind: 'usdt', binary: 'libc.so.6', provider: 'libc', name: 'setjmp' });
    expect(error('usdt//usr/bin/node:gc__start')).toMatch(/not binary:provider:name/);
    expect(classifySection('usdt').flags.usdt).toBe(true);
    expect(classifySection('uprobe').flags.usdt).toBe(false);
  });

  it('tracepoints and syscalls', () => {
    expect(target('tp/sched/sched_switch')).toEqual({ kind: 'tracepoint', category: 'sched', name: 'sched_switch' });
    expect(target('tracepoint.s/syscalls/sys_enter_openat')).toEqual({ kind: 'tracepoint', category: 'syscalls', name: 'sys_enter_openat' });
    expect(error('tp/sched')).toMatch(/not category\/name/);
    expect(error('tp/')).toMatch(/not category\/name/);
    expect(target('raw_tp.w/bpf_test_finish')).toEqual({ kind: 'raw_tracepoint', name: 'bpf_test_finish' });
    expect(error('raw_tp/')).toMatch(/no tracepoint name/);
    expect(target('kretsyscall/openat')).toEqual({ kind: 'ksyscall', syscall: 'openat', retprobe: true });
  });

  it('BTF-attached targets: the BTF name and kind the load looks up; a missing target is an error at classification', () => {
    expect(target('tp_btf/sched_switch')).toEqual({ kind: 'btf', name: 'sched_switch', btfName: 'btf_trace_sched_switch', btfKind: 'typedef' });
    expect(target('lsm.s/file_open')).toEqual({ kind: 'btf', name: 'file_open', btfName: 'bpf_lsm_file_open', btfKind: 'func' });
    expect(target('lsm_cgroup/socket_bind')).toEqual({ kind: 'btf', name: 'socket_bind', btfName: 'bpf_lsm_socket_bind', btfKind: 'func' });
    expect(target('iter/task')).toEqual({ kind: 'btf', name: 'task', btfName: 'bpf_iter_task', btfKind: 'func' });
    expect(target('fentry/bpf_testmod:bpf_testmod_test_read')).toEqual({ kind: 'btf', name: 'bpf_testmod_test_read', module: 'bpf_testmod', btfName: 'bpf_testmod_test_read', btfKind: 'func' });
    expect(target('freplace/a:b')).toEqual({ kind: 'btf', name: 'a:b', btfName: 'a:b', btfKind: 'func' });
    expect(target('fentry.multi/bpf_testmod:bpf_testmod_fentry_test*')).toEqual({ kind: 'tracing_multi', module: 'bpf_testmod', pattern: 'bpf_testmod_fentry_test*' });
    const bare = classifySection('fentry');
    expect([bare.kind, bare.type, bare.expectedAttachType, bare.flags.attachBtf, bare.target]).toEqual(['fentry', ProgType.TRACING, AttachType.TRACE_FENTRY, true, undefined]);
    expect(bare.targetError).toMatch(/no attach target/);
    expect(classifySection('lsm_cgroup/socket_bind').autoAttach).toBe(false); // needs a cgroup
    expect(classifySection('fentry.multi/do_*').flags.attachBtf).toBe(false);
  });

  it('load flags: sleepable and XDP frags become prog_flags; the row flags follow libbpf', () => {
    const flags = (n: string) => classifySection(n).progFlags;
    expect(flags('lsm.s/file_open')).toBe(BPF_F_SLEEPABLE);
    expect(flags('syscall')).toBe(BPF_F_SLEEPABLE);
    expect(flags('struct_ops.s/x')).toBe(BPF_F_SLEEPABLE);
    expect(flags('xdp.frags')).toBe(BPF_F_XDP_HAS_FRAGS);
    expect(flags('xdp.frags/devmap')).toBe(BPF_F_XDP_HAS_FRAGS);
    expect(flags('xdp')).toBe(0);
    expect(flags('fentry/do_nanosleep')).toBe(0);
    expect(classifySection('uprobe.s/libc.so.6:malloc').sleepable).toBe(true);
    expect(classifySection('xdp').flags).toEqual({ expectedAttachOptional: true, attachable: true, attachBtf: false, sleepable: false, xdpFrags: false, usdt: false });
    // Rows with no handler are never auto-attached; BTF rows always are (their load needs the target anyway).
    for (const n of ['xdp', 'tc/ingress', 'cgroup/connect4', 'sk_msg', 'struct_ops/x', 'socket', 'netfilter']) expect(classifySection(n).autoAttach, n).toBe(false);
    for (const n of ['fentry/x', 'lsm/x', 'iter/task', 'tp/a/b', 'kprobe/x']) expect(classifySection(n).autoAttach, n).toBe(true);
  });

  it('no name matches two rows, so the order of the table never matters', () => {
    const names = SECTION_DEFS.map((d) => d.sec.replace(/\+$/, ''));
    for (const n of [...names, ...names.map((x) => `${x}/t`)]) {
      const matching = SECTION_DEFS.filter((d) => (d.sec.endsWith('+') ? n === d.sec.slice(0, -1) || n.startsWith(d.sec.slice(0, -1) + '/') : n === d.sec));
      expect(matching.length, n).toBeLessThanOrEqual(1);
      expect(findSectionDef(n), n).toBe(matching[0]);
    }
    expect(new Set(SECTION_DEFS.map((d) => d.sec)).size).toBe(SECTION_DEFS.length);
  });
});
