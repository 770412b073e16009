// What still disagrees between our loader and libbpf 1.8 in the whole kernel-selftests corpus on
// 7.3 (docs/results.md, "The whole selftests corpus on one kernel"), pinned object by object with
// libbpf's own words, so that a change on either side fails here.
//
// The eleven objects run as `matrix --corpus selftests` runs them (runMatrix's corpusObjects: an
// object our reader refuses is a failing cell of its own instead of stopping the run; the CLI's
// `--object` refuses such objects before boot), compiled from linux-source-7.3 with clang-19, on
// one kernel, 7.3, with `--loader both`: the product's own comparison, the cells the corpus run
// counts ("ours loaded, libbpf error: …"); where both refuse, the libbpf cell still carries
// libbpf's words and its verifier log.
//
// Per object, what libbpf does and why we differ (libbpf.c of linux-source-7.3's tools/lib/bpf):
//   btf_type_tag_user        the source has no SEC("license"). libbpf loads with its zeroed
//                            obj->license (""), a non-GPL program, and 7.3's verifier refuses the
//                            fentry program's read of `usockaddr->sa_family`: "Cannot access kernel
//                            'struct sockaddr' from non-GPL compatible program". Our loader passed
//                            "GPL" for an object without a license, and loaded it; it now passes
//                            the object's own (empty) license, and both refuse it alike.
//   test_xdp_devmap_tailcall xdp_devmap reads ctx->egress_ifindex, which only BPF_XDP_DEVMAP
//                            programs may (its selftest sets the attach type first): both refuse
//                            it. libbpf then loads xdp_entry alone, but xdp_map's `.values` names
//                            xdp_devmap, which is not loaded, and libbpf fails the object filling
//                            slot 0 after the verifier accepted xdp_entry. Ours loads programs one
//                            by one: xdp_entry loads (slot 0 left empty, said in a warning),
//                            attaches and runs. Our cells are per program: deliberate.
//   test_sk_assign           iproute2's legacy `maps` section (struct bpf_elf_map, for `tc`):
//                            libbpf refuses to open it since 1.0; ours reads legacy maps as
//                            cilium/ebpf does, and the tc program loads and runs. Deliberate.
//   linked_funcs1/2          halves of a static link (the Makefile's LINKED_SKELS): each calls a
//                            function the other defines. libbpf's open requires every extern to be
//                            in .kconfig or .ksyms and refuses; ours reads an extern function as a
//                            possible kfunc and, both programs being `SEC("?...")`, loads nothing.
//   linked_maps1/2,          an `extern` map in .maps: libbpf "unrecognized extern section
//   test_subskeleton_lib     '.maps'"; ours refuses the object too (the map has no symbol).
//   linked_vars1/2,          an extern variable defined by the other half (test_usdt.bpf.o for
//   test_usdt_multispec      my_pid): both refuse to open them, each in its own words.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { kernelSelftests, type KernelSelftests } from '../../harness/corpus/kernel-selftests.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { runMatrix } from '../../harness/matrix/run.js';
import { WHOLE_OBJECT, type CellResult, type KernelRun, type LoaderName } from '../../harness/results.js';
import { ensureBuilt } from '../helpers/tools.js';

const NAMES = [
  'btf_type_tag_user', 'test_xdp_devmap_tailcall', 'test_sk_assign',
  'linked_funcs1', 'linked_funcs2', 'linked_maps1', 'linked_maps2', 'linked_vars1', 'linked_vars2',
  'test_usdt_multispec', 'test_subskeleton_lib',
];

let corpus: KernelSelftests;
/** The 7.3 guest of each run: `--loader both`, `--loader libbpf`. */
const run: Partial<Record<'both', KernelRun>> = {};
const log: string[] = [];

