// Object configs (harness/loader/object-config.ts): the YAML schema and its errors (exact lines),
// conditions against facts built from real Debian kernels' BTF and config (bpftool's dump of the
// same BTF and the config text are the witnesses), and applying a config to a clang-built object.
// The bytes a config writes into .rodata/.data/.bss, and the ring buffer size it sets, are
// compared with what libbpf itself produces for the same settings through a bpftool-generated
// skeleton (open → set → bpf_map__initial_value), compiled with the C compiler.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTargetBtf } from '../../harness/core/relocate.js';
import { linkProgram, loadObjectSpec, type ObjectSpec } from '../../harness/core/object/index.js';
import { KernelStore } from '../../harness/kernels/store.js';
import {
  applyObjectConfig, configPathFor, evaluate, kernelFacts, parseObjectConfig, readObjectConfig, ringbufSize,
  type Condition, type ObjectConfigFacts,
} from '../../harness/loader/object-config.js';
import { parseKernelConfig } from '../../harness/runtime/facts.js';
import { compileBpf } from '../helpers/tools.js';

const FIXTURES = resolve('test/loader/fixtures');
const HEADER = join(FIXTURES, 'object_config.h');
// compileBpf caches by the .c file's text and the flags: the header's hash goes into the flags.
const headerHash = createHash('sha256').update(readFileSync(HEADER)).digest('hex').slice(0, 12);
const objectPath = compileBpf(join(FIXTURES, 'object_config.bpf.c'), [`-DOBJECT_CONFIG_H_SHA=${headerHash}`]);
const openObject = (): ObjectSpec => loadObjectSpec(new Uint8Array(readFileSync(objectPath)), 'object_config.bpf.o');

/** Facts for pure tests: everything absent unless listed; `hasKsym` absent means "must not be asked". */
function fakeFacts(o: { funcs?: string[]; ksyms?: string[]; config?: Record<string, string | number>; version?: [number, number, number] } = {}): ObjectConfigFacts {
  return {
    hasBtfFunction: (n) => (o.funcs ?? []).includes(n),
    hasKsym: (n) => {
      if (!o.ksyms) throw new Error(`kallsyms asked for ${n}`);
      return o.ksyms.includes(n);
    },
    kconfig: (n) => o.config?.[n],
    kernelVersion: o.version ?? [6, 1, 176],
  };
}

const cond = (yamlCond: string): Condition => parseObjectConfig(`programs:\n  p:\n    autoload: ${yamlCond}\n`, 'c.yaml').programs.p!.autoload!;

