// spec.yaml validation: every committed spec validates; every kind of mistake is one line naming
// suites/<name>/spec.yaml:<line> and the allowed values. Truth expressions parse per trigger.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '../../harness/core/errors.js';
import { listSuites, suitesDir } from '../../harness/suites/build.js';
import { lineOf, readSpec, TRIGGER_KINDS } from '../../harness/suites/spec.js';
import { convertConfig, hostKeysOf, kernelVersionCode, parseObserve, parseTruth, sameValue } from '../../harness/suites/truth.js';

const GOOD = `name: demo
description: a demo suite
minKernel: "5.8"
rodata:
  target_tgid: $pid
trigger:
  kind: prctl-set-name
  name: cm-demo
checks:
  - { name: pid, observe: pid_core, truth: tid }
  - name: comm
    observe: new_comm
    truth: "proc:comm"
`;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cm-spec-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a spec and returns the error message readSpec gives (or 'ok'). */
function errorOf(text: string): string {
  const f = join(dir, 'spec.yaml');
  writeFileSync(f, text);
  try {
    readSpec(f, 'suites/demo/spec.yaml', 'demo');
    return 'ok';
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    const msg = (e as Error).message;
    expect(msg.includes('\n')).toBe(false);
    return msg;
  }
}

describe('committed specs', () => {
  it('every suite folder has a spec that validates, named like its folder', () => {
    const names = listSuites();
    expect(names.length).toBe(12);
    for (const n of names) expect(readSpec(join(suitesDir(), n, 'spec.yaml'), `suites/${n}/spec.yaml`, n).name).toBe(n);
  });

  it('collects the host truth keys the specs need', () => {
    const specs = listSuites().map((n) => readSpec(join(suitesDir(), n, 'spec.yaml'), n, n));
    const keys = hostKeysOf(specs);
    expect(keys).toContain('field.task_struct.__state');
    expect(keys).toContain('enum.cpuhp_state.CPUHP_AP_ONLINE_DYN');
    expect(keys).toContain('config.CONFIG_PREEMPT_RT');
    expect(keys).toContain('kernel.version');
  });
});

