import { readFileSync } from 'node:fs';
// Checks every attribute offset and constant in harness/runtime against the kernel UAPI headers
// by compiling a C program with offsetof()/sizeof() (needs a C compiler and linux-libc-dev).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ALL_LAYOUTS, BpfCmd } from '../../harness/runtime/attr.js';
import { LINK_INFO, PROG_ATTACH, PROG_QUERY } from '../../harness/runtime/attach-net.js';
import { AttachType, Helper, MapType, Perf, ProgType } from '../../harness/runtime/consts.js';
import { BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS } from '../../harness/core/uapi.js';
import { compileAndRunC as compileAndRun } from '../helpers/tools.js';

describe('attribute layouts match linux/bpf.h and linux/perf_event.h', () => {
  it('every field offset and size', () => {
    const lines: string[] = [];
    const expected: string[] = [];
    // The layouts defined beside their only user (attach-net.ts) are checked the same way.
    for (const l of [...ALL_LAYOUTS, PROG_ATTACH, PROG_QUERY, LINK_INFO]) {
      const [ctype, prefix] = l.c;
      for (const [name, [off, size]] of Object.entries(l.fields)) {
        const cName = l.cNames && name in l.cNames ? (l.cNames as Record<string, string | null>)[name] : name;
        if (cName === null) continue;
        const member = `${prefix}${cName}`;
        lines.push(`  printf("%s %s %zu %zu\\n", "${l.name}", "${name}", offsetof(${ctype}, ${member}), sizeof(((${ctype} *)0)->${member}));`);
        expected.push(`${l.name} ${name} ${off} ${size}`);
      }
    }
    const out = compileAndRun(`#include <stdio.h>\n#include <stddef.h>\n#include <linux/bpf.h>\n#include <linux/perf_event.h>\nint main(void) {\n${lines.join('\n')}\n  return 0;\n}\n`);
    expect(out.trim().split('\n')).toEqual(expected);
  });

  it('perf_event_attr bitfields start right after read_format', () => {
    const out = compileAndRun(`#include <stdio.h>\n#include <stddef.h>\n#include <linux/perf_event.h>\nint main(void){ printf("%zu %d\\n", offsetof(struct perf_event_attr, read_format) + 8, PERF_ATTR_SIZE_VER5); return 0; }\n`);
    expect(out.trim()).toBe('40 112');
  });

  it('enum and ioctl constants', () => {
    const checks: [string, number][] = [
      ...Object.entries(BpfCmd).map(([k, v]) => [`BPF_${k}`, v] as [string, number]),
      ...Object.entries(MapType).map(([k, v]) => [`BPF_MAP_TYPE_${k}`, v] as [string, number]),
      ...Object.entries(ProgType).map(([k, v]) => [`BPF_PROG_TYPE_${k}`, v] as [string, number]),
      ...Object.entries(AttachType).map(([k, v]) => [`BPF_${k}`, v] as [string, number]),
      ...Object.entries(Helper).map(([k, v]) => [`BPF_FUNC_${k}`, v] as [string, number]),
      ['PERF_TYPE_SOFTWARE', Perf.TYPE_SOFTWARE],
      ['PERF_TYPE_TRACEPOINT', Perf.TYPE_TRACEPOINT],
      ['PERF_COUNT_SW_BPF_OUTPUT', Perf.COUNT_SW_BPF_OUTPUT],
      ['PERF_SAMPLE_RAW', Perf.SAMPLE_RAW],
      ['PERF_FLAG_FD_CLOEXEC', Perf.FLAG_FD_CLOEXEC],
      ['PERF_RECORD_LOST', Perf.RECORD_LOST],
      ['PERF_RECORD_SAMPLE', Perf.RECORD_SAMPLE],
      ['PERF_EVENT_IOC_ENABLE', Perf.IOC_ENABLE],
      ['PERF_EVENT_IOC_DISABLE', Perf.IOC_DISABLE],
      ['PERF_EVENT_IOC_SET_BPF', Perf.IOC_SET_BPF],
      ['BPF_F_MMAPABLE', 1024],
      ['BPF_F_SLEEPABLE', BPF_F_SLEEPABLE],
      ['BPF_F_XDP_HAS_FRAGS', BPF_F_XDP_HAS_FRAGS],
      ['BPF_RINGBUF_BUSY_BIT', 2 ** 31],
      ['BPF_RINGBUF_DISCARD_BIT', 2 ** 30],
      ['BPF_RINGBUF_HDR_SZ', 8],
    ];
    // The shared enum tables also name values newer than this machine's 6.1 UAPI header (from a
    // current include/uapi/linux/bpf.h); those are listed, not silently dropped, and must follow the
    // header's last value of their enum in order, without gaps (enums are numbered by position).
    const header = readFileSync('/usr/include/linux/bpf.h', 'utf8');
    const enums = [['BPF_PROG_TYPE_', ProgType, 'bpf_prog_type'], ['BPF_MAP_TYPE_', MapType, 'bpf_map_type'], ['BPF_', AttachType, 'bpf_attach_type']] as const;
    const newerOf = (prefix: string, table: Record<string, number>) =>
      Object.entries(table).map(([k, v]) => [`${prefix}${k}`, v] as [string, number]).filter(([c]) => !new RegExp(`\\b${c}\\b`).test(header));
    expect(enums.map(([p, t]) => newerOf(p, t).map(([c]) => c))).toEqual([
      ['BPF_PROG_TYPE_NETFILTER'],
      ['BPF_MAP_TYPE_CGRP_STORAGE'],
      ['BPF_STRUCT_OPS', 'BPF_NETFILTER', 'BPF_TCX_INGRESS', 'BPF_TCX_EGRESS', 'BPF_TRACE_UPROBE_MULTI', 'BPF_CGROUP_UNIX_CONNECT',
        'BPF_CGROUP_UNIX_SENDMSG', 'BPF_CGROUP_UNIX_RECVMSG', 'BPF_CGROUP_UNIX_GETPEERNAME', 'BPF_CGROUP_UNIX_GETSOCKNAME',
        'BPF_NETKIT_PRIMARY', 'BPF_NETKIT_PEER', 'BPF_TRACE_KPROBE_SESSION', 'BPF_TRACE_UPROBE_SESSION', 'BPF_TRACE_FSESSION',
        'BPF_TRACE_FENTRY_MULTI', 'BPF_TRACE_FEXIT_MULTI', 'BPF_TRACE_FSESSION_MULTI'],
    ]);
    // The header's enumerators (none has an explicit value), so the next value is their count.
    const counts = enums.map(([, , e]) => {
      const body = new RegExp(`enum ${e} \\{([^}]*)\\}`).exec(header)![1]!.replace(/\/\*[\s\S]*?\*\//g, '');
      expect(body, e).not.toContain('=');
      return body.split(',').map((x) => x.trim()).filter((x) => x && !x.startsWith('__MAX')).length;
    });
    enums.forEach(([p, t], i) => expect(newerOf(p, t).map(([, v]) => v), p).toEqual(newerOf(p, t).map((_, j) => counts[i]! + j)));
    const newer = enums.flatMap(([p, t]) => newerOf(p, t).map(([c]) => c));
    for (let i = checks.length - 1; i >= 0; i--) if (newer.includes(checks[i]![0])) checks.splice(i, 1);
    const body = checks.map(([c]) => `  printf("%s %llu\\n", "${c}", (unsigned long long)(${c}));`).join('\n');
    const out = compileAndRun(`#include <stdio.h>\n#include <linux/bpf.h>\n#include <linux/perf_event.h>\n#include <linux/ioctl.h>\nint main(void) {\n${body}\n  return 0;\n}\n`);
    expect(out.trim().split('\n')).toEqual(checks.map(([c, v]) => `${c} ${v}`));
  });
});
