// Runtime self-test: the same checks on the host (vitest) and in every guest kernel. Each check
// talks to the real kernel with hand-assembled programs; results are plain JSON-able data.

import { addImm, assemble, call, exit, ldImm64, ldMapFd, movImm, movReg, R0, R1, R2, R3, R4, R5, R6, R10, stDW, stxDW, ldxDW, jeqImm } from './asm.js';
import { existsSync, readFileSync } from 'node:fs';
import { btfLoad, VerifierError, vmlinuxBtf } from './bpf.js';
import { AttachType, Helper, MapFlag, MapType, ProgType } from './consts.js';
import { attachKprobe, attachRawTracepoint, attachTracepoint, attachTracing, kprobePmu, tracefs, tracepointId } from './link.js';
import { kernelVersion, linuxKernelVersion, possibleCpus, readKernelConfig } from './facts.js';
import { openFdCount, openFds } from './fds.js';
import { BpfMap, readU32, readU64, u32, u64 } from './map.js';
import { PerfBufReader } from './perfbuf.js';
import { probeAll, TinyBtf } from './probe.js';
import { Program, type ProgramOptions } from './program.js';
import { RingBufReader } from './ringbuf.js';
import { close, onOneCpu } from './sys.js';

export interface SelfTestResult {
  name: string;
  ok: boolean;
  /** Not run: the kernel or environment lacks what the check needs (detail says what). */
  skipped?: boolean;
  detail?: string;
}

export interface SelfTestOptions {
  /**
   * Finds the vmlinux BTF type id of a kernel function (the caller parses /sys/kernel/btf/vmlinux
   * with the pure BTF reader; the runtime does no BTF parsing). Without it the fentry check is skipped.
   */
  kernelFuncBtfId?: (name: string) => number | undefined;
  /** Mount tracefs when it is not mounted (guests: yes; the host: no). */
  mountTracefs?: boolean;
}

/** Thrown by a check to report "skipped" with a reason. */
class Skip extends Error {}

/** An Ethernet-sized packet for skb test runs (5.10 wants at least ETH_HLEN bytes). */
const PACKET = new Uint8Array(64).fill(0xab);