beforeAll(async () => {
  ensureBuilt();
  corpus = await kernelSelftests({ only: (n) => NAMES.includes(n) });
  for (const loader of ['both'] as const) {
    const t0 = performance.now();
    const r = await runMatrix({
      kernels: ['7.3'], suites: [], corpusObjects: corpus.objects.map((o) => o.path), loader,
      jobs: 1, accel: 'tcg', outDir: mkdtempSync(join(tmpdir(), `cm-disagree-${loader}-`)), runId: `disagree-${loader}`, log: (l) => log.push(l),
    });
    run[loader] = r.kernels[0];
    console.log(`[measure] 7.3 --loader ${loader}, ${corpus.objects.length} objects: ${Math.round(performance.now() - t0)} ms (guest ${Math.round(r.kernels[0]?.durationMs ?? 0)} ms)`);
  }
}, 900_000);

/** The one cell of `loader` for `object` (its base name) and `program`. */
function cell(loader: 'both', who: LoaderName, object: string, program: string): CellResult {
  const k = run[loader]!;
  const found = k.cells.filter((c) => c.loader === who && c.object?.name === `${object}.bpf.o` && c.program === program);
  expect(found.length, `${loader} run: ${who} ${object} ${program}`).toBe(1);
  return found[0]!;
}

/** libbpf's status against ours in a `both` cell: what the corpus run counts. */
const compared = (c: CellResult) => ({ verdict: c.verdict, libbpf: c.checks[0]?.observed, ours: c.checks[0]?.truth });

