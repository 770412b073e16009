// A user's own object that uses types only a kernel module has (--object with --module): the
// module is loaded in the guest, and the object's relocations find the types in its BTF; without
// --module they cannot; a kernel whose package lacks the module runs without it, saying so.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runMatrix } from '../../harness/matrix/run.js';
import { buildSuites, hostTruth } from '../../harness/suites/build.js';
import { ensureBuilt } from '../helpers/tools.js';

describe('--object with --module in real guests (TCG)', () => {
  it('6.1 relocates the object against tun.ko\'s BTF; without --module the same object fails; 6.12-nonetns has no tun', async () => {
    ensureBuilt();
    const [mod] = await buildSuites({ names: ['module-btf'] });
    const logs: string[] = [];
    const run = (modules: string[] | undefined, kernels: string[]) =>
      runMatrix({ kernels, suites: [], objects: [mod!.object], ...(modules ? { modules } : {}), jobs: 1, accel: 'tcg', outDir: mkdtempSync(join(tmpdir(), 'cm-objmod-')), runId: 'objmod', log: (l) => logs.push(l) });
    const [withTun, without] = await Promise.all([run(['tun'], ['6.1', '6.12-nonetns']), run(undefined, ['6.1'])]);
    const cell = (r: typeof withTun, id: string) => r.kernels.find((k) => k.kernel.id === id)!.cells[0]!;
    const ok = cell(withTun, '6.1');
    expect(ok.verdict, ok.reason).toBe('pass');
    const tun = ok.relocations.filter((x) => x.type.startsWith('struct tun_'));
    expect(tun.length).toBeGreaterThan(5);
    for (const x of tun) expect(x.status, `${x.kind} ${x.type}.${x.spec}`).toBe('ok');
    // bpftool reading tun.ko's BTF on 6.1's (hostTruth) is the witness for the size.
    const truth = await hostTruth('6.1', { keys: ['size.struct.tun_file'], modules: ['tun'] });
    expect(truth['size.struct.tun_file']).toBeGreaterThan(0);
    expect(tun.find((x) => x.kind === 'type_size' && x.type === 'struct tun_file___cm')!.target).toBe(truth['size.struct.tun_file']);
    // The same object without the module: its reads of tun's fields are poisoned and reachable.
    const bad = cell(without, '6.1');
    expect(bad.verdict).toBe('fail');
    expect(bad.relocations.filter((x) => x.type.startsWith('struct tun_') && x.kind === 'byte_off').every((x) => x.status === 'poisoned')).toBe(true);
    // A kernel built without tun boots anyway (the object then fails there, as without
    // --module), and the run says why the module is missing.
    expect(cell(withTun, '6.12-nonetns').verdict).toBe('fail');
    expect(withTun.kernels.find((k) => k.kernel.id === '6.12-nonetns')!.guest).toBe('ok'); // a failed program is not a failed guest
    expect(logs.filter((l) => l.startsWith('[6.12-nonetns] module tun not loaded: '))).toEqual([expect.stringMatching(/: a custom build ships no modules \(wanted tun\)/)]);
  }, 600_000);
});
