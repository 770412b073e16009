// Runtime tests against the host's real kernel (root, bpf() allowed). The same checks run in
// every guest kernel through runtimeSelfTest.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { addImm, assemble, call, exit, insn, movImm, R0 } from '../../harness/runtime/asm.js';
import { btfLoad, mapCreate, VerifierError } from '../../harness/runtime/bpf.js';
import { MapType, ProgType } from '../../harness/runtime/consts.js';
import { kallsymsLookup, KernelConfig, kernelVersion, kernelVersionFromRelease, linuxKernelVersion, parseCpuList, parseKernelConfig, readKernelConfig } from '../../harness/runtime/facts.js';
import { KernelStore } from '../../harness/kernels/store.js';
import { openFdCount, openFds } from '../../harness/runtime/fds.js';
import { BpfMap, u32 } from '../../harness/runtime/map.js';
import { FeatureMissingError, probeBtfKind, probeHelper, probeMapType, requireFeature, TinyBtf } from '../../harness/runtime/probe.js';
import { Program } from '../../harness/runtime/program.js';
import { runtimeSelfTest, type SelfTestResult } from '../../harness/runtime/selftest.js';
import { SyscallError } from '../../harness/runtime/sys.js';

afterAll(() => {
  expect(openFds()).toEqual([]);
});

describe('runtime self-test on the host kernel', () => {
  it('every check passes or is skipped for a stated reason', async () => {
    const results = await runtimeSelfTest();
    const failed = results.filter((r) => !r.ok);
    expect(failed).toEqual([]);
    // The checks that need nothing but bpf() must really have run here.
    const ran = results.filter((r) => !r.skipped).map((r) => r.name);
    for (const must of ['socket filter returning 42 via BPF_PROG_TEST_RUN', 'ring buffer round trip (bpf_ringbuf_output from a test run)', 'perf event array round trip (bpf_perf_event_output from a test run)', 'raw tracepoint sys_enter counts syscalls; close detaches'])
      expect(ran).toContain(must);
  });

  it('in a private mount namespace with tracefs and a BTF resolver, the tracepoint check runs too', () => {
    const script = fileURLToPath(new URL('./fixtures/run-selftest.ts', import.meta.url));
    const out = execFileSync('unshare', ['--mount', '--propagation', 'private', process.execPath, '--import', 'tsx', script], { encoding: 'utf8' });
    const results = JSON.parse(out.trim().split('\n').pop()!) as SelfTestResult[];
    const byName = new Map(results.map((r) => [r.name, r]));
    expect(byName.get('tracepoint bpf_test_run:bpf_test_finish via perf_event_open')).toMatchObject({ ok: true });
    expect(byName.get('tracepoint bpf_test_run:bpf_test_finish via perf_event_open')?.skipped).toBeUndefined();
    // This host kernel refuses BPF_PROG_TYPE_TRACING loads with EPERM (its policy, not ours); the
    // check must have tried (not skipped) and either passed or failed on exactly that.
    const fentry = byName.get('fentry bpf_prog_test_run_skb via attach_btf_id')!;
    expect(fentry.skipped).toBeUndefined();
    if (!fentry.ok) expect(fentry.detail).toMatch(/BPF_PROG_LOAD\): EPERM/);
    for (const r of results) if (r.name !== fentry.name) expect(r, `${r.name}: ${r.detail ?? ''}`).toMatchObject({ ok: true });
  }, 60_000);
});