describe('the selftests objects libbpf 1.8 and our loader still disagree on, 7.3', () => {
  it('compiles the eleven objects and runs both guests', () => {
    expect(corpus.objects.map((o) => o.name).sort()).toEqual([...NAMES].sort());
    for (const loader of ['both'] as const) expect(run[loader]?.guest, `${loader}: ${run[loader]?.detail}\n${log.slice(-20).join('\n')}`).toBe('ok');
    // Every cell of the `both` run, nothing more: the disagreements are the libbpf cells that fail.
    const table = run.both!.cells.map((c) => `${c.loader} ${c.object!.name.replace(/\.bpf\.o$/, '')} ${c.program}: ${c.verdict}`).sort();
    expect(table).toEqual([
      'libbpf btf_type_tag_user test_sys_getsockname: pass',
      'libbpf btf_type_tag_user test_user1: pass',
      'libbpf btf_type_tag_user test_user2: pass',
      'libbpf linked_funcs1 handler1: fail',
      'libbpf linked_funcs2 handler2: fail',
      `libbpf linked_maps1 ${WHOLE_OBJECT}: pass`,
      `libbpf linked_maps2 ${WHOLE_OBJECT}: pass`,
      `libbpf linked_vars1 ${WHOLE_OBJECT}: pass`,
      `libbpf linked_vars2 ${WHOLE_OBJECT}: pass`,
      'libbpf test_sk_assign bpf_sk_assign_test: fail',
      `libbpf test_subskeleton_lib ${WHOLE_OBJECT}: pass`,
      `libbpf test_usdt_multispec ${WHOLE_OBJECT}: pass`,
      'libbpf test_xdp_devmap_tailcall xdp_devmap: pass',
      'libbpf test_xdp_devmap_tailcall xdp_entry: fail',
      'ours btf_type_tag_user test_sys_getsockname: fail',
      'ours btf_type_tag_user test_user1: fail',
      'ours btf_type_tag_user test_user2: fail',
      'ours linked_funcs1 handler1: expected-skip',
      'ours linked_funcs2 handler2: expected-skip',
      `ours linked_maps1 ${WHOLE_OBJECT}: fail`,
      `ours linked_maps2 ${WHOLE_OBJECT}: fail`,
      `ours linked_vars1 ${WHOLE_OBJECT}: fail`,
      `ours linked_vars2 ${WHOLE_OBJECT}: fail`,
      'ours test_sk_assign bpf_sk_assign_test: pass',
      `ours test_subskeleton_lib ${WHOLE_OBJECT}: fail`,
      `ours test_usdt_multispec ${WHOLE_OBJECT}: fail`,
      'ours test_xdp_devmap_tailcall xdp_devmap: fail',
      'ours test_xdp_devmap_tailcall xdp_entry: pass',
    ]);
  });

  it('btf_type_tag_user: no license section; both load it as non-GPL, and the verifier refuses the read', () => {
    const path = corpus.objects.find((o) => o.name === 'btf_type_tag_user')!.path;
    // The cause, read on the host: the object has no `license` section.
    expect(loadObjectSpec(readFileSync(path), path).license).toBe('');
    // fentry/__sys_getsockname: both load it as a non-GPL program, and the verifier refuses both.
    const lib = cell('both', 'libbpf', 'btf_type_tag_user', 'test_sys_getsockname');
    expect(compared(lib)).toEqual({ verdict: 'pass', libbpf: 'rejected', ours: 'rejected' });
    const ours = cell('both', 'ours', 'btf_type_tag_user', 'test_sys_getsockname');
    expect(ours.reason).toBe("rejected: verifier rejected it: Cannot access kernel 'struct sockaddr' from non-GPL compatible program");
    expect(ours.attach).toBeUndefined();
    // The libbpf cell carries libbpf's words and its verifier log, though both agree.
    expect(lib.reason).toMatch(/^both refuse it; libbpf 1\.8\.\d+ \(.*\): rejected: verifier rejected it: Cannot access kernel 'struct sockaddr' from non-GPL compatible program$/);
    expect(lib.verifier?.logTail).toContain("Cannot access kernel 'struct sockaddr' from non-GPL compatible program");
    expect(lib.verifier?.insnsProcessed).toBe(2);
    expect(ours.verifier?.insnsProcessed).toBe(2);
    // The other two target bpf_testmod, which the guest does not have: both fail, in their words.
    for (const p of ['test_user1', 'test_user2']) {
      const n = p.slice(-1);
      expect(compared(cell('both', 'libbpf', 'btf_type_tag_user', p))).toEqual({ verdict: 'pass', libbpf: 'error', ours: 'error' });
      expect(cell('both', 'ours', 'btf_type_tag_user', p).reason).toBe(`error: program '${p}': attach target bpf_testmod_test_btf_type_tag_user_${n} is not in the kernel's or its loaded modules' BTF`);
      expect(cell('both', 'libbpf', 'btf_type_tag_user', p).reason).toMatch(new RegExp(`: error: No such process \\(-3\\): prog '${p}': failed to find kernel BTF type ID of 'bpf_testmod_test_btf_type_tag_user_${n}': -ESRCH; failed to load object 'btf_type_tag_user\\.bpf\\.o'$`));
    }
  });

  it('test_xdp_devmap_tailcall: both refuse xdp_devmap; libbpf cannot load xdp_entry without it (prog-array slot), ours loads and runs it', () => {
    const devmap = cell('both', 'libbpf', 'test_xdp_devmap_tailcall', 'xdp_devmap');
    expect(compared(devmap)).toEqual({ verdict: 'pass', libbpf: 'rejected', ours: 'rejected' });
    expect(cell('both', 'ours', 'test_xdp_devmap_tailcall', 'xdp_devmap').reason).toBe('rejected: verifier rejected it: invalid bpf_context access off=20 size=4');
    expect(cell('both', 'libbpf', 'test_xdp_devmap_tailcall', 'xdp_devmap').verifier?.logTail).toContain('invalid bpf_context access off=20 size=4');
    const entry = cell('both', 'libbpf', 'test_xdp_devmap_tailcall', 'xdp_entry');
    expect(compared(entry)).toEqual({ verdict: 'fail', libbpf: 'error', ours: 'loaded' });
    expect(entry.reason).toBe("xdp_entry: ours loaded, libbpf error: libbpf cannot load it alone (per-program attribution after the whole object failed): map 'xdp_map': failed to initialize slot [0] to prog 'xdp_devmap' fd=-2: -EBADF");
    const ours = cell('both', 'ours', 'test_xdp_devmap_tailcall', 'xdp_entry');
    expect(ours.attach?.status).toBe('attached');
    expect(ours.attach?.runCount).toBeGreaterThan(0);
  });

  it("test_sk_assign: libbpf refuses iproute2's legacy `maps` section; ours reads it and the tc program runs", () => {
    const lib = cell('both', 'libbpf', 'test_sk_assign', 'bpf_sk_assign_test');
    expect(compared(lib)).toEqual({ verdict: 'fail', libbpf: 'error', ours: 'loaded' });
    expect(lib.reason).toBe("bpf_sk_assign_test: ours loaded, libbpf error: libbpf cannot open test_sk_assign.bpf.o: Operation not supported (95): elf: legacy map definitions in 'maps' section are not supported by libbpf v1.0+");
    const ours = cell('both', 'ours', 'test_sk_assign', 'bpf_sk_assign_test');
    expect(ours.attach).toMatchObject({ status: 'attached', target: 'tc lo ingress' });
    expect(ours.attach?.runCount).toBeGreaterThan(0);
  });

  it('linked_funcs1/2: libbpf cannot open a half whose extern function the other half defines; ours opens it and loads nothing (autoload off)', () => {
    for (const [half, other] of [['1', '2'], ['2', '1']] as const) {
      const object = `linked_funcs${half}`;
      const program = `handler${half}`;
      expect(cell('both', 'ours', object, program).reason).toBe('not-loaded: autoload is off');
      const lib = cell('both', 'libbpf', object, program);
      expect(compared(lib)).toEqual({ verdict: 'fail', libbpf: 'error', ours: 'not-loaded' });
      expect(lib.reason).toMatch(new RegExp(`^${program}: ours not-loaded \\(autoload is off\\), libbpf error \\(libbpf cannot open ${object}\\.bpf\\.o: No such file or directory \\(2\\): failed to find BTF for extern 'set_output_val${other}' \\[\\d+\\] section: -2\\)$`));
    }
  });

  it('linked_maps1/2, linked_vars1/2, test_usdt_multispec, test_subskeleton_lib: both refuse to open them, each in its own words', () => {
    const refusals: [string, string, string][] = [
      // [object, ours, libbpf]
      ['linked_maps1', "map 'map2' has no symbol in .maps", "Operation not supported (95): unrecognized extern section '.maps'"],
      ['linked_maps2', "map 'map1' has no symbol in .maps", "Operation not supported (95): unrecognized extern section '.maps'"],
      ['test_subskeleton_lib', "map 'map2' has no symbol in .maps", "Operation not supported (95): unrecognized extern section '.maps'"],
      ['linked_vars1', "undefined symbol 'input_data2' is neither a __kconfig nor a __ksym extern", "No such file or directory (2): failed to find BTF for extern 'input_data2' [#] section: -2"],
      ['linked_vars2', "undefined symbol 'input_bss1' is neither a __kconfig nor a __ksym extern", "No such file or directory (2): failed to find BTF for extern 'input_bss1' [#] section: -2"],
      ['test_usdt_multispec', "undefined symbol 'my_pid' is neither a __kconfig nor a __ksym extern", "No such file or directory (2): failed to find BTF for extern 'my_pid' [#] section: -2"],
    ];
    const pattern = (s: string) => new RegExp(`${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace('\\[#\\]', '\\[\\d+\\]')}$`);
    for (const [object, ours, libbpf] of refusals) {
      expect(cell('both', 'ours', object, WHOLE_OBJECT).reason).toBe(`${object}.bpf.o: ${ours}`);
      // The `both` cell holds libbpf's refusal against ours: the same, so it passes, in libbpf's words.
      const lib = cell('both', 'libbpf', object, WHOLE_OBJECT);
      expect(compared(lib)).toEqual({ verdict: 'pass', libbpf: 'error', ours: 'error' });
      expect(lib.reason).toMatch(pattern(`libbpf cannot open ${object}.bpf.o: ${libbpf}`));
      expect(lib.reason).toMatch(/^both refuse it; /);
    }
  });
});