function expectEq(what: string, got: unknown, want: unknown): void {
  const show = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)) ?? String(v);
  const g = show(got);
  const w = show(want);
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`);
}

type Check = [name: string, fn: (o: SelfTestOptions) => string | void | Promise<string | void>];

const checks: Check[] = [
  [
    'array map update/lookup/delete/iterate',
    () => {
      const m = BpfMap.create({ mapType: MapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 4, name: 'st_array' });
      try {
        m.update(u32(2), u64(0x1122334455667788n));
        expectEq('lookup', readU64(m.lookup(u32(2))!), 0x1122334455667788n);
        expectEq('keys', [...m.keys()].map((k) => readU32(k)), [0, 1, 2, 3]);
        expectEq('out of range lookup', m.lookup(u32(9)), undefined);
        const info = m.info();
        expectEq('info', [info.type, info.keySize, info.valueSize, info.maxEntries, info.name], [MapType.ARRAY, 4, 8, 4, 'st_array']);
        return `map id ${info.id}`;
      } finally {
        m.close();
      }
    },
  ],
  [
    'hash map delete and next key',
    () => {
      const m = BpfMap.create({ mapType: MapType.HASH, keySize: 4, valueSize: 4, maxEntries: 8, name: 'st_hash' });
      try {
        for (const k of [5, 6, 7]) m.update(u32(k), u32(k * 10));
        expectEq('delete present', m.delete(u32(6)), true);
        expectEq('delete absent', m.delete(u32(6)), false);
        const entries = [...m.entries()].map(([k, v]) => [readU32(k), readU32(v)]).sort((a, b) => a[0]! - b[0]!);
        expectEq('entries', entries, [[5, 50], [7, 70]]);
      } finally {
        m.close();
      }
    },
  ],
  [
    'map freeze blocks user writes',
    () => {
      const m = BpfMap.create({ mapType: MapType.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1, name: 'st_frozen' });
      try {
        m.update(u32(0), u32(1));
        m.freeze();
        try {
          m.update(u32(0), u32(2));
        } catch (e) {
          return `update after freeze: ${(e as { code?: string }).code}`;
        }
        throw new Error('update after freeze succeeded');
      } finally {
        m.close();
      }
    },
  ],
  [
    'per-CPU array holds one value per possible CPU',
    () => {
      const n = possibleCpus().length;
      const m = BpfMap.create({ mapType: MapType.PERCPU_ARRAY, keySize: 4, valueSize: 4, maxEntries: 1, name: 'st_percpu' });
      try {
        const v = new Uint8Array(8 * n);
        for (let c = 0; c < n; c++) v.set(u32(100 + c), 8 * c);
        m.update(u32(0), v);
        const got = m.lookup(u32(0))!;
        expectEq('values', Array.from({ length: n }, (_, c) => readU32(got, 8 * c)), Array.from({ length: n }, (_, c) => 100 + c));
        return `${n} CPUs`;
      } finally {
        m.close();
      }
    },
  ],
  [
    'mmap of a BPF_F_MMAPABLE array',
    () => {
      const m = BpfMap.create({ mapType: MapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 2, mapFlags: MapFlag.MMAPABLE, name: 'st_mmap' });
      try {
        const mem = m.mmap();
        try {
          mem.view.setBigUint64(8, 0xfeedn, true);
          expectEq('lookup sees mmap write', readU64(m.lookup(u32(1))!), 0xfeedn);
          m.update(u32(0), u64(77));
          expectEq('mmap sees update', mem.view.getBigUint64(0, true), 77n);
        } finally {
          mem.close();
        }
      } finally {
        m.close();
      }
    },
  ],
  [
    'socket filter returning 42 via BPF_PROG_TEST_RUN',
    () => {
      const p = Program.load({ progType: ProgType.SOCKET_FILTER, insns: assemble(movImm(R0, 42), exit()), license: 'GPL', name: 'st_ret42', logLevel: 1 });
      try {
        const r = p.testRun({ data: PACKET, repeat: 3 });
        expectEq('retval', r.retval, 42);
        const info = p.info();
        expectEq('xlated insns', info.xlatedLen, 16);
        expectEq('xlated bytes', [...info.xlated], [...assemble(movImm(R0, 42), exit())]);
        if (!p.verifierLog.includes('processed 2 insns')) throw new Error(`verifier log lacks 'processed 2 insns': ${p.verifierLog.slice(0, 120)}`);
        return `tag ${info.tag}, jited ${info.jitedLen} bytes${info.verifiedInsns !== undefined ? `, verified_insns ${info.verifiedInsns}` : ''}, duration ${r.duration} ns`;
      } finally {
        p.close();
      }
    },
  ],
  [
    'verifier rejection gives VerifierError with the log',
    () => {
      try {
        Program.load({ progType: ProgType.SOCKET_FILTER, insns: assemble(exit()), license: 'GPL', name: 'st_bad' }).close();
      } catch (e) {
        if (!(e instanceof VerifierError)) throw e;
        if (!e.log.includes('R0 !read_ok')) throw new Error(`log lacks 'R0 !read_ok': ${e.log.slice(0, 200)}`);
        if (e.message.includes('\n')) throw new Error('message is more than one line');
        return e.message;
      }
      throw new Error('an uninitialised R0 was accepted');
    },
  ],
  [
    'program reads and writes a map (ld_imm64 map fd)',
    () => {
      const m = BpfMap.create({ mapType: MapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 1, name: 'st_counter' });
      try {
        // r2 = &key(0); r0 = lookup(map, r2); if r0 == 0 return 0; *r0 += 1 (via ld/add/st); return *r0
        const insns = assemble(
          stDW(R10, -8, 0),
          movReg(R2, R10),
          addImm(R2, -8),
          ldMapFd(R1, m.fd),
          call(Helper.map_lookup_elem),
          jeqImm(R0, 0, 4),
          ldxDW(R1, R0, 0),
          addImm(R1, 1),
          stxDW(R0, 0, R1),
          movReg(R0, R1),
          exit(),
        );
        const p = Program.load({ progType: ProgType.SOCKET_FILTER, insns, license: 'GPL', name: 'st_count' });
        try {
          for (let i = 0; i < 3; i++) p.testRun({ data: PACKET });
          expectEq('counter', readU64(m.lookup(u32(0))!), 3n);
          const info = p.info();
          expectEq('map ids', info.mapIds, [m.info().id]);
        } finally {
          p.close();
        }
      } finally {
        m.close();
      }
    },
  ],
  [
    'ring buffer round trip (bpf_ringbuf_output from a test run)',
    async () => {
      const m = BpfMap.create({ mapType: MapType.RINGBUF, keySize: 0, valueSize: 0, maxEntries: 4096, name: 'st_ringbuf' });
      try {
        const insns = assemble(
          ldImm64(R1, 0x0102030405060708n),
          stxDW(R10, -8, R1),
          ldMapFd(R1, m.fd),
          movReg(R2, R10),
          addImm(R2, -8),
          movImm(R3, 8),
          movImm(R4, 0),
          call(Helper.ringbuf_output),
          exit(),
        );
        const p = Program.load({ progType: ProgType.SOCKET_FILTER, insns, license: 'GPL', name: 'st_rb_out' });
        const rb = new RingBufReader(m);
        try {
          for (let i = 0; i < 3; i++) expectEq('ringbuf_output ret', p.testRun({ data: PACKET }).retval, 0);
          const recs = await rb.poll(3, 1000);
          expectEq('records', recs.map((r) => readU64(r).toString(16)), ['102030405060708', '102030405060708', '102030405060708']);
          expectEq('pending after read', rb.pending(), 0);
          // 16-byte records (header + 8) one at a time: 400 of them go round the 4 KiB ring once
          // and a half, so records are read across the end of the data area too.
          for (let i = 0; i < 400; i++) {
            p.testRun({ data: PACKET });
            const one = rb.read();
            if (one.length !== 1 || readU64(one[0]!) !== 0x0102030405060708n) throw new Error(`record ${i + 3}: got ${one.length} records`);
          }
          return `${recs.length + 400} records, consumer at ${rb.consumerPos()}`;
        } finally {
          rb.close();
          p.close();
        }
      } finally {
        m.close();
      }
    },
  ],
  [
    'perf event array round trip (bpf_perf_event_output from a test run)',
    async () => {
      const n = possibleCpus().length;
      const m = BpfMap.create({ mapType: MapType.PERF_EVENT_ARRAY, keySize: 4, valueSize: 4, maxEntries: n, name: 'st_perf' });
      try {
        const insns = assemble(
          movReg(R6, R1),
          ldImm64(R1, 0x1122334455667788n),
          stxDW(R10, -8, R1),
          movReg(R1, R6),
          ldMapFd(R2, m.fd),
          ldImm64(R3, 0xffffffffn), // BPF_F_CURRENT_CPU
          movReg(R4, R10),
          addImm(R4, -8),
          movImm(R5, 8),
          call(Helper.perf_event_output),
          exit(),
        );
        const p = Program.load({ progType: ProgType.SOCKET_FILTER, insns, license: 'GPL', name: 'st_perf_out' });
        const pb = new PerfBufReader(m, { pagesPerCpu: 2 });
        try {
          for (let i = 0; i < 2; i++) expectEq('perf_event_output ret', p.testRun({ data: PACKET }).retval, 0);
          const recs = await pb.poll(2, 1000);
          const samples = recs.filter((r) => r.kind === 'sample');
          expectEq('samples', samples.map((r) => (r.kind === 'sample' ? readU64(r.data).toString(16) : '')), ['1122334455667788', '1122334455667788']);
          return `${samples.length} samples on CPU ${samples.map((s) => s.cpu).join(',')}`;
        } finally {
          pb.close();
          p.close();
        }
      } finally {
        m.close();
      }
    },
  ],
  [
    'map of maps (inner_map_fd); lookup gives the inner map id',
    () => {
      const inner = BpfMap.create({ mapType: MapType.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1, name: 'st_inner' });
      try {
        const outer = BpfMap.create({ mapType: MapType.ARRAY_OF_MAPS, keySize: 4, valueSize: 4, maxEntries: 1, innerMapFd: inner.fd, name: 'st_outer' });
        try {
          outer.update(u32(0), u32(inner.fd));
          expectEq('inner map id', readU32(outer.lookup(u32(0))!), inner.info().id);
        } finally {
          outer.close();
        }
      } finally {
        inner.close();
      }
    },
  ],
  [
    'ring buffer skips discarded records (reserve/discard/submit)',
    async () => {
      const m = BpfMap.create({ mapType: MapType.RINGBUF, keySize: 0, valueSize: 0, maxEntries: 4096, name: 'st_rb_discard' });
      try {
        const insns = assemble(
          ldMapFd(R1, m.fd),
          movImm(R2, 8),
          movImm(R3, 0),
          call(Helper.ringbuf_reserve),
          jeqImm(R0, 0, 13),
          movReg(R1, R0),
          movImm(R2, 0),
          call(Helper.ringbuf_discard),
          ldMapFd(R1, m.fd),
          movImm(R2, 8),
          movImm(R3, 0),
          call(Helper.ringbuf_reserve),
          jeqImm(R0, 0, 4),
          stDW(R0, 0, 0x5a5a),
          movReg(R1, R0),
          movImm(R2, 0),
          call(Helper.ringbuf_submit),
          movImm(R0, 0),
          exit(),
        );
        const p = Program.load({ progType: ProgType.SOCKET_FILTER, insns, license: 'GPL', name: 'st_rb_discard' });
        const rb = new RingBufReader(m);
        try {
          p.testRun({ data: PACKET });
          const recs = await rb.poll(1, 1000);
          expectEq('records', recs.map((r) => readU64(r)), [0x5a5an]);
          expectEq('discarded', rb.discarded, 1);
        } finally {
          rb.close();
          p.close();
        }
      } finally {
        m.close();
      }
    },
  ],
  [
    'perf buffer reports lost samples when its ring overflows',
    async () => {
      const n = possibleCpus().length;
      const m = BpfMap.create({ mapType: MapType.PERF_EVENT_ARRAY, keySize: 4, valueSize: 4, maxEntries: n, name: 'st_perf_lost' });
      try {
        const insns = assemble(
          movReg(R6, R1),
          stDW(R10, -8, 7),
          movReg(R1, R6),
          ldMapFd(R2, m.fd),
          ldImm64(R3, 0xffffffffn),
          movReg(R4, R10),
          addImm(R4, -8),
          movImm(R5, 8),
          call(Helper.perf_event_output),
          exit(),
        );
        const p = Program.load({ progType: ProgType.SOCKET_FILTER, insns, license: 'GPL', name: 'st_perf_lost' });
        const pb = new PerfBufReader(m, { pagesPerCpu: 1 });
        try {
          // On one CPU throughout: the scheduler could otherwise move this thread between the two
          // test runs, and the second would write into a ring that never overflowed (a loaded
          // host did that once).
          return onOneCpu((cpu) => {
            // One test run with repeat 1000 writes 1000 samples into a one-page ring without reading.
            const r1 = p.testRun({ data: PACKET, repeat: 1000 }).retval | 0;
            const first = pb.read();
            // The next write finds room again and first reports how many were dropped.
            const r2 = p.testRun({ data: PACKET }).retval | 0;
            const second = pb.read();
            const where = `(on CPU ${cpu}: helper returned ${r1} then ${r2}; read ${first.length} then ${second.length} records on CPUs ${[...new Set([...first, ...second].map((r) => r.cpu))].join(',')})`;
            const samples = [...first, ...second].filter((r) => r.kind === 'sample').length;
            const lost = [...first, ...second].reduce((a, r) => a + (r.kind === 'lost' ? r.lost : 0), 0);
            if (lost === 0) throw new Error(`no PERF_RECORD_LOST after 1001 samples into one page ${where}`);
            expectEq(`samples + lost ${where}`, samples + lost, 1001);
            return `${samples} samples, ${lost} lost`;
          });
        } finally {
          pb.close();
          p.close();
        }
      } finally {
        m.close();
      }
    },
  ],
  [
    'map with BTF key/value types (BPF_BTF_LOAD + btf_fd)',
    () => {
      const b = new TinyBtf();
      const int = b.int();
      const btf = btfLoad(b.bytes(), { label: 'selftest map BTF' });
      try {
        const m = BpfMap.create({ mapType: MapType.HASH, keySize: 4, valueSize: 4, maxEntries: 2, name: 'st_btfmap', btfFd: btf.fd, btfKeyTypeId: int, btfValueTypeId: int });
        try {
          const info = m.info();
          if (!info.btfId) throw new Error('map info has no btf_id');
          expectEq('key/value type ids', [info.btfKeyTypeId, info.btfValueTypeId], [int, int]);
          return `btf id ${info.btfId}`;
        } finally {
          m.close();
        }
      } finally {
        close(btf.fd);
      }
    },
  ],
  [
    'program with BTF func_info and line_info',
    () => {
      const b = new TinyBtf();
      const fn = b.func('st_btfprog', b.funcProto(b.int()));
      const file = b.str('/selftest/st.c');
      const line = b.str('return 42;');
      const btf = btfLoad(b.bytes(), { label: 'selftest prog BTF' });
      try {
        const funcInfo = new Uint8Array(8);
        new DataView(funcInfo.buffer).setUint32(4, fn, true); // { insn_off 0, type_id fn }
        const lineInfo = new Uint8Array(16);
        const lv = new DataView(lineInfo.buffer);
        lv.setUint32(4, file, true);
        lv.setUint32(8, line, true);
        lv.setUint32(12, (7 << 10) | 3, true); // line 7, column 3
        const p = Program.load({
          progType: ProgType.SOCKET_FILTER,
          insns: assemble(movImm(R0, 42), exit()),
          license: 'GPL',
          name: 'st_btfprog',
          progBtfFd: btf.fd,
          funcInfo,
          funcInfoRecSize: 8,
          lineInfo,
          lineInfoRecSize: 16,
        });
        try {
          expectEq('retval', p.testRun({ data: PACKET }).retval, 42);
          const info = p.info();
          if (!info.btfId) throw new Error('program info has no btf_id');
          return `btf id ${info.btfId}`;
        } finally {
          p.close();
        }
      } finally {
        close(btf.fd);
      }
    },
  ],
  [
    'raw tracepoint sys_enter counts syscalls; close detaches',
    () => withCounter(ProgType.RAW_TRACEPOINT, {}, (p, read, m) => {
      const link = attachRawTracepoint(p, 'sys_enter');
      try {
        for (let i = 0; i < 5; i++) m.lookup(u32(0));
      } finally {
        link.close();
      }
      const c1 = read();
      if (c1 < 5n) throw new Error(`counter ${c1} after 5 syscalls`);
      for (let i = 0; i < 5; i++) m.lookup(u32(0));
      expectEq('counter after detach', read(), c1);
      return `${c1} syscalls seen`;
    }),
  ],
  [
    'tracepoint bpf_test_run:bpf_test_finish via perf_event_open',
    (o) => {
      let id: number;
      try {
        tracefs({ mount: o.mountTracefs });
        id = tracepointId('bpf_test_run', 'bpf_test_finish');
      } catch (e) {
        throw new Skip((e as Error).message);
      }
      return withCounter(ProgType.TRACEPOINT, {}, (p, read) => {
        const link = attachTracepoint(p, 'bpf_test_run', 'bpf_test_finish');
        try {
          triggerTestRun(3);
        } finally {
          link.close();
        }
        expectEq('counter', read(), 3n);
        triggerTestRun(1);
        expectEq('counter after detach', read(), 3n);
        return `tracepoint id ${id}`;
      });
    },
  ],
  ...(['pmu', 'legacy'] as const).map(
    (how): Check => [
      `kprobe bpf_prog_test_run_skb (${how === 'pmu' ? 'kprobe PMU' : 'tracefs kprobe_events'})`,
      (o) => {
        if (how === 'pmu' && !kprobePmu()) throw new Skip('no kprobe PMU (/sys/bus/event_source/devices/kprobe)');
        if (how === 'legacy') {
          try {
            if (!existsSync(`${tracefs({ mount: o.mountTracefs })}/kprobe_events`)) throw new Skip('tracefs has no kprobe_events');
          } catch (e) {
            throw e instanceof Skip ? e : new Skip((e as Error).message);
          }
        }
        return withCounter(ProgType.KPROBE, { kernVersion: linuxKernelVersion() }, (p, read) => {
          const link = attachKprobe(p, 'bpf_prog_test_run_skb', { legacy: how === 'legacy' });
          try {
            triggerTestRun(4);
          } finally {
            link.close();
          }
          expectEq('counter', read(), 4n);
          triggerTestRun(1);
          expectEq('counter after detach', read(), 4n);
        });
      },
    ],
  ),
  [
    'fentry bpf_prog_test_run_skb via attach_btf_id',
    (o) => {
      const id = o.kernelFuncBtfId?.('bpf_prog_test_run_skb');
      if (!o.kernelFuncBtfId) throw new Skip('no kernel BTF resolver given');
      if (!id) throw new Error('bpf_prog_test_run_skb not found in vmlinux BTF');
      let via = '';
      return withCounter(ProgType.TRACING, { expectedAttachType: AttachType.TRACE_FENTRY, attachBtfId: id }, (p, read) => {
        const link = attachTracing(p, AttachType.TRACE_FENTRY, 'fentry bpf_prog_test_run_skb');
        via = link.via;
        try {
          triggerTestRun(2);
        } finally {
          link.close();
        }
        expectEq('counter', read(), 2n);
        triggerTestRun(1);
        expectEq('counter after detach', read(), 2n);
        return `btf id ${id}, attached with ${via}`;
      });
    },
  ],
  [
    'feature probes',
    () => {
      const f = probeAll();
      const bad = Object.entries(f).filter(([, v]) => v === 'unknown');
      if (bad.length) throw new Error(`probes left unknown: ${bad.map(([k]) => k).join(', ')}`);
      for (const must of ['map:ARRAY', 'map:HASH', 'prog:SOCKET_FILTER', 'helper:SOCKET_FILTER:map_lookup_elem', 'btf:base']) {
        if (f[must] !== 'supported') throw new Error(`${must} is ${f[must]}`);
      }
      return Object.entries(f).filter(([, v]) => v === 'missing').map(([k]) => k).join(' ') || 'nothing missing';
    },
  ],
  [
    "the kernel's BTF from bpf(BPF_OBJ_GET_INFO_BY_FD) is /sys/kernel/btf/vmlinux (5.11+)",
    () => {
      const file = '/sys/kernel/btf/vmlinux';
      if (!existsSync(file)) throw new Skip(`${file} does not exist (no CONFIG_DEBUG_INFO_BTF)`);
      // With a BTF object of our own in the kernel's table, so the look-up meets one that is not
      // the kernel's (before 5.11 the table may otherwise be empty).
      const b = new TinyBtf();
      b.int();
      const own = btfLoad(b.bytes(), { label: 'selftest BTF' });
      let got: Uint8Array | undefined;
      try {
        got = vmlinuxBtf();
      } finally {
        close(own.fd);
      }
      const v = linuxKernelVersion();
      // bpf_btf_info gained name and kernel_btf in 5.11: before, nothing says which object is vmlinux's.
      if (v < kernelVersion(5, 11, 0)) {
        expectEq('vmlinuxBtf() before 5.11', got, undefined);
        return 'before 5.11: undefined (the file is read instead)';
      }
      if (!got) throw new Error('no BTF object named vmlinux with kernel_btf set');
      const want = readFileSync(file);
      if (!want.equals(Buffer.from(got.buffer, got.byteOffset, got.byteLength))) throw new Error(`${got.length} bytes differ from ${file} (${want.length} bytes)`);
      return `${got.length} bytes, the same as ${file}`;
    },
  ],
  [
    'kernel facts: version code and config',
    () => {
      const v = linuxKernelVersion();
      const { path, config } = readKernelConfig();
      if (config.get('CONFIG_BPF_SYSCALL') !== 'y') throw new Error(`${path}: CONFIG_BPF_SYSCALL is ${config.get('CONFIG_BPF_SYSCALL')}`);
      return `LINUX_KERNEL_VERSION ${v >> 16}.${(v >> 8) & 255}.${v & 255}, ${config.size} options from ${path}`;
    },
  ],
];

/**
 * Loads a program of `progType` that adds 1 to a u64 counter in a one-slot array map and returns
 * 0, runs `fn(prog, readCounter, map)`, and closes both.
 */
function withCounter<T>(progType: number, extra: Partial<ProgramOptions>, fn: (p: Program, read: () => bigint, m: BpfMap) => T): T {
  const m = BpfMap.create({ mapType: MapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 1, name: 'st_count' });
  try {
    const insns = assemble(
      stDW(R10, -8, 0),
      movReg(R2, R10),
      addImm(R2, -8),
      ldMapFd(R1, m.fd),
      call(Helper.map_lookup_elem),
      jeqImm(R0, 0, 3),
      ldxDW(R1, R0, 0),
      addImm(R1, 1),
      stxDW(R0, 0, R1),
      movImm(R0, 0),
      exit(),
    );
    const p = Program.load({ progType, insns, license: 'GPL', name: 'st_counter', ...extra });
    try {
      return fn(p, () => readU64(m.lookup(u32(0))!), m);
    } finally {
      p.close();
    }
  } finally {
    m.close();
  }
}

/** Runs a socket filter through BPF_PROG_TEST_RUN `n` times (fires bpf_prog_test_run_skb). */
function triggerTestRun(n: number): void {
  const p = Program.load({ progType: ProgType.SOCKET_FILTER, insns: assemble(movImm(R0, 0), exit()), license: 'GPL', name: 'st_trigger' });
  try {
    for (let i = 0; i < n; i++) p.testRun({ data: PACKET });
  } finally {
    p.close();
  }
}

/** Runs every check against the running kernel; also fails if a check leaked an fd. */
export async function runtimeSelfTest(opts: SelfTestOptions = {}): Promise<SelfTestResult[]> {
  const out: SelfTestResult[] = [];
  for (const [name, fn] of checks) {
    const before = openFdCount();
    try {
      const detail = await fn(opts);
      const leaked = openFdCount() - before;
      if (leaked > 0) out.push({ name, ok: false, detail: `leaked ${leaked} fd(s): ${openFds().slice(-leaked).map((f) => `${f.kind} ${f.label}`).join(', ')}` });
      else out.push(detail ? { name, ok: true, detail } : { name, ok: true });
    } catch (e) {
      if (e instanceof Skip) out.push({ name, ok: true, skipped: true, detail: e.message });
      else out.push({ name, ok: false, detail: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
    }
  }
  return out;
}