describe('parsing', () => {
  it('reads every key into plain data, with the line of each key', () => {
    const text = [
      'programs:',
      '  on_open_fentry:',
      '    autoload: { btf-function: do_sys_openat2 }',
      '  on_open_kprobe:',
      '    autoload: { not: { btf-function: do_sys_openat2 } }',
      '  on_open_bare:',
      '    attach:',
      '      - { target: __x64_sys_futex_waitv, if: { kernel: ">= 5.16" } }',
      '      - do_sys_openat2',
      '  pass:',
      '    autoload: false',
      'maps:',
      '  events: { max_entries: 8192 }',
      'variables:',
      '  targ_pid: 0',
      '  filter_comm: bash',
      '  cfg:',
      '    max: 5',
      '    tag: "x"',
      '  mask: "0xffffffffffffffff"',
      '  targ_failed: true',
    ].join('\n');
    const c = parseObjectConfig(text, 'opensnoop.yaml');
    expect(c.programs).toEqual({
      on_open_fentry: { autoload: { kind: 'btf-function', name: 'do_sys_openat2' } },
      on_open_kprobe: { autoload: { kind: 'not', of: { kind: 'btf-function', name: 'do_sys_openat2' } } },
      on_open_bare: {
        attach: [
          { target: '__x64_sys_futex_waitv', if: { kind: 'kernel', range: '>= 5.16', clauses: [{ op: '>=', version: [5, 16] }] } },
          { target: 'do_sys_openat2' },
        ],
      },
      pass: { autoload: { kind: 'const', value: false } },
    });
    expect(c.maps).toEqual({ events: { maxEntries: 8192 } });
    expect(c.variables).toEqual({ targ_pid: 0, filter_comm: 'bash', 'cfg.max': 5, 'cfg.tag': 'x', mask: '0xffffffffffffffff', targ_failed: true });
    expect(c.lines).toMatchObject({
      'programs.on_open_fentry.autoload': 3, 'programs.on_open_bare.attach': 7, 'maps.events.max_entries': 13,
      'variables.targ_pid': 15, 'variables.cfg.max': 18, 'variables.cfg.tag': 19, 'variables.targ_failed': 21,
    });
    // Plain data: it survives JSON, as it must to cross from host to guest.
    expect(JSON.parse(JSON.stringify(c))).toEqual(c);
  });

  it('takes an empty file as an empty config, and names the default config of an object', () => {
    expect(parseObjectConfig('', 'e.yaml')).toEqual({ file: 'e.yaml', programs: {}, maps: {}, variables: {}, lines: {} });
    expect(parseObjectConfig('# nothing\n', 'e.yaml').programs).toEqual({});
    expect(configPathFor('/x/opensnoop.bpf.o')).toBe('/x/opensnoop.bpf.yaml');
    expect(configPathFor('tool.o')).toBe('tool.yaml');
  });

  // Each case: the YAML and the one-line error, with the line the key is on.
  const cases: [string, string[], string][] = [
    ['a string where a condition goes', ['programs:', '  handle_exec:', '    autoload: yes'],
      'x.yaml:3: programs.handle_exec.autoload: expected a boolean or a condition (a mapping with one of btf-function, kallsyms, kconfig, kernel, all, any, not), not string "yes"'],
    ['an unknown top-level key', ['maps: {}', 'program:', '  a: {}'],
      "x.yaml:2: program: unknown key 'program' in an object config (allowed: programs, maps, variables, workload)"],
    ['an unknown program key', ['programs:', '  a:', '    autoload: true', '    autolaod: false'],
      "x.yaml:4: programs.a.autolaod: unknown key 'autolaod' in program 'a' (allowed: autoload, attach, target-program)"],
    ['a program without settings', ['programs:', '  a:', '  b: { autoload: true }'],
      'x.yaml:2: programs.a: expected a mapping with autoload, attach, target-program, not null'],
    ['an unknown condition in a flow list', ['programs:', '  a:', '    autoload: true', '  b:', '    autoload: { all: [ { btf-function: x }, { btf-func: y } ] }'],
      "x.yaml:5: programs.b.autoload.all[1].btf-func: unknown condition 'btf-func' (allowed: btf-function, kallsyms, kconfig, kernel, all, any, not)"],
    ['a bad option in a block list', ['programs:', '  a:', '    autoload:', '      any:', '        - btf-function: x', '        - kconfig: HZ'],
      'x.yaml:6: programs.a.autoload.any[1].kconfig: expected a CONFIG_<NAME> option, not string "HZ"'],
    ['two tests in one condition', ['programs:', '  a:', '    autoload:', '      btf-function: x', '      kallsyms: x'],
      "x.yaml:5: programs.a.autoload.kallsyms: a condition tests one thing: combine 'btf-function' and 'kallsyms' with all: [...] or any: [...]"],
    ['an unknown key beside kconfig', ['programs:', '  a:', '    autoload: { kconfig: CONFIG_X, equal: y }'],
      "x.yaml:3: programs.a.autoload.equal: unknown key 'equal' in a 'kconfig' condition (allowed: kconfig, equals)"],
    ['an unquoted version', ['programs:', '  a:', '    autoload:', '      not:', '        kernel: 5.10'],
      'x.yaml:5: programs.a.autoload.not.kernel: quote the version: unquoted, YAML reads it as the number 5.1 (and 5.10 as 5.1)'],
    ['a version that is no comparison', ['programs:', '  a:', "    autoload: { kernel: '>= five' }"],
      "x.yaml:3: programs.a.autoload.kernel: expected version comparisons such as '>= 5.11' or '>= 5.11, < 6.1' (quoted), not string \">= five\""],
    ['an empty all', ['programs:', '  a:', '    autoload: { all: [] }'],
      'x.yaml:3: programs.a.autoload.all: expected a non-empty list of conditions, not a list'],
    ['an attach candidate without a condition', ['programs:', '  a:', '    attach:', '      - x', '      - { target: y }'],
      "x.yaml:5: programs.a.attach[1]: a candidate mapping needs 'if' (write an unconditional target as a plain string)"],
    ['an attach target with a space', ['programs:', '  a:', '    attach: "do sys"'],
      'x.yaml:3: programs.a.attach: expected an attach target (a function, category/name for a tracepoint, ...) without spaces, not string "do sys"'],
    ['a negative max_entries', ['maps:', '  events:', '    max_entries: -1'],
      'x.yaml:3: maps.events.max_entries: expected a positive integer below 2^32, not number -1'],
    ['an unknown map key', ['maps:', '  events: { max_entries: 4096, size: 2 }'],
      "x.yaml:2: maps.events.size: unknown key 'size' in map 'events' (allowed: max_entries)"],
    ['a fraction', ['variables:', '  a: 1', '  ratio: 1.5'],
      'x.yaml:3: variables.ratio: 1.5 is not an integer (floating-point variables are not supported)'],
    ['an integer past 2^53', ['variables:', '  big: 18446744073709551615'],
      'x.yaml:2: variables.big: an integer beyond 2^53 loses digits as a YAML number: quote it (e.g. "18446744073709551615" or "0xffffffffffffffff")'],
    ['a list value', ['variables:', '  cfg:', '    max: 1', '    pids: [1, 2]'],
      'x.yaml:4: variables.cfg.pids: expected an integer, a boolean, a string or a mapping of struct members, not a list'],
    ['a null value', ['variables:', '  targ_pid:'],
      'x.yaml:2: variables.targ_pid: expected an integer, a boolean, a string or a mapping of struct members, not null'],
  ];
  it.each(cases)('rejects %s, naming the file, the line and the key', (_what, lines, message) => {
    expect(() => parseObjectConfig(lines.join('\n'), 'x.yaml')).toThrow(message);
  });

  it('reports YAML syntax errors and duplicate keys at their line', () => {
    // The unclosed { is on line 2; js-yaml notices it on line 3.
    expect(() => parseObjectConfig('programs:\n  a: { autoload: true\nmaps: {}\n', 'x.yaml')).toThrow(/^x\.yaml:2: YAML error: a ',' is missing after this entry, or the '\{' of line 2 is not closed \(js-yaml: missed comma between flow collection entries, at line 3\)$/);
    expect(() => parseObjectConfig('maps:\n  a: { max_entries: 1 }\n  a: { max_entries: 2 }\n', 'x.yaml')).toThrow('x.yaml:3: YAML error: duplicated mapping key');
    expect(() => parseObjectConfig('- programs\n', 'x.yaml')).toThrow('x.yaml:1: an object config must be a mapping with keys programs, maps, variables, workload, not a list');
    // workload: shell commands the guest runs while the programs are attached
    expect(parseObjectConfig('workload:\n  - cat /proc/net/tcp\n  - ping -c 1 127.0.0.1\n', 'x.yaml').workload).toEqual(['cat /proc/net/tcp', 'ping -c 1 127.0.0.1']);
    expect(() => parseObjectConfig('workload: ls\n', 'x.yaml')).toThrow('x.yaml:1: workload: expected a list of shell commands (strings), not');
  });

  it('reads a file, and names it when it cannot', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-ocfg-'));
    try {
      writeFileSync(join(dir, 'tool.yaml'), 'maps:\n  events: { max_entries: 0 }\n');
      expect(() => readObjectConfig(join(dir, 'tool.yaml'), 'tool.yaml')).toThrow('tool.yaml:2: maps.events.max_entries: expected a positive integer below 2^32, not number 0');
      writeFileSync(join(dir, 'tool.yaml'), 'maps:\n  events: { max_entries: 16384 }\n');
      expect(readObjectConfig(join(dir, 'tool.yaml')).maps).toEqual({ events: { maxEntries: 16384 } });
      expect(() => readObjectConfig(join(dir, 'missing.yaml'), 'missing.yaml')).toThrow(/^missing\.yaml: cannot read the object config: ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('evaluating conditions', () => {
  it.each([
    ["'>= 5.11'", true], ["'< 6.1'", false], ["'<= 6.1'", true], ["'== 6.1'", true], ["'6.1.176'", true], ["'6'", true],
    ["'> 6.1'", false], ["'>= 6.1.177'", false], ["'> 6.1.175'", true], ["'>= 5.11, < 6.2'", true], ["'>= 5.11, < 6.1'", false], ["'= 5.10'", false],
  ])('kernel %s on 6.1.176 is %s', (range, want) => {
    expect(evaluate(cond(`{ kernel: ${range} }`), fakeFacts())).toBe(want);
  });

  it('compares kconfig values as a kernel config writes them', () => {
    const f = fakeFacts({ config: { CONFIG_BPF: 'y', CONFIG_TUN: 'm', CONFIG_HZ: 250, CONFIG_PAGE: 4096, CONFIG_LSM: 'lockdown,yama' } });
    const t = (c: string) => evaluate(cond(c), f);
    expect([t('{ kconfig: CONFIG_BPF }'), t('{ kconfig: CONFIG_TUN }'), t('{ kconfig: CONFIG_HZ }'), t('{ kconfig: CONFIG_NOPE }')]).toEqual([true, true, true, false]);
    expect([t('{ kconfig: CONFIG_TUN, equals: y }'), t('{ kconfig: CONFIG_TUN, equals: m }'), t('{ kconfig: CONFIG_NOPE, equals: n }'), t('{ kconfig: CONFIG_BPF, equals: n }')]).toEqual([false, true, true, false]);
    expect([t('{ kconfig: CONFIG_HZ, equals: 250 }'), t("{ kconfig: CONFIG_HZ, equals: '250' }"), t('{ kconfig: CONFIG_PAGE, equals: 0x1000 }'), t('{ kconfig: CONFIG_HZ, equals: 1000 }')]).toEqual([true, true, true, false]);
    expect([t("{ kconfig: CONFIG_LSM, equals: 'lockdown,yama' }"), t('{ kconfig: CONFIG_LSM, equals: yama }')]).toEqual([true, false]);
  });

  it('combines with all, any and not, asking only for the facts it needs, and traces them', () => {
    const f = fakeFacts({ funcs: ['do_sys_openat2'], config: { CONFIG_X: 'y' } });
    const trace: string[] = [];
    // kallsyms is never reached (fakeFacts throws if it is): `any` stops at its first yes.
    expect(evaluate(cond('{ any: [ { btf-function: do_sys_openat2 }, { kallsyms: do_sys_openat2 } ] }'), f, trace)).toBe(true);
    expect(trace).toEqual(['btf-function do_sys_openat2: yes']);
    trace.length = 0;
    expect(evaluate(cond('{ all: [ { kconfig: CONFIG_X }, { not: { btf-function: vfs_open } }, { kernel: "< 6" } ] }'), f, trace)).toBe(false);
    expect(trace).toEqual(['kconfig CONFIG_X=y: yes', 'btf-function vfs_open: no', 'kernel 6.1.176 < 6: no']);
    expect(evaluate(cond('{ all: [ { btf-function: nope }, { kallsyms: x } ] }'), f)).toBe(false);
    expect(evaluate(cond('true'), f)).toBe(true);
    expect(evaluate(cond('{ kallsyms: vfs_read }'), fakeFacts({ ksyms: ['vfs_read'] }))).toBe(true);
  });
});

describe('facts from real kernels (Debian 5.10, 6.1 and 6.1-rt)', () => {
  const store = new KernelStore();
  const kernels = new Map<string, { facts: ObjectConfigFacts; funcs: Set<string>; configText: string }>();

  /** bpftool's text dump of the kernel's BTF: the FUNC names libbpf's reader sees. */
  const bpftoolFuncs = (btfPath: string): Set<string> => {
    const out = execFileSync('bpftool', ['btf', 'dump', 'file', btfPath], { maxBuffer: 1 << 30, encoding: 'utf8' });
    return new Set([...out.matchAll(/^\[\d+\] FUNC '([^']+)'/gm)].map((m) => m[1]!));
  };

  beforeAll(async () => {
    for (const id of ['5.10', '6.1', '6.1-rt']) {
      const k = await store.fetch(id);
      const m = /^(\d+)\.(\d+)\.(\d+)/.exec(k.version)!;
      const configText = readFileSync(k.config, 'utf8');
      const facts = kernelFacts({
        btf: readTargetBtf(new Uint8Array(readFileSync(k.btf)), id),
        config: parseKernelConfig(configText, `${id} config`),
        version: [Number(m[1]), Number(m[2]), Number(m[3])],
        name: id,
      });
      kernels.set(id, { facts, funcs: id === '6.1-rt' ? new Set() : bpftoolFuncs(k.btf), configText });
    }
  }, 900_000);

  it('finds a function in 6.1 BTF and not in 5.10 BTF exactly where bpftool does', () => {
    const old = kernels.get('5.10')!;
    const cur = kernels.get('6.1')!;
    const onlyNew = [...cur.funcs].filter((f) => !old.funcs.has(f));
    const onlyOld = [...old.funcs].filter((f) => !cur.funcs.has(f));
    // bpf_loop (the helper's kernel function, 5.17) is the one the config below is about.
    expect(onlyNew).toContain('bpf_loop');
    expect(onlyOld.length).toBeGreaterThan(0);
    const sample = ['bpf_loop', 'do_sys_openat2', 'vfs_read', 'no_such_function_at_all', ...onlyNew.slice(0, 20), ...onlyOld.slice(0, 20)];
    for (const [id, k] of [['5.10', old], ['6.1', cur]] as const) {
      for (const f of sample) expect(k.facts.hasBtfFunction(f), `${id}: ${f}`).toBe(k.funcs.has(f));
    }
  });

  it('reads kconfig and the version as the kernels have them', () => {
    for (const [id, k] of kernels) {
      const rt = /^CONFIG_PREEMPT_RT=y$/m.test(k.configText);
      expect(evaluate(cond('{ kconfig: CONFIG_PREEMPT_RT }'), k.facts), id).toBe(rt);
      const hz = /^CONFIG_HZ=(\d+)$/m.exec(k.configText)![1]!;
      expect(evaluate(cond(`{ kconfig: CONFIG_HZ, equals: ${hz} }`), k.facts), id).toBe(true);
      expect(evaluate(cond(`{ kconfig: CONFIG_HZ, equals: ${Number(hz) + 1} }`), k.facts), id).toBe(false);
    }
    expect([...kernels].map(([id, k]) => [id, evaluate(cond("{ kernel: '>= 5.11' }"), k.facts)])).toEqual([['5.10', false], ['6.1', true], ['6.1-rt', true]]);
    expect(() => evaluate(cond('{ kallsyms: vfs_read }'), kernels.get('6.1')!.facts)).toThrow('6.1: a kallsyms condition (vfs_read) needs /proc/kallsyms, which this evaluation does not have');
  });

  it('configures the opensnoop-like object differently on each kernel', () => {
    const config = parseObjectConfig([
      'programs:',
      '  on_open_fentry: { autoload: { btf-function: bpf_loop } }',
      '  on_open_kprobe: { autoload: { not: { btf-function: bpf_loop } } }',
      '  on_open_bare:',
      '    attach:',
      '      - { target: __x64_sys_futex_waitv, if: { btf-function: __x64_sys_futex_waitv } }',
      '      - do_sys_openat2',
    ].join('\n'), 'opensnoop.yaml');
    const spec = openObject();
    const got = (id: string) => {
      const r = applyObjectConfig(spec, config, kernels.get(id)!.facts);
      const p = (n: string) => r.spec.programs.find((x) => x.name === n)!;
      return { fentry: p('on_open_fentry').autoload, kprobe: p('on_open_kprobe').autoload, bare: p('on_open_bare').attachTo, applied: r.applied };
    };
    const old = got('5.10');
    const cur = got('6.1');
    const witness = (id: string, f: string) => kernels.get(id)!.funcs.has(f);
    expect([old.fentry, old.kprobe, old.bare]).toEqual([witness('5.10', 'bpf_loop'), !witness('5.10', 'bpf_loop'), witness('5.10', '__x64_sys_futex_waitv') ? '__x64_sys_futex_waitv' : 'do_sys_openat2']);
    expect([cur.fentry, cur.kprobe, cur.bare]).toEqual([witness('6.1', 'bpf_loop'), !witness('6.1', 'bpf_loop'), witness('6.1', '__x64_sys_futex_waitv') ? '__x64_sys_futex_waitv' : 'do_sys_openat2']);
    expect([old.fentry, cur.fentry]).toEqual([false, true]);
    expect(old.applied).toEqual([
      'program on_open_fentry: autoload true → false [btf-function bpf_loop: no]',
      'program on_open_kprobe: autoload stays true [btf-function bpf_loop: no]',
      'program on_open_bare: attach unset → do_sys_openat2 [candidate 2 of 2; btf-function __x64_sys_futex_waitv: no]',
    ]);
    expect(cur.applied[2]).toBe('program on_open_bare: attach unset → __x64_sys_futex_waitv [candidate 1 of 2; btf-function __x64_sys_futex_waitv: yes]');
  });
});

describe('applying a config to an object', () => {
  const facts = fakeFacts({ funcs: ['do_sys_openat2'] });
  const configText = [
    'programs:',
    '  on_open_fentry:',
    '    autoload: { btf-function: do_sys_openat2 }',
    '  on_open_kprobe:',
    '    autoload: { not: { btf-function: do_sys_openat2 } }',
    '  on_open_bare:',
    '    attach: do_sys_openat2',
    '  on_enter_openat:',
    '    attach: syscalls/sys_enter_open',
    'maps:',
    '  events: { max_entries: 5000 }',
    '  starts: { max_entries: 8192 }',
    'variables:',
    '  targ_pid: 4242',
    '  min_duration_ns: -1000000',
    '  targ_failed: true',
    '  filter_comm: bash',
    '  mode: OC_MODE_SLOW',
    '  level: -2',
    '  cfg: { max: 100000, min: 65535, tag: abcde }',
    '  mask: "0xfedcba9876543210"',
    '  data_counter: 1099511627776',
    '  data_small: -128',
    '  data_port: 443',
    '  data_name: ab',
    '  bss_flag: true',
    '  bss_level: -7',
    '  bss_name: x',
    '  bss_big: "18446744073709551615"',
    '  folded: 9',
  ].join('\n');

  // The same settings through libbpf's skeleton, written as a C programmer would.
  const witnessC = `
#include <stdio.h>
#include <string.h>
#include <stdbool.h>
#include <linux/types.h>
#include <bpf/libbpf.h>
#include "object_config.h"
#include "ocfix.skel.h"

static void dump(const char *name, const struct bpf_map *m)
{
	size_t sz = 0;
	const unsigned char *p = bpf_map__initial_value((struct bpf_map *)m, &sz);
	printf("%s ", name);
	for (size_t i = 0; i < sz; i++)
		printf("%02x", p[i]);
	printf("\\n");
}

int main(void)
{
	static const unsigned sizes[] = { 1, 4095, 4096, 4097, 5000, 12288, 16384, 262144, 300000 };
	struct ocfix *s = ocfix__open();
	if (!s)
		return 1;
	s->rodata->targ_pid = 4242;
	s->rodata->min_duration_ns = -1000000;
	s->rodata->targ_failed = true;
	memset(s->rodata->filter_comm, 0, sizeof(s->rodata->filter_comm));
	strcpy(s->rodata->filter_comm, "bash");
	s->rodata->mode = OC_MODE_SLOW;
	s->rodata->level = OC_LEVEL_LOW;
	s->rodata->cfg.max = 100000;
	s->rodata->cfg.min = 65535;
	memset(s->rodata->cfg.tag, 0, sizeof(s->rodata->cfg.tag));
	strcpy(s->rodata->cfg.tag, "abcde");
	s->rodata->mask = 0xfedcba9876543210ULL;
	s->rodata->folded = 9;
	s->data->data_counter = 1ULL << 40;
	s->data->data_small = -128;
	s->data->data_port = 443;
	memset(s->data->data_name, 0, sizeof(s->data->data_name));
	strcpy(s->data->data_name, "ab");
	s->bss->bss_flag = true;
	s->bss->bss_level = -7;
	strcpy(s->bss->bss_name, "x");
	s->bss->bss_big = 18446744073709551615ULL;
	bpf_map__set_max_entries(s->maps.events, 5000);
	bpf_map__set_max_entries(s->maps.starts, 8192);
	dump(".rodata", s->maps.rodata);
	dump(".data", s->maps.data);
	dump(".bss", s->maps.bss);
	printf("events %u\\nstarts %u\\n", bpf_map__max_entries(s->maps.events), bpf_map__max_entries(s->maps.starts));
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		bpf_map__set_max_entries(s->maps.events, sizes[i]);
		printf("ringbuf %u %u\\n", sizes[i], bpf_map__max_entries(s->maps.events));
	}
	ocfix__destroy(s);
	return 0;
}
`;
  let libbpf: Map<string, string>;
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cm-ocfg-skel-'));
    writeFileSync(join(dir, 'ocfix.skel.h'), execFileSync('bpftool', ['gen', 'skeleton', objectPath, 'name', 'ocfix']));
    writeFileSync(join(dir, 'witness.c'), witnessC);
    execFileSync('cc', ['-O0', '-I', dir, '-I', FIXTURES, '-o', join(dir, 'witness'), join(dir, 'witness.c'), '-lbpf'], { stdio: 'pipe' });
    const out = execFileSync(join(dir, 'witness'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    libbpf = new Map(out.trim().split('\n').map((l) => {
      const i = l.lastIndexOf(' ');
      return [l.slice(0, i), l.slice(i + 1)];
    }));
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const hex = (b: Uint8Array | undefined) => Buffer.from(b ?? []).toString('hex');
  const mapOf = (s: ObjectSpec, n: string) => s.maps.find((m) => m.name === n)!;
  const progOf = (s: ObjectSpec, n: string) => s.programs.find((p) => p.name === n)!;

  it('writes the bytes libbpf\'s skeleton writes for the same values, in .rodata, .data and .bss', () => {
    const { spec } = applyObjectConfig(openObject(), parseObjectConfig(configText, 'opensnoop.yaml'), facts);
    for (const sec of ['.rodata', '.data', '.bss']) expect(hex(mapOf(spec, sec).data), sec).toBe(libbpf.get(sec));
    // The bytes did change: the object's own initial values are not what libbpf printed.
    for (const sec of ['.rodata', '.data', '.bss']) expect(hex(mapOf(openObject(), sec).data), sec).not.toBe(libbpf.get(sec));
  });

  it('sizes maps as libbpf does, ring buffers rounded up to a power-of-2 number of pages', () => {
    const { spec } = applyObjectConfig(openObject(), parseObjectConfig(configText, 'opensnoop.yaml'), facts);
    expect(String(mapOf(spec, 'events').maxEntries)).toBe(libbpf.get('events'));
    expect(String(mapOf(spec, 'starts').maxEntries)).toBe(libbpf.get('starts'));
    for (const n of [1, 4095, 4096, 4097, 5000, 12288, 16384, 262144, 300000]) expect(String(ringbufSize(n, 4096)), `${n}`).toBe(libbpf.get(`ringbuf ${n}`));
  });

  it('sets autoload and attach targets, and says what it did', () => {
    const r = applyObjectConfig(openObject(), parseObjectConfig(configText, 'opensnoop.yaml'), facts);
    expect(progOf(r.spec, 'on_open_fentry').autoload).toBe(true);
    expect(progOf(r.spec, 'on_open_kprobe').autoload).toBe(false);
    // The bare SEC("fentry") had no target (the load would fail); now it has one, parsed as SEC("fentry/do_sys_openat2") would be.
    const before = progOf(openObject(), 'on_open_bare');
    expect(before.targetError).toMatch(/no attach target/);
    const bare = progOf(r.spec, 'on_open_bare');
    expect([bare.attachTo, bare.target, bare.targetError]).toEqual(['do_sys_openat2', { kind: 'btf', name: 'do_sys_openat2', btfName: 'do_sys_openat2', btfKind: 'func' }, undefined]);
    expect(progOf(r.spec, 'on_enter_openat').target).toEqual({ kind: 'tracepoint', category: 'syscalls', name: 'sys_enter_open' });
    expect(r.applied).toEqual([
      'program on_open_fentry: autoload stays true [btf-function do_sys_openat2: yes]',
      'program on_open_kprobe: autoload true → false [btf-function do_sys_openat2: yes]',
      'program on_open_bare: attach unset → do_sys_openat2',
      'program on_enter_openat: attach syscalls/sys_enter_openat → syscalls/sys_enter_open',
      'map events: max_entries 262144 → 8192 (asked 5000: a ring buffer is a power-of-2 number of 4096-byte pages; libbpf rounds up the same way)',
      'map starts: max_entries 1024 → 8192',
      'variable targ_pid (.rodata+0, const volatile __u32) = 4242',
      'variable min_duration_ns (.rodata+8, const volatile __s64) = -1000000',
      'variable targ_failed (.rodata+16, const volatile _Bool) = true',
      'variable filter_comm (.rodata+17, const volatile char[16]) = "bash"',
      'variable mode (.rodata+36, const volatile enum oc_mode) = OC_MODE_SLOW (65536)',
      'variable level (.rodata+40, const volatile enum oc_level) = -2',
      'variable cfg.max (.rodata+44, __u32) = 100000',
      'variable cfg.min (.rodata+48, __u16) = 65535',
      'variable cfg.tag (.rodata+50, char[6]) = "abcde"',
      'variable mask (.rodata+56, const volatile __u64) = 18364758544493064720',
      'variable data_counter (.data+0, __u64) = 1099511627776',
      'variable data_small (.data+8, __s8) = -128',
      'variable data_port (.data+10, __u16) = 443',
      'variable data_name (.data+12, char[8]) = "ab"',
      'variable bss_flag (.bss+0, _Bool) = true',
      'variable bss_level (.bss+4, __s32) = -7',
      'variable bss_name (.bss+8, char[8]) = "x"',
      'variable bss_big (.bss+16, __u64) = 18446744073709551615',
      'variable folded (.rodata+64, const __u32) = 9; not volatile: the compiler may have folded its initial value into the code (declare it const volatile)',
    ]);
  });

  it('leaves its input alone, changes nothing more when applied again, and the result links', () => {
    const spec = openObject();
    const snapshot = () => JSON.stringify({
      programs: spec.programs.map((p) => [p.autoload, p.attachTo, p.target, p.targetError]),
      maps: spec.maps.map((m) => [m.maxEntries, hex(m.data)]),
      sections: [...spec.sections].map(([k, v]) => [k, hex(v)]),
    });
    const before = snapshot();
    const config = parseObjectConfig(configText, 'opensnoop.yaml');
    const once = applyObjectConfig(spec, config, facts);
    expect(snapshot()).toBe(before);
    // What the loader and the CO-RE engine write into (map data, code) is the result's own.
    for (const m of once.spec.maps) if (m.data) expect(m.data).not.toBe(spec.maps.find((x) => x.name === m.name)!.data);
    for (const [k, v] of once.spec.sections) expect(v).not.toBe(spec.sections.get(k));

    const twice = applyObjectConfig(once.spec, config, facts);
    expect(twice.spec.maps.map((m) => [m.maxEntries, hex(m.data)])).toEqual(once.spec.maps.map((m) => [m.maxEntries, hex(m.data)]));
    expect(twice.spec.programs.map((p) => [p.autoload, p.attachTo, p.target])).toEqual(once.spec.programs.map((p) => [p.autoload, p.attachTo, p.target]));
    expect(twice.applied.filter((l) => l.startsWith('program') || l.startsWith('map'))).toEqual([
      'program on_open_fentry: autoload stays true [btf-function do_sys_openat2: yes]',
      'program on_open_kprobe: autoload stays false [btf-function do_sys_openat2: yes]',
      'program on_open_bare: attach stays do_sys_openat2',
      'program on_enter_openat: attach stays syscalls/sys_enter_open',
      'map events: max_entries stays 8192 (asked 5000: a ring buffer is a power-of-2 number of 4096-byte pages; libbpf rounds up the same way)',
      'map starts: max_entries stays 8192',
    ]);
    for (const p of once.spec.programs) expect(linkProgram(once.spec, p).insns.length, p.name).toBeGreaterThan(0);
  });

  // Errors found against the object: the key's line in the file, the key, and what is wrong.
  const errors: [string, string, string | RegExp][] = [
    ['a program the object lacks', 'programs:\n  pass: { autoload: true }\n  handle_exec: { autoload: false }',
      /^x\.yaml:3: programs\.handle_exec: no program 'handle_exec' in object_config\.bpf\.o \(programs: .*on_open_fentry.*\)$/],
    ['an attach target for XDP', 'programs:\n  pass:\n    attach: eth0',
      "x.yaml:3: programs.pass.attach: a 'xdp' program takes no attach target (section 'xdp')"],
    ['a tracepoint target without a category', 'programs:\n  on_enter_openat:\n    attach: [ { target: syscalls/sys_enter_open, if: true }, sys_enter_openat ]',
      "x.yaml:3: programs.on_enter_openat.attach: candidate 2: section 'tracepoint/sys_enter_openat': 'sys_enter_openat' is not category/name"],
    ['a map the object lacks', 'maps:\n  event: { max_entries: 4096 }',
      /^x\.yaml:2: maps\.event: no map 'event' in object_config\.bpf\.o \(maps: events, starts\)$/],
    ['a size for a data map', 'maps:\n  .bss: { max_entries: 2 }',
      "x.yaml:2: maps..bss: .bss is a global data map: its size is its section's; set its variables under 'variables'"],
    ['a variable the object lacks', 'variables:\n  targ_tgid: 1',
      /^x\.yaml:2: variables\.targ_tgid: no global variable 'targ_tgid' in object_config\.bpf\.o \(variables: .*targ_pid.*\)$/],
    ['a kconfig extern', 'variables:\n  LINUX_KERNEL_VERSION: 1',
      'x.yaml:2: variables.LINUX_KERNEL_VERSION: \'LINUX_KERNEL_VERSION\' is an extern (kconfig): the loader resolves it from the kernel'],
    ['a string for an integer', 'variables:\n  targ_pid: all',
      'x.yaml:2: variables.targ_pid: const volatile __u32 is an integer: expected an integer, not string "all"'],
    ['a negative unsigned value', 'variables:\n  targ_pid: -1',
      'x.yaml:2: variables.targ_pid: -1 is outside const volatile __u32 (0..4294967295)'],
    ['a signed value past its range', 'variables:\n  data_small: 128',
      'x.yaml:2: variables.data_small: 128 is outside __s8 (-128..127)'],
    ['a number for a bool', 'variables:\n  targ_failed: 1',
      'x.yaml:2: variables.targ_failed: const volatile _Bool is a bool: expected true or false, not number 1'],
    ['a string too long for its array', 'variables:\n  filter_comm: "sixteen-chars-xx"',
      'x.yaml:2: variables.filter_comm: "sixteen-chars-xx" is 16 bytes; const volatile char[16] holds 15 and a NUL'],
    ['an unknown enumerator', 'variables:\n  mode: OC_MODE_FAST',
      'x.yaml:2: variables.mode: const volatile enum oc_mode has no enumerator \'OC_MODE_FAST\' (enumerators: OC_MODE_ALL, OC_MODE_FAILED, OC_MODE_SLOW)'],
    ['a member the struct lacks', 'variables:\n  cfg:\n    max: 1\n    maximum: 2',
      "x.yaml:4: variables.cfg.maximum: struct oc_cfg has no member 'maximum' (members: max, min, tag)"],
    ['a struct set as a whole', 'variables:\n  cfg: 5',
      'x.yaml:2: variables.cfg: const volatile struct oc_cfg cannot be set: only integers, bool, enums and char arrays can'],
    ['a member of a scalar', 'variables:\n  targ_pid: { low: 1 }',
      "x.yaml:2: variables.targ_pid.low: targ_pid is const volatile __u32, not a struct or union: it has no member 'low'"],
  ];
  it.each(errors)('rejects %s', (_what, text, message) => {
    expect(() => applyObjectConfig(openObject(), parseObjectConfig(text, 'x.yaml'), facts)).toThrow(message);
  });

  it('checks every name before evaluating anything, so an error does not depend on the kernel', () => {
    const config = parseObjectConfig('programs:\n  on_open_fentry: { autoload: { kallsyms: x } }\nvariables:\n  nope: 1', 'x.yaml');
    // fakeFacts throws if kallsyms is asked: the variable error comes first.
    expect(() => applyObjectConfig(openObject(), config, fakeFacts())).toThrow(/^x\.yaml:4: variables\.nope: no global variable 'nope'/);
  });
});
