// The hand-written struct bpf_object_open_opts layout against libbpf's own headers, by compiling a
// C program with offsetof()/sizeof(): Debian's (libbpf-dev, /usr/include/bpf) and the current
// libbpf's (built from the newest linux-source by harness/reference/build.ts); the print level
// values; and every function libbpf.ts binds is declared by both headers.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { currentLibbpf, type CurrentLibbpf } from '../../harness/reference/build.js';
import { LIBBPF_FUNCTIONS, OPEN_OPTS, PrintLevel } from '../../harness/reference/libbpf.js';
import { NETFILTER_OPTS, TC_HOOK, TC_OPTS } from '../../harness/reference/libbpf-attach.js';

/** Compiles and runs a small C program with `-I include` first on the header search path. */
function compileAndRun(src: string, include?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'cm-libbpf-layout-'));
  try {
    writeFileSync(join(dir, 'check.c'), src);
    execFileSync('cc', [...(include ? ['-I', include] : []), '-o', join(dir, 'check'), join(dir, 'check.c')], { stdio: 'pipe' });
    return execFileSync(join(dir, 'check'), { encoding: 'utf8' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What the header says of each field OPEN_OPTS names, the struct's size, the print levels, and the bound functions. */
function headerFacts(include?: string): string[] {
  const fields = Object.keys(OPEN_OPTS.fields).map(
    (f) => `  printf("${f} %zu %zu\\n", offsetof(struct bpf_object_open_opts, ${f}), sizeof(((struct bpf_object_open_opts *)0)->${f}));`,
  );
  // sizeof(&f) fails to compile when the header does not declare f (and needs no linking).
  const names = Object.values(LIBBPF_FUNCTIONS).map((p) => /(\w+)\(/.exec(p)![1]!);
  const fns = `  size_t fns[] = { ${names.map((n) => `sizeof(&${n})`).join(', ')} };\n  printf("functions %zu\\n", sizeof(fns) / sizeof(fns[0]));`;
  const out = compileAndRun(
    `#include <stdio.h>\n#include <stddef.h>\n#include <bpf/libbpf.h>\nint main(void) {\n${fields.join('\n')}\n  printf("size %zu\\n", sizeof(struct bpf_object_open_opts));\n  printf("levels %d %d %d\\n", LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG);\n${fns}\n  return 0;\n}\n`,
    include,
  );
  return out.trim().split('\n');
}

/** The attach option structs libbpf-attach.ts writes: each field's offset and size, and the struct's size, per the header. */
function attachStructFacts(structs: [string, { size: number; fields: Record<string, readonly [number, number]> }][], include?: string): string[] {
  const lines = structs.flatMap(([name, l]) => [
    ...Object.keys(l.fields).map((f) => `  printf("${name}.${f} %zu %zu\\n", offsetof(struct ${name}, ${f}), sizeof(((struct ${name} *)0)->${f}));`),
    `  printf("${name} size %zu\\n", sizeof(struct ${name}));`,
  ]);
  return compileAndRun(`#include <stdio.h>\n#include <stddef.h>\n#include <bpf/libbpf.h>\nint main(void) {\n${lines.join('\n')}\n  return 0;\n}\n`, include).trim().split('\n');
}
const expectedStruct = (name: string, l: { size: number; fields: Record<string, readonly [number, number]> }) => [...Object.entries(l.fields).map(([f, [o, z]]) => `${name}.${f} ${o} ${z}`), `${name} size ${l.size}`];

const expectedFields = Object.entries(OPEN_OPTS.fields).map(([f, [off, size]]) => `${f} ${off} ${size}`);
const expectedTail = [`levels ${PrintLevel.WARN} ${PrintLevel.INFO} ${PrintLevel.DEBUG}`, `functions ${Object.keys(LIBBPF_FUNCTIONS).length}`];

describe('libbpf ABI as used by harness/reference', () => {
  it('struct bpf_object_open_opts offsets, sizes and total size match <bpf/libbpf.h>', () => {
    expect(headerFacts()).toEqual([...expectedFields, `size ${OPEN_OPTS.size}`, ...expectedTail]);
  });

  it('the tc hook and tc options libbpf-attach writes match <bpf/libbpf.h> (libbpf 1.1)', () => {
    expect(attachStructFacts([['bpf_tc_hook', TC_HOOK], ['bpf_tc_opts', TC_OPTS]])).toEqual([...expectedStruct('bpf_tc_hook', TC_HOOK), ...expectedStruct('bpf_tc_opts', TC_OPTS)]);
  });

  describe('the current libbpf (built from the newest linux-source)', () => {
    let cur: CurrentLibbpf;
    beforeAll(async () => {
      cur = await currentLibbpf((l) => console.log(`[build] ${l}`));
    }, 20 * 60_000);

    it('has the same tc structs, and the netfilter options as libbpf-attach writes them', () => {
      const structs: [string, typeof NETFILTER_OPTS | typeof TC_HOOK | typeof TC_OPTS][] = [['bpf_tc_hook', TC_HOOK], ['bpf_tc_opts', TC_OPTS], ['bpf_netfilter_opts', NETFILTER_OPTS]];
      // Same fields at the same offsets; a struct may have grown (we pass `sz`, libbpf reads no further).
      const facts = attachStructFacts(structs, cur.include);
      expect(facts.filter((l) => !l.includes(' size '))).toEqual(structs.flatMap(([n, l]) => expectedStruct(n, l).slice(0, -1)));
      for (const [n, l] of structs) expect(Number(/ size (\d+)$/.exec(facts.find((x) => x.startsWith(`${n} size `))!)![1])).toBeGreaterThanOrEqual(l.size);
    });

    it('keeps every field OPEN_OPTS writes at the same offset and size; its struct is at least as large (sz says how much we pass)', () => {
      const facts = headerFacts(cur.include);
      const size = Number(/^size (\d+)$/.exec(facts.find((l) => l.startsWith('size '))!)![1]);
      expect(facts.filter((l) => !l.startsWith('size '))).toEqual([...expectedFields, ...expectedTail]);
      expect(size).toBeGreaterThanOrEqual(OPEN_OPTS.size);
      console.log(`[measure] ${cur.source}: struct bpf_object_open_opts is ${size} bytes (libbpf 1.1: ${OPEN_OPTS.size})`);
    });

    it('the header compiled against is the built one, not /usr/include/bpf', () => {
      const v = compileAndRun('#include <stdio.h>\n#include <bpf/libbpf_version.h>\nint main(void) { printf("%d.%d\\n", LIBBPF_MAJOR_VERSION, LIBBPF_MINOR_VERSION); return 0; }\n', cur.include).trim();
      expect(v).toBe(`${cur.manifest.api.major}.${cur.manifest.api.minor}`);
      expect(v).not.toBe(compileAndRun('#include <stdio.h>\n#include <bpf/libbpf_version.h>\nint main(void) { printf("%d.%d\\n", LIBBPF_MAJOR_VERSION, LIBBPF_MINOR_VERSION); return 0; }\n').trim());
    });
  });
});