describe('errors', () => {
  it('a bad map gives a one-line SyscallError with the errno name', () => {
    let err: unknown;
    try {
      mapCreate({ mapType: MapType.HASH, keySize: 0, valueSize: 4, maxEntries: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SyscallError);
    expect((err as SyscallError).code).toBe('EINVAL');
    expect((err as Error).message).toBe('bpf(BPF_MAP_CREATE): EINVAL (Invalid argument)');
  });

  it('a verifier rejection keeps the whole log and cuts the message to its reason', () => {
    let err: unknown;
    try {
      // r0 = helper #1 (map_lookup_elem) with R1 = ctx: the verifier names the bad argument.
      Program.load({ progType: ProgType.SOCKET_FILTER, insns: assemble(call(1), exit()), license: 'GPL', name: 'bad_arg' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VerifierError);
    const v = err as VerifierError;
    expect(v.code).toBe('EACCES');
    expect(v.message).not.toContain('\n');
    expect(v.message).toMatch(/^bpf\(BPF_PROG_LOAD\): EACCES \(Permission denied\): program 'bad_arg': /);
    expect(v.log).toMatch(/0: \(85\) call bpf_map_lookup_elem#1/);
    expect(v.lines.length).toBeGreaterThan(2);
  });

  it('a refusal that is not EACCES/EINVAL (E2BIG: a million instructions) is retried for the verifier\'s log, as libbpf does, and is a verifier rejection', () => {
    let err: unknown;
    const t0 = performance.now();
    try {
      // r0 = 0; loop: r0 += 1; if r0 != 0 goto loop; exit: every turn a new r0, so the verifier
      // walks until its million-instruction limit.
      Program.load({ progType: ProgType.SOCKET_FILTER, insns: assemble(movImm(R0, 0), addImm(R0, 1), insn(0x55, R0, 0, -2, 0), exit()), license: 'GPL', name: 'too_long' });
    } catch (e) {
      err = e;
    }
    console.log(`[measure] E2BIG load and its BPF_LOG_STATS retry: ${Math.round(performance.now() - t0)} ms`);
    expect(err).toBeInstanceOf(VerifierError);
    const v = err as VerifierError;
    expect(v.code).toBe('E2BIG');
    expect(v.log).toMatch(/BPF program is too large\. Processed 1000001 insn/);
    // Statistics only: no instruction trace (a level-1 log of a million instructions is huge).
    expect(v.log).not.toMatch(/^\d+: \(07\) r0 \+= 1/m);
  });

  it('a log buffer too small (ENOSPC) is grown until the log fits', () => {
    const insns = assemble(...Array.from({ length: 50 }, () => movImm(R0, 1)), exit());
    const p = Program.load({ progType: ProgType.SOCKET_FILTER, insns, license: 'GPL', logLevel: 2, logSize: 256 });
    try {
      expect(p.verifierLog.length).toBeGreaterThan(256);
      expect(p.verifierLog).toContain('processed 51 insns');
    } finally {
      p.close();
    }
  });

  it('rejected BTF carries the kernel BTF log', () => {
    const b = new TinyBtf();
    b.type(b.str('int'), 1 << 24, 4, 0x01000040); // INT of 64 bits in 4 bytes
    let err: unknown;
    try {
      btfLoad(b.bytes());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VerifierError);
    expect((err as VerifierError).log).toMatch(/nr_bits exceeds type_size|Invalid/i);
  });

  it('use after close is a UsageError; close is idempotent', () => {
    const m = BpfMap.create({ mapType: MapType.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1 });
    const before = openFdCount();
    m.close();
    m.close();
    expect(openFdCount()).toBe(before - 1);
    expect(() => m.lookup(u32(0))).toThrow(/used after close/);
  });
});

describe('probes', () => {
  it('find what this kernel has and what it lacks', () => {
    expect(probeBtfKind('base')).toBe('supported');
    expect(probeMapType('RINGBUF')).toBe('supported');
    expect(probeHelper(100_000)).toBe('missing');
    // skb_store_bytes exists for tc (SCHED_CLS) programs but not for socket filters.
    expect(probeHelper('skb_store_bytes', 'SOCKET_FILTER')).toBe('missing');
    expect(probeHelper('skb_store_bytes', 'SCHED_CLS')).toBe('supported');
    expect(() => requireFeature('helper:SOCKET_FILTER:#100000', probeHelper(100_000))).toThrow(FeatureMissingError);
  });

  it('name the minimum kernel version of a missing feature', () => {
    expect(new FeatureMissingError('btf:ENUM64', '6.0').message).toBe('kernel lacks btf:ENUM64 (needs Linux 6.0 or later)');
  });
});

describe('guest facts', () => {
  it('parse kernel config values', () => {
    const c = parseKernelConfig('# comment\nCONFIG_A=y\nCONFIG_B=m\nCONFIG_HZ=250\nCONFIG_X="a \\"q\\""\nCONFIG_H=0x1f\n# CONFIG_N is not set\n');
    expect([...c]).toEqual([['CONFIG_A', 'y'], ['CONFIG_B', 'm'], ['CONFIG_HZ', 250], ['CONFIG_X', 'a "q"'], ['CONFIG_H', 31]]);
    expect(() => parseKernelConfig('garbage\n', 'cfg')).toThrow(/cfg:1: not a CONFIG_X=value line/);
  });

  it('read config options on demand exactly as a full parse does', () => {
    const text = 'CONFIG_FIRST=y\n# CONFIG_N is not set\nCONFIG_HZ=250\nCONFIG_X="a \\"q\\""\nCONFIG_HZ=1000\nCONFIG_H=0x1f\nCONFIG_LAST=m';
    const lazy = new KernelConfig(text, 'cfg');
    expect(lazy.get('CONFIG_FIRST')).toBe('y');
    expect(lazy.get('CONFIG_HZ')).toBe(1000); // the last definition wins, as in the full parse
    expect(lazy.get('CONFIG_X')).toBe('a "q"');
    expect(lazy.get('CONFIG_H')).toBe(31);
    expect(lazy.get('CONFIG_LAST')).toBe('m'); // no newline at the end
    expect(lazy.get('CONFIG_N')).toBeUndefined();
    expect(lazy.get('CONFIG_H_')).toBeUndefined(); // a prefix of nothing
    expect(lazy.has('CONFIG_FIRST')).toBe(true);
    expect([...lazy]).toEqual([...parseKernelConfig(text)]);
    expect(lazy.size).toBe(parseKernelConfig(text).size);
    // A malformed line is an error when asked for, with its line number.
    expect(() => new KernelConfig('CONFIG_A=y\nCONFIG_S="open\n', 'cfg').get('CONFIG_S')).toThrow(/^cfg:2: unterminated string for CONFIG_S$/);
    // Every option of a real Debian config: the same value both ways.
    const art = new KernelStore().cached('6.1');
    if (!art) throw new Error('kernel 6.1 is not in the store (test/global-setup.ts fetches it)');
    const real = readFileSync(art.config, 'utf8');
    const full = parseKernelConfig(real);
    const onDemand = new KernelConfig(real);
    expect(full.size).toBeGreaterThan(5000);
    for (const [k, v] of full) expect(onDemand.get(k)).toBe(v);
  });

  it('read the running kernel config', () => {
    const { config } = readKernelConfig();
    expect(config.get('CONFIG_BPF_SYSCALL')).toBe('y');
    expect(typeof config.get('CONFIG_HZ')).toBe('number');
  });

  it('compute LINUX_KERNEL_VERSION like KERNEL_VERSION()', () => {
    expect(kernelVersion(5, 10, 300)).toBe((5 << 16) | (10 << 8) | 255);
    expect(kernelVersionFromRelease('5.10.226-1-amd64')).toBe(0x050ae2);
    expect(kernelVersionFromRelease('6.1.0-27-amd64')).toBe(0x060100);
    expect(kernelVersionFromRelease('7.2')).toBe(0x070200);
    // Debian: the release names the ABI, the version string the real sublevel (clamped to 255).
    expect(linuxKernelVersion({ release: '5.10.0-46-amd64', version: '#1 SMP Debian 5.10.262-1 (2026-07-31)' })).toBe(0x050aff);
    expect(linuxKernelVersion({ release: '6.1.0-50-amd64', version: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)' })).toBe(0x0601b0);
    const rel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
    const [a, b] = rel.split('.').map(Number) as [number, number];
    expect(kernelVersionFromRelease() >> 8).toBe((a << 8) | b);
  });

  it('look kernel symbols up in /proc/kallsyms', () => {
    const found = kallsymsLookup(['bpf_prog_test_run_skb', 'no_such_symbol_corematrix']);
    expect(found.get('bpf_prog_test_run_skb')?.type).toMatch(/^[tT]$/);
    expect(found.has('no_such_symbol_corematrix')).toBe(false);
  });

  it('parse CPU lists', () => {
    expect(parseCpuList('0-2,5,7-8\n')).toEqual([0, 1, 2, 5, 7, 8]);
  });
});

describe('object names', () => {
  it('are cut to what the kernel accepts instead of failing the load', () => {
    const p = Program.load({ progType: ProgType.SOCKET_FILTER, insns: assemble(movImm(R0, 1), exit()), license: 'GPL', name: 'handle/tp:sched-switch_long' });
    try {
      expect(p.info().name).toBe('handle_tp_sched');
    } finally {
      p.close();
    }
  });
});