describe('bad specs give file:line errors', () => {
  it('accepts the good one', () => {
    expect(errorOf(GOOD)).toBe('ok');
  });

  it('unknown top-level key', () => {
    expect(errorOf(GOOD.replace('minKernel:', 'minKernal:'))).toBe(
      "suites/demo/spec.yaml:3: unknown key 'minKernal' (allowed: name, description, header, programs, minKernel, kconfig, modules, rodata, trigger, checks, exec)",
    );
  });

  it('wrong type (an unquoted version is a number)', () => {
    expect(errorOf(GOOD.replace('"5.8"', '5.8'))).toBe('suites/demo/spec.yaml:3: minKernel must be a quoted "MAJOR.MINOR" string such as "5.8", not number 5.8');
  });

  it('kconfig: a list of CONFIG_ option names', () => {
    expect(errorOf(GOOD.replace('minKernel: "5.8"', 'minKernel: "5.8"\nkconfig: [CONFIG_BPF_SYSCALL]'))).toBe('ok');
    expect(errorOf(GOOD.replace('minKernel: "5.8"', 'minKernel: "5.8"\nkconfig: [bpf_syscall]'))).toBe('suites/demo/spec.yaml:4: kconfig[0] must be a CONFIG_ option name such as CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS, not string "bpf_syscall"');
    expect(errorOf(GOOD.replace('minKernel: "5.8"', 'minKernel: "5.8"\nkconfig: CONFIG_BPF'))).toBe('suites/demo/spec.yaml:4: kconfig must be a non-empty list of CONFIG_ options the programs need, not string "CONFIG_BPF"');
  });

  it('unknown trigger kind names the allowed kinds', () => {
    expect(errorOf(GOOD.replace('kind: prctl-set-name', 'kind: getpid'))).toBe(`suites/demo/spec.yaml:7: unknown trigger kind "getpid" (allowed: ${TRIGGER_KINDS.join(', ')})`);
  });

  it('a trigger field of another kind, and a missing one', () => {
    expect(errorOf(GOOD.replace('  name: cm-demo', '  name: cm-demo\n  opens: 3'))).toBe("suites/demo/spec.yaml:9: unknown key 'opens' for trigger 'prctl-set-name' (allowed: kind, name)");
    expect(errorOf(GOOD.replace('kind: prctl-set-name\n  name: cm-demo', 'kind: test-run\n  program: p'))).toBe("suites/demo/spec.yaml:6: trigger 'test-run' needs 'packetLengths' (int[])");
    expect(errorOf(GOOD.replace('kind: prctl-set-name\n  name: cm-demo', 'kind: test-run\n  program: p\n  packetLengths: [64, -1]'))).toBe(
      'suites/demo/spec.yaml:9: trigger.packetLengths must be a non-empty list of positive integers, not a list',
    );
  });

  it('a comm longer than TASK_COMM_LEN - 1', () => {
    expect(errorOf(GOOD.replace('name: cm-demo', 'name: cm-demo-far-too-long'))).toBe("suites/demo/spec.yaml:8: trigger.name 'cm-demo-far-too-long' is longer than 15 bytes (TASK_COMM_LEN - 1)");
  });

  it('modules map a module name to the option that builds it, and say when its BTF is needed', () => {
    const mods = (text: string) => errorOf(GOOD.replace('rodata:', `modules:\n${text}\nrodata:`));
    expect(mods('  null_blk: CONFIG_BLK_DEV_NULL_BLK')).toBe('ok');
    expect(mods('  tun: { option: CONFIG_TUN, btf: true }')).toBe('ok');
    const form = '(null_blk: CONFIG_BLK_DEV_NULL_BLK, or tun: { option: CONFIG_TUN, btf: true } when the programs relocate against its types)';
    expect(mods('  tun: y')).toBe(`suites/demo/spec.yaml:5: module 'tun' must name the option that builds it (CONFIG_<X>) ${form}, not string "y"`);
    expect(mods('  tun: { option: CONFIG_TUN, btf: yes }')).toBe("suites/demo/spec.yaml:5: module 'tun': btf must be true or false, not string \"yes\"");
    expect(mods('  tun: { option: CONFIG_TUN, load: true }')).toBe("suites/demo/spec.yaml:5: unknown key 'load' for module 'tun' (allowed: option, btf)");
    expect(mods('  Tun/x: CONFIG_TUN')).toBe("suites/demo/spec.yaml:5: module name 'Tun/x' must be a kernel module name (lower case letters, digits, - and _)");
    expect(errorOf(GOOD.replace('rodata:', 'modules: [tun]\nrodata:'))).toBe(`suites/demo/spec.yaml:4: modules must be a mapping of module name → the CONFIG_ option that builds it ${form}, not a list`);
  });

  it('block-io wants a device name and whole pages', () => {
    const bio = (device: string, bytes: number) => GOOD.replace('kind: prctl-set-name\n  name: cm-demo', `kind: block-io\n  device: ${device}\n  bytes: ${bytes}`).replace(/\n  - \{ name: pid.*\n  - name: comm\n    observe: new_comm\n    truth: "proc:comm"/, '\n  - { name: bytes, observe: pid_core, truth: "trigger:bytes" }');
    expect(errorOf(bio('nullb0', 8192))).toBe('ok');
    expect(errorOf(bio('nullb0', 1000))).toBe('suites/demo/spec.yaml:9: trigger.bytes 1000 must be a multiple of 4096 (whole pages)');
    expect(errorOf(bio('../sda', 4096))).toBe("suites/demo/spec.yaml:8: trigger.device '../sda' must be a block device name under /dev (lower case letters and digits)");
  });

  it('a tun device name that is not an interface name', () => {
    const tun = (name: string) => GOOD.replace('kind: prctl-set-name\n  name: cm-demo', `kind: tun\n  name: ${name}`).replace(/\n  - \{ name: pid.*\n  - name: comm\n    observe: new_comm\n    truth: "proc:comm"/, '\n  - { name: ifindex, observe: pid_core, truth: "trigger:ifindex" }');
    expect(errorOf(tun('cmtun0'))).toBe('ok');
    expect(errorOf(tun('cm-tun-name-too-long'))).toBe("suites/demo/spec.yaml:8: trigger.name 'cm-tun-name-too-long' is not an interface name (1 to 15 of A-Z a-z 0-9 _ . -: IFNAMSIZ - 1)");
  });

  it('unknown key inside a check (block and flow style) points at the check line', () => {
    expect(errorOf(GOOD.replace('    truth: "proc:comm"', '    truht: "proc:comm"'))).toBe("suites/demo/spec.yaml:13: unknown key 'truht' in checks[1] (allowed: name, observe, truth)");
    expect(errorOf(GOOD.replace('truth: tid }', 'truth: tid, expect: 1 }'))).toBe("suites/demo/spec.yaml:10: unknown key 'expect' in checks[0] (allowed: name, observe, truth)");
  });

  it('bad truth expressions name the allowed values', () => {
    expect(errorOf(GOOD.replace('truth: tid }', 'truth: gettid }'))).toBe(
      "suites/demo/spec.yaml:10: unknown truth source 'gettid' (allowed: pid, tid, proc:, uname:, config:, host:, trigger:, rodata:, const:, var:)",
    );
    expect(errorOf(GOOD.replace('"proc:comm"', '"proc:cwd"'))).toBe("suites/demo/spec.yaml:13: unknown proc key 'cwd' (allowed: comm, state, netns)");
    expect(errorOf(GOOD.replace('"proc:comm"', '"trigger:port"'))).toBe("suites/demo/spec.yaml:13: trigger 'prctl-set-name' has no key 'port' (allowed: count, name, oldComm)");
    expect(errorOf(GOOD.replace('"proc:comm"', '"config:CONFIG_HZ:float"'))).toBe("suites/demo/spec.yaml:13: unknown conversion 'float' (allowed: bool, tristate, int, string)");
    expect(errorOf(GOOD.replace('"proc:comm"', '"rodata:cfg.max"'))).toBe("suites/demo/spec.yaml:13: truth rodata:cfg.max names no key of this spec's rodata");
    expect(errorOf(GOOD.replace('"proc:comm"', '"host:sizeof.task_struct"'))).toMatch(/^suites\/demo\/spec\.yaml:13: unknown host key 'sizeof\.task_struct' \(allowed: enum\.<enum>\.<enumerator>, /);
  });

  it('bad observe and rodata placeholders', () => {
    expect(errorOf(GOOD.replace('observe: new_comm', 'observe: "ringbuf:events:all"'))).toBe(
      "suites/demo/spec.yaml:12: unknown ring buffer view 'all' (allowed: marker, tgid, tid, ordered)",
    );
    expect(errorOf(GOOD.replace('$pid', '$tid'))).toBe("suites/demo/spec.yaml:5: unknown placeholder '$tid' (allowed: $pid)");
  });

  it('missing keys, a name that is not the folder, YAML syntax errors', () => {
    expect(errorOf(GOOD.replace(/checks:[\s\S]*/, ''))).toBe("suites/demo/spec.yaml:1: missing key 'checks' (required: name, description, trigger, checks)");
    expect(errorOf(GOOD.replace('name: demo', 'name: other'))).toBe("suites/demo/spec.yaml:1: name 'other' must equal the folder name 'demo'");
    expect(errorOf(GOOD.replace('checks:\n', 'checks:\n  - { name: x\n'))).toMatch(/^suites\/demo\/spec\.yaml:\d+: YAML error: /);
  });

  it('lineOf finds nested keys by indentation', () => {
    expect(lineOf(GOOD, ['trigger', 'name'])).toBe(8);
    expect(lineOf(GOOD, ['checks', 1, 'observe'])).toBe(12);
    expect(lineOf(GOOD, ['rodata', 'target_tgid'])).toBe(5);
  });
});

describe('truth and observe grammar', () => {
  it('parses every form', () => {
    expect(parseTruth('tid', 'none')).toEqual({ op: 'value', source: { kind: 'tid' } });
    expect(parseTruth('host:enum.bpf_map_type.BPF_MAP_TYPE_ARENA ?? -1', 'none')).toEqual({ op: 'default', source: { kind: 'host', key: 'enum.bpf_map_type.BPF_MAP_TYPE_ARENA' }, fallback: -1 });
    expect(parseTruth('host:field.task_struct.__state ? 2 : 1', 'none')).toEqual({ op: 'cond', source: { kind: 'host', key: 'field.task_struct.__state' }, then: 2, else: 1 });
    expect(parseTruth('trigger:count + 1000', 'test-run')).toEqual({ op: 'add', source: { kind: 'trigger', key: 'count' }, add: 1000 });
    expect(parseTruth('host:config.CONFIG_PHYLIB:tristate', 'none')).toEqual({ op: 'value', source: { kind: 'host', key: 'config.CONFIG_PHYLIB', conv: 'tristate' } });
    expect(parseTruth('const:true', 'none')).toEqual({ op: 'value', source: { kind: 'const', value: true } });
    expect(typeof parseTruth('pid + x', 'none')).toBe('string');
    expect(parseObserve('ringbuf:events:marker')).toEqual({ kind: 'ringbuf', map: 'events', view: 'marker' });
    expect(parseObserve('pid_core')).toEqual({ kind: 'var', name: 'pid_core' });
  });

  it('converts kconfig values as libbpf fills externs', () => {
    expect([convertConfig('y', 'bool'), convertConfig(undefined, 'bool'), convertConfig('m', 'bool')]).toEqual([1, 0, 0]);
    expect([convertConfig('y', 'tristate'), convertConfig('m', 'tristate'), convertConfig(undefined, 'tristate')]).toEqual([1, 2, 0]);
    expect([convertConfig('250', 'int'), convertConfig('"(none)"', 'string')]).toEqual([250, '(none)']);
  });

  it('compares booleans with 1/0 and bigints with numbers', () => {
    expect(sameValue(1, true)).toBe(true);
    expect(sameValue(0n, false)).toBe(true);
    expect(sameValue(3264n, 3264)).toBe(true);
    expect(sameValue('cm', 'cm')).toBe(true);
    expect(sameValue(2, true)).toBe(false);
    expect(kernelVersionCode(5, 10, 300)).toBe(0x050aff);
  });
});

describe('the committed specs parse to the truths their suites need', () => {
  it('each check of each spec has a valid truth for its trigger', () => {
    for (const n of listSuites()) {
      const text = readFileSync(join(suitesDir(), n, 'spec.yaml'), 'utf8');
      const spec = readSpec(join(suitesDir(), n, 'spec.yaml'), n, n);
      for (const c of spec.checks) expect(typeof parseTruth(c.truth, spec.trigger.kind), `${n}: ${c.truth}`).toBe('object');
      expect(text.length).toBeGreaterThan(0);
    }
  });
});
