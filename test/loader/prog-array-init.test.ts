// A prog array filled by its declaration (`.values = { [0] = &prog }`) on this machine's kernel:
// our loader puts each program's fd in its slot once the programs have loaded, as libbpf 1.8 does
// (init_prog_array_slots), and the kernel's own test run of the tail-calling program is the
// witness (XDP_TX from the target, XDP_PASS when its slot is empty). libbpf, loading the same
// object in the same process, answers the same; where a slot's program is not loaded (autoload
// off), libbpf fails the whole object (EBADF) and ours leaves that slot empty and says so, its
// other programs loaded: our cells are per program.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseBtf, type Btf } from '../../harness/core/btf/btf.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { Collection } from '../../harness/loader/collection.js';
import { currentLibbpf } from '../../harness/reference/build.js';
import { loadWithLibbpf, type ReferenceLibrary } from '../../harness/reference/libbpf.js';
import { libbpfProgramFd } from '../../harness/reference/libbpf-attach.js';
import { linuxKernelVersion, Program } from '../../harness/runtime/index.js';
import { compileBpf } from '../helpers/tools.js';

const vmlinux = '/sys/kernel/btf/vmlinux';
const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3 } as const;
const packet = { data: new Uint8Array(64) };

let bytes: Uint8Array;
let kernelBtf: Btf;
let library: ReferenceLibrary;

beforeAll(async () => {
  bytes = readFileSync(compileBpf(fileURLToPath(new URL('fixtures/prog_array_init.bpf.c', import.meta.url))));
  kernelBtf = parseBtf(readFileSync(vmlinux));
  const lib = await currentLibbpf();
  library = { so: lib.so, version: lib.version, source: lib.source };
}, 600_000);

/** Our loader's load of the fixture (`spare` autoloaded when asked), the return value of each entry's test run, and its notes. */
function ours(loadSpare: boolean): { entry: number; entrySpare: number; notes: string[]; statuses: string[] } {
  const spec = loadObjectSpec(bytes, 'prog_array_init.bpf.o');
  if (loadSpare) spec.programs.find((p) => p.name === 'spare')!.autoload = true;
  const coll = new Collection(spec);
  try {
    coll.load({ kernelBtf, kernelBtfName: vmlinux, kconfig: { config: new Map(), linuxKernelVersion: linuxKernelVersion() } });
    const run = (name: string) => coll.programs.get(name)!.testRun(packet).retval;
    return { entry: run('entry'), entrySpare: run('entry_spare'), notes: [...coll.slotNotes], statuses: coll.outcomes.map((o) => `${o.name} ${o.status}`).sort() };
  } finally {
    coll.close();
  }
}

describe.runIf(existsSync(vmlinux))('a prog array filled by its declaration, on the host kernel', () => {
  it('ours fills every slot whose program loaded: the tail calls reach their targets, as libbpf\'s do', () => {
    const o = ours(true);
    expect(o.statuses).toEqual(['entry loaded', 'entry_spare loaded', 'spare loaded', 'target loaded']);
    expect(o).toMatchObject({ entry: XDP.TX, entrySpare: XDP.DROP, notes: [] });
    // libbpf, told to load `spare` too (bpf_program__set_autoload), loads the whole object and fills both slots.
    const ref = loadWithLibbpf(bytes, 'prog_array_init.bpf.o', { library, configure: { autoload: { spare: true } } });
    try {
      expect(ref.outcomes.map((x) => `${x.name} ${x.status}`).sort()).toEqual(o.statuses);
      const run = (name: string) => new Program(libbpfProgramFd(ref, name)!, 0, name, '').testRun(packet).retval;
      expect({ entry: run('entry'), entrySpare: run('entry_spare') }).toEqual({ entry: XDP.TX, entrySpare: XDP.DROP });
    } finally {
      ref.close();
    }
  });

  it('a slot whose program is not loaded: libbpf fails the object filling it, ours leaves it empty and says so', () => {
    const o = ours(false);
    expect(o.statuses).toEqual(['entry loaded', 'entry_spare loaded', 'spare not-loaded', 'target loaded']);
    expect(o).toMatchObject({ entry: XDP.TX, entrySpare: XDP.ABORTED });
    expect(o.notes).toEqual(["map 'jumps': slot 1 is left empty: its program 'spare' did not load (libbpf fails the whole object here: EBADF)"]);
    // libbpf: the whole load fails at slot 1; then one program at a time, each fails at the first
    // slot whose program is not that one (slot 0's target, or, loading target itself, slot 1's).
    const ref = loadWithLibbpf(bytes, 'prog_array_init.bpf.o', { library });
    try {
      for (const x of ref.outcomes.filter((r) => r.name !== 'spare')) {
        expect(x.status, x.name).toBe('error');
        const [slot, prog] = x.name === 'target' ? [1, 'spare'] : [0, 'target'];
        expect(x.reason, x.name).toBe(`libbpf cannot load it alone (per-program attribution after the whole object failed): map 'jumps': failed to initialize slot [${slot}] to prog '${prog}' fd=-2: -EBADF`);
      }
      expect(ref.outcomes.find((r) => r.name === 'spare')).toMatchObject({ status: 'not-loaded' });
    } finally {
      ref.close();
    }
  });
});
