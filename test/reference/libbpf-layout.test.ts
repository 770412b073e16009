// The hand-written struct bpf_object_open_opts layout against libbpf's own header (libbpf-dev),
// by compiling a C program with offsetof()/sizeof(); and the print level values.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OPEN_OPTS, PrintLevel } from '../../harness/reference/libbpf.js';
import { compileAndRunC as compileAndRun } from '../helpers/tools.js';

describe('libbpf ABI as used by harness/reference', () => {
  it('struct bpf_object_open_opts offsets, sizes and total size match <bpf/libbpf.h>', () => {
    const lines = Object.keys(OPEN_OPTS.fields).map(
      (f) => `  printf("${f} %zu %zu\\n", offsetof(struct bpf_object_open_opts, ${f}), sizeof(((struct bpf_object_open_opts *)0)->${f}));`,
    );
    const out = compileAndRun(
      `#include <stdio.h>\n#include <stddef.h>\n#include <bpf/libbpf.h>\nint main(void) {\n${lines.join('\n')}\n  printf("size %zu\\n", sizeof(struct bpf_object_open_opts));\n  printf("levels %d %d %d\\n", LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG);\n  return 0;\n}\n`,
    );
    const expected = [
      ...Object.entries(OPEN_OPTS.fields).map(([f, [off, size]]) => `${f} ${off} ${size}`),
      `size ${OPEN_OPTS.size}`,
      `levels ${PrintLevel.WARN} ${PrintLevel.INFO} ${PrintLevel.DEBUG}`,
    ];
    expect(out.trim().split('\n')).toEqual(expected);
  });
});
