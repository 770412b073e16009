// A suite's own command (spec `exec`), without a guest: the spec's `exec` is validated like the
// rest of the spec (unknown keys, wrong types, files that are not in the suite's folder: one line
// naming the real spec file and the line), and the host plans it as it plans `--exec`: its files at
// the same paths under /cm/suites/<suite>, the libraries of its ELF programs found by ldd, an ELF
// file of another arch refused, one cell owed per suite, after the suites and before --exec.
// The guests' side is test/suites/exec.guest.test.ts.
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FormatError, UsageError } from '../../harness/core/errors.js';
import { fileHash } from '../../harness/images/base.js';
import { execImageFiles, planExecOn, planExecsOn, suiteExecOptions } from '../../harness/matrix/exec.js';
import { buildSuites, listSuites } from '../../harness/suites/build.js';
import { readSpec } from '../../harness/suites/spec.js';
import type { SuiteSpec } from '../../harness/suites/types.js';
import { ensureBuilt, runCli } from '../helpers/tools.js';

const FIXTURES = 'test/suites/fixtures/exec';
const HEAD = `name: demo
description: a demo suite
trigger:
  kind: test-run
  program: count_runs
  packetLengths: [64]
checks:
  - { name: runs, observe: runs, truth: "trigger:count" }
`;

