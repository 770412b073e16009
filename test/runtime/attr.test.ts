import { readFileSync } from 'node:fs';
// Checks every attribute offset and constant in harness/runtime against the kernel UAPI headers
// by compiling a C program with offsetof()/sizeof() (needs a C compiler and linux-libc-dev).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ALL_LAYOUTS, BpfCmd } from '../../harness/runtime/attr.js';
import { AttachType, Helper, MapType, Perf, ProgType } from '../../harness/runtime/consts.js';
import { compileAndRunC as compileAndRun } from '../helpers/tools.js';

describe('attribute layouts match linux/bpf.h and linux/perf_event.h', () => {
  it('every field offset and size', () => {
    const lines: string[] = [];
    const expected: string[] = [];
    for (const l of ALL_LAYOUTS) {
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
      ['BPF_RINGBUF_BUSY_BIT', 2 ** 31],
      ['BPF_RINGBUF_DISCARD_BIT', 2 ** 30],
      ['BPF_RINGBUF_HDR_SZ', 8],
    ];
    // The shared enum tables also name values newer than this machine's 6.1 UAPI header; those
    // are listed (not silently dropped) and must come after every value the header has.
    const header = readFileSync('/usr/include/linux/bpf.h', 'utf8');
    const newer = checks.filter(([c]) => /^BPF_(MAP_TYPE|PROG_TYPE)_/.test(c) && !new RegExp(`\\b${c}\\b`).test(header));
    expect(newer.map(([c]) => c)).toEqual(['BPF_PROG_TYPE_NETFILTER', 'BPF_MAP_TYPE_CGRP_STORAGE'].filter((c) => checks.some(([k]) => k === c)).sort((a, b) => checks.findIndex(([k]) => k === a) - checks.findIndex(([k]) => k === b)));
    for (let i = checks.length - 1; i >= 0; i--) if (newer.includes(checks[i]!)) checks.splice(i, 1);
    const body = checks.map(([c]) => `  printf("%s %llu\\n", "${c}", (unsigned long long)(${c}));`).join('\n');
    const out = compileAndRun(`#include <stdio.h>\n#include <linux/bpf.h>\n#include <linux/perf_event.h>\n#include <linux/ioctl.h>\nint main(void) {\n${body}\n  return 0;\n}\n`);
    expect(out.trim().split('\n')).toEqual(checks.map(([c, v]) => `${c} ${v}`));
  });
});
