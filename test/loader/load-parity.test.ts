// Three programs the whole selftests corpus on 7.3 showed libbpf loading and ours refusing, each
// reduced to its cause (fixtures/load_parity.bpf.c): an exception callback nothing calls
// (exceptions.c: "exception callback type id not found in func_info"), a task-storage inner map
// template (local_storage_bench.c: EINVAL) and an inner hash of timers in an initialised outer
// array (timer_mim.c: EINVAL). libbpf in the same 7.3 guest is the witness: both loaders load every
// program, and the kernel's translated code is the same.
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { linkProgram } from '../../harness/core/object/link.js';
import type { RunReport } from '../../harness/results.js';
import { runMatrixCli } from '../helpers/matrix-cli.js';
import { compileBpf, ensureBuilt } from '../helpers/tools.js';

const tmp = mkdtempSync(join(tmpdir(), 'cm-load-parity-'));
let object: string;
let report: RunReport;
let out = '';

beforeAll(() => {
  ensureBuilt();
  object = join(tmp, 'load_parity.bpf.o');
  copyFileSync(compileBpf(fileURLToPath(new URL('fixtures/load_parity.bpf.c', import.meta.url))), object);
  ({ report, out } = runMatrixCli(['--kernels', '7.3', '--suites', 'none', '--object', object, '--loader', 'both'], join(tmp, 'out')));
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('what libbpf does at load', () => {
  it('appends the exception callback a program names in a decl tag, unless the kernel has no decl tags', () => {
    const spec = loadObjectSpec(readFileSync(object), 'load_parity.bpf.o');
    expect(linkProgram(spec, 'throwing').layout.map((f) => f.name)).toEqual(['throwing', 'parity_exception_cb']);
    expect(linkProgram(spec, 'throwing').funcInfo).toHaveLength(2);
    expect(linkProgram(spec, 'throwing', { exceptionCallbacks: false }).layout.map((f) => f.name)).toEqual(['throwing']);
    expect(linkProgram(spec, 'arm_timer').layout.map((f) => f.name)).toEqual(['arm_timer']);
  });

  it.each(['throwing', 'count_in_storage', 'arm_timer'])('%s loads on 7.3 for both loaders, with the same translated code', (program) => {
    const k = report.kernels[0]!;
    expect(k.guest, out).toBe('ok');
    const ours = k.cells.find((c) => c.loader !== 'libbpf' && c.program === program)!;
    expect(ours.verdict, ours.reason).toBe('pass');
    const lib = k.cells.find((c) => c.loader === 'libbpf' && c.program === program)!;
    expect(lib.checks[0], lib.reason).toMatchObject({ observed: 'loaded', truth: 'loaded', ok: true });
    expect(lib.verdict, lib.reason).toBe('pass');
  });
});
