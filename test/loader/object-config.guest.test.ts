// An object written to be configured before load, configured by its `.yaml` as its tool would
// configure it, loaded by both loaders in real guests (5.10 and 6.1, TCG) through the matrix CLI:
// the condition picks the fentry program where the kernel's BTF has bpf_loop (6.1) and the kprobe
// where it has not (5.10), a bare SEC("fentry") gets its target, a map is resized and .rodata set.
// The same object without its config fails the bare fentry in both loaders, as libbpf would.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CellResult, RunReport } from '../../harness/results.js';
import { compileBpf } from '../helpers/tools.js';

const FIXTURES = resolve('test/loader/fixtures');
const headerHash = createHash('sha256').update(readFileSync(join(FIXTURES, 'object_config.h'))).digest('hex').slice(0, 12);
const dir = mkdtempSync(join(tmpdir(), 'cm-objcfg-guest-'));
let report: RunReport;
let out = '';

const CONFIG = `# opensnoop's shape: fentry where the kernel has a newer feature, else the kprobe
programs:
  on_open_fentry:
    autoload: { btf-function: bpf_loop }
  on_open_kprobe:
    autoload: { not: { btf-function: bpf_loop } }
  on_open_bare:
    attach: do_sys_openat2
maps:
  events: { max_entries: 5000 }
variables:
  targ_pid: 4242
  filter_comm: "bash"
`;

beforeAll(() => {
  const built = compileBpf(join(FIXTURES, 'object_config.bpf.c'), [`-DOBJECT_CONFIG_H_SHA=${headerHash}`]);
  const configured = join(dir, 'configured.bpf.o');
  const plain = join(dir, 'plain.bpf.o');
  copyFileSync(built, configured);
  copyFileSync(built, plain);
  writeFileSync(join(dir, 'configured.bpf.yaml'), CONFIG); // found beside the object
  const r = spawnSync(process.execPath, ['bin/corematrix.js', 'matrix', '--kernels', '5.10,6.1', '--suites', 'none', '--object', configured, '--object', plain, '--loader', 'both', '--jobs', '2', '--accel', 'tcg', '--out', join(dir, 'out')], { encoding: 'utf8', env: { ...process.env, CI: '1' } });
  out = `${r.stdout}\n${r.stderr.slice(-3000)}`;
  report = JSON.parse(readFileSync(join(dir, 'out', 'report.json'), 'utf8')) as RunReport;
}, 600_000);

const cells = (kernel: string, object: string, loader: 'ours' | 'libbpf'): Map<string, CellResult> =>
  new Map(report.kernels.find((k) => k.kernel.id === kernel)!.cells.filter((c) => c.object.name === object && c.loader === loader).map((c) => [c.program, c]));

describe('object config, applied in each guest, the same for both loaders (5.10, 6.1)', () => {
  it('both guests finish', () => {
    expect(report.kernels.map((k) => `${k.kernel.id}:${k.guest}`), out).toEqual(['5.10:ok', '6.1:ok']);
  });

  it('chooses the fentry program where the kernel has bpf_loop and the kprobe elsewhere; the other is not loaded by either loader', () => {
    const verdicts = (k: string) => Object.fromEntries([...cells(k, 'configured.bpf.o', 'ours')].map(([p, c]) => [p, c.verdict]));
    expect(verdicts('5.10')).toEqual({ on_open_kprobe: 'pass', on_open_fentry: 'expected-skip', on_open_bare: 'pass', on_enter_openat: 'pass', pass: 'pass' });
    expect(verdicts('6.1')).toEqual({ on_open_kprobe: 'expected-skip', on_open_fentry: 'pass', on_open_bare: 'pass', on_enter_openat: 'pass', pass: 'pass' });
    for (const k of ['5.10', '6.1']) {
      // libbpf's cells carry the comparison with ours: the same verdict and translated instructions.
      for (const [p, c] of cells(k, 'configured.bpf.o', 'libbpf')) expect(c.verdict, `${k} ${p}: ${c.reason}`).toBe('pass');
      expect(cells(k, 'configured.bpf.o', 'libbpf').size).toBe(5);
    }
  });

  it('every cell says what the config set on that kernel and which facts decided it', () => {
    const c = cells('5.10', 'configured.bpf.o', 'ours').get('on_open_kprobe')!;
    expect(c.config).toEqual(expect.arrayContaining([
      'program on_open_fentry: autoload true → false [btf-function bpf_loop: no]',
      'program on_open_kprobe: autoload stays true [btf-function bpf_loop: no]',
      'program on_open_bare: attach unset → do_sys_openat2',
      'map events: max_entries 262144 → 8192 (asked 5000: a ring buffer is a power-of-2 number of 4096-byte pages; libbpf rounds up the same way)',
    ]));
    expect(cells('6.1', 'configured.bpf.o', 'ours').get('on_open_fentry')!.config).toContain('program on_open_fentry: autoload stays true [btf-function bpf_loop: yes]');
  });

  it('without its config the bare fentry has no target, and both loaders refuse it', () => {
    for (const k of ['5.10', '6.1']) {
      const ours = cells(k, 'plain.bpf.o', 'ours');
      expect(ours.get('on_open_bare')!.verdict).toBe('fail');
      expect(ours.get('on_open_bare')!.config).toBeUndefined();
      const libbpf = cells(k, 'plain.bpf.o', 'libbpf').get('on_open_bare')!;
      expect(libbpf.verdict, libbpf.reason).toBe('pass'); // the same verdict: refused
      expect(libbpf.checks[0]!.observed).not.toBe('loaded');
    }
  });
});