let dir: string;
let suite: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cm-exec-spec-'));
  suite = join(dir, 'demo');
  mkdirSync(join(suite, 'data'), { recursive: true });
  writeFileSync(join(suite, 'check.sh'), '#!/bin/sh\necho ok\n');
  chmodSync(join(suite, 'check.sh'), 0o755);
  writeFileSync(join(suite, 'plain.sh'), 'echo ok\n');
  writeFileSync(join(suite, 'data', 'x.txt'), 'x\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes the demo suite's spec with this `exec` section and returns readSpec's error (or the spec). */
function read(execYaml: string): SuiteSpec | string {
  const f = join(suite, 'spec.yaml');
  writeFileSync(f, HEAD + execYaml);
  try {
    return readSpec(f, 'suites/demo/spec.yaml', 'demo');
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    const msg = (e as Error).message;
    expect(msg.includes('\n'), msg).toBe(false);
    return msg;
  }
}

describe('spec exec: validation (no guest)', () => {
  it('the committed fixtures validate, with the shape the docs give', () => {
    expect(listSuites(FIXTURES)).toEqual(['exec-exit3', 'exec-suite', 'exec-timeout']);
    const spec = (n: string) => readSpec(join(FIXTURES, n, 'spec.yaml'), `${FIXTURES}/${n}/spec.yaml`, n);
    expect(spec('exec-suite').exec).toEqual({ command: './check.sh --strict', files: ['check.sh', 'data/'], timeout: 120 });
    expect(spec('exec-exit3').exec).toEqual({ command: 'echo to-stdout; sleep 1; echo to-stderr >&2; exit 3' });
    expect(spec('exec-timeout').exec).toEqual({ command: './check.sh', files: ['check.sh'], timeout: 5 });
  });

  it('a good exec: command, files (a file, a folder, a path below it), timeout', () => {
    expect(read('exec:\n  command: ./check.sh --strict\n  files: [check.sh, data/]\n  timeout: 120\n')).toMatchObject({ exec: { command: './check.sh --strict', files: ['check.sh', 'data/'], timeout: 120 } });
    expect(read('exec:\n  command: sh plain.sh\n  files:\n    - plain.sh\n    - data/x.txt\n')).toMatchObject({ exec: { command: 'sh plain.sh', files: ['plain.sh', 'data/x.txt'] } });
    // The whole folder; a command that names no shipped program.
    expect(read('exec:\n  command: V=1 ./check.sh\n  files: [.]\n')).toMatchObject({ exec: { files: ['.'] } });
    expect(read('exec: { command: cat /proc/sys/kernel/bpf_stats_enabled }\n')).toMatchObject({ exec: { command: 'cat /proc/sys/kernel/bpf_stats_enabled' } });
  });

  it.each([
    ['exec: ./check.sh\n', 9, "exec must be a mapping { command, files: [paths in the suite's folder], timeout: seconds }, not string \"./check.sh\""],
    ['exec:\n  command: ./check.sh\n  files: [check.sh]\n  timout: 10\n', 12, "unknown key 'timout' in exec (allowed: command, files, timeout)"],
    ['exec:\n  files: [check.sh]\n', 9, "exec needs 'command' (run as /bin/sh -c in the suite's shipped folder)"],
    ['exec:\n  command: "  "\n', 10, 'exec.command must be a non-empty string, not string "  "'],
    ['exec:\n  command: [ls]\n', 10, 'exec.command must be a non-empty string, not a list'],
    ['exec:\n  command: ls\n  timeout: 0\n', 11, 'exec.timeout must be seconds from 0 to 86400 (default 300), not number 0'],
    ['exec:\n  command: ls\n  timeout: "120"\n', 11, 'exec.timeout must be seconds from 0 to 86400 (default 300), not string "120"'],
    ['exec:\n  command: ls\n  timeout: 86401\n', 11, 'exec.timeout must be seconds from 0 to 86400 (default 300), not number 86401'],
    ['exec:\n  command: ls\n  files: check.sh\n', 11, "exec.files must be a non-empty list of paths in the suite's folder, not string \"check.sh\""],
    ['exec:\n  command: ls\n  files: []\n', 11, "exec.files must be a non-empty list of paths in the suite's folder, not a list"],
    ['exec:\n  command: ls\n  files:\n    - check.sh\n    - 7\n', 13, "exec.files[1] must be a path in the suite's folder, not number 7"],
    ['exec:\n  command: ls\n  files:\n    - /usr/sbin/bpftool\n', 12, "exec.files[0] '/usr/sbin/bpftool' must be a path inside the suite's folder, relative to it"],
    ['exec:\n  command: ls\n  files:\n    - data/../../x\n', 12, "exec.files[0] 'data/../../x' must be a path inside the suite's folder, relative to it"],
    ['exec:\n  command: ls\n  files:\n    - check.sh\n    - nothing/\n', 13, "exec.files[1] 'nothing/': no such file or folder in suites/demo/"],
    ['exec:\n  command: ls\n  files:\n    - data\n    - data/x.txt\n', 13, "exec.files[1] 'data/x.txt' and exec.files[0] 'data' overlap: each file is shipped once"],
    ['exec:\n  command: ls\n  files:\n    - check.sh\n    - ./check.sh\n', 13, "exec.files[1] './check.sh' and exec.files[0] 'check.sh' overlap: each file is shipped once"],
    ['exec:\n  command: ./check.sh\n', 10, "exec.command runs './check.sh', which exec.files does not ship (files: none)"],
    ['exec:\n  command: ./tools/run --x\n  files: [check.sh, data]\n', 10, "exec.command runs './tools/run', which exec.files does not ship (files: check.sh, data)"],
    ['exec:\n  command: ./plain.sh\n  files: [plain.sh]\n', 10, "exec.command runs './plain.sh', which is not executable (chmod +x plain.sh, or run it as sh plain.sh)"],
  ])('%j: one line, file:line', (execYaml, line, message) => {
    expect(read(execYaml)).toBe(`suites/demo/spec.yaml:${line}: ${message}`);
  });

  it('an unknown top-level key still lists exec among the allowed ones', () => {
    expect(read('exce:\n  command: ls\n')).toBe('suites/demo/spec.yaml:9: unknown key \'exce\' (allowed: name, description, header, programs, minKernel, kconfig, modules, rodata, trigger, checks, exec)');
  });

  it('--suites-dir elsewhere: the error names the real spec file, before anything is compiled or fetched', async () => {
    writeFileSync(join(suite, 'spec.yaml'), `${HEAD}exec:\n  command: ls\n  files: [missing.sh]\n`);
    await expect(buildSuites({ suitesDir: dir })).rejects.toThrow(new FormatError(`${suite}/spec.yaml:11: exec.files[0] 'missing.sh': no such file or folder in ${suite}/`));
    ensureBuilt();
    const r = await runCli(['matrix', '--kernels', '7.3', '--suites-dir', dir, '--loader', 'ours', '--out', join(dir, 'out')]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim().split('\n').at(-1)).toBe(`corematrix: ${suite}/spec.yaml:11: exec.files[0] 'missing.sh': no such file or folder in ${suite}/`);
  }, 120_000);
});

describe('spec exec: the host plans it as --exec (no guest)', () => {
  const fixture = (name: string) => ({ name, spec: readSpec(join(FIXTURES, name, 'spec.yaml'), name, name), source: join(FIXTURES, name, 'prog.bpf.c') });

  it('its files keep their paths under /cm/suites/<suite>, which is its folder and first on its PATH; the cell is the suite\'s', async () => {
    const p = await planExecOn('amd64', suiteExecOptions(fixture('exec-suite'))!);
    expect(p.plan).toEqual({
      command: './check.sh --strict', suite: 'exec-suite', program: '(exec)', ofSuite: true,
      object: { name: 'exec-suite/check.sh', sha256: fileHash(join(FIXTURES, 'exec-suite', 'check.sh')) },
      cwd: '/cm/suites/exec-suite', files: '/cm/suites/exec-suite', timeoutMs: 120_000, path: '/cm/suites/exec-suite:/bin:/sbin:/usr/bin:/usr/sbin',
    });
    expect(p.files.map((f) => f.path)).toEqual(['/cm/suites/exec-suite/check.sh', '/cm/suites/exec-suite/data/expected.txt']);
    expect(p.owed).toEqual({ unit: 'exec-suite', object: 'exec-suite/check.sh', sha256: p.plan.object.sha256, programs: ['(exec)'] });
    // No files: it runs in /tmp; no timeout: --exec-timeout's default.
    const q = await planExecOn('amd64', suiteExecOptions(fixture('exec-exit3'))!);
    expect([q.plan.cwd, q.plan.timeoutMs, q.files]).toEqual(['/tmp', 300_000, []]);
  });

  it('every suite\'s command, then --exec; two suites\' check.sh do not collide', async () => {
    const suites = ['exec-exit3', 'exec-suite', 'exec-timeout'].map(fixture);
    const plans = await planExecsOn('amd64', suites, { command: 'ls /cm/suites', files: ['/usr/sbin/bpftool'], timeoutMs: 60_000 });
    expect(plans.map((p) => [p.plan.suite, p.plan.program])).toEqual([['exec-exit3', '(exec)'], ['exec-suite', '(exec)'], ['exec-timeout', '(exec)'], ['exec:ls /cm/suites', '(command)']]);
    const paths = execImageFiles(plans).map((f) => f.path);
    expect(paths).toContain('/cm/suites/exec-suite/check.sh');
    expect(paths).toContain('/cm/suites/exec-timeout/check.sh');
    expect(paths).toContain('/cm/files/bpftool');
    expect(new Set(paths).size).toBe(paths.length);
  });

  it("an ELF program among a suite's files brings its libraries (ldd, as for --files), each once in the image", async () => {
    const folder = join(dir, 'with-elf');
    mkdirSync(join(folder, 'bin'), { recursive: true });
    copyFileSync('/usr/sbin/bpftool', join(folder, 'bin', 'bpftool'));
    const spec = { exec: { command: './bin/bpftool version', files: ['bin'] } } as unknown as SuiteSpec;
    const o = suiteExecOptions({ name: 'with-elf', spec, source: join(folder, 'prog.bpf.c') })!;
    const p = await planExecOn('amd64', o);
    expect(p.plan.object).toEqual({ name: 'with-elf/bpftool', sha256: fileHash('/usr/sbin/bpftool') });
    // Debian's bpftool needs libcap.so.2, which the base layer lacks (docs/exec.md).
    expect(p.libraries.some((l) => /\/libcap\.so\.2$/.test(l)), p.libraries.join(', ')).toBe(true);
    const both = execImageFiles([p, await planExecOn('amd64', { command: 'bpftool version', files: ['/usr/sbin/bpftool'], timeoutMs: 1000 })]);
    expect(both.filter((f) => /libcap\.so\.2$/.test(f.path))).toHaveLength(1);
    // On arm64 kernels the x86-64 program is refused, naming the spec (docs/exec.md, "On arm64 kernels").
    await expect(planExecOn('arm64', { ...o, suite: { ...o.suite!, spec: 'x/with-elf/spec.yaml' } }, { kernels: ['6.1-arm64'] })).rejects.toThrow(
      new UsageError(`x/with-elf/spec.yaml: exec.files: ${join(folder, 'bin', 'bpftool')} is an x86_64 ELF file; arm64 kernels (6.1-arm64) cannot run it: a suite's files go to every kernel: ship a script that runs the build of \`uname -m\``),
    );
  });
});
