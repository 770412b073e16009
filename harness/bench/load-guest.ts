// Guest side of the bench's whole-object load comparison (harness/bench/corpus.ts boots it as the
// guest's agent, `cm.agent=`): every object of /cm/bench/load.json loaded whole by our loader
// (parse, then Collection.load: relocate, BTF, maps, every program) and by the current libbpf
// (bpf_object__open_mem + bpf_object__load, as the reference loader does it), back to back in
// this guest, the order alternating from object to object so that a change in the host's load
// weighs on both loaders alike; `rounds` times. Nothing is attached. One `result` record, kind BENCH_LOAD_KIND.
// This file runs on import: it is the guest's entry point.
import { openSync, readFileSync, writeSync } from 'node:fs';
import { decodeBtfIndex, parseBtf } from '../core/btf/btf.js';
import { loadObjectSpec } from '../core/object/load.js';
import { Collection } from '../loader/collection.js';
import { encodeMessage, PROTOCOL_VERSION, type GuestMessage } from '../protocol.js';
import { loadWithLibbpf } from '../reference/libbpf.js';
import { progLoadStats } from '../runtime/bpf.js';
import { kallsymsLookup, linuxKernelVersion, readKernelConfig, unameRelease } from '../runtime/index.js';
import { BENCH_LOAD_INPUT, BENCH_LOAD_KIND, type BenchLoadInput, type BenchLoadRow, type LoaderTiming } from './load-record.js';

const STATUS_WHOLE = new Set(['loaded', 'not-loaded']);

const port = openSync('/dev/ttyS1', 'w');
const say = (m: GuestMessage) => writeSync(port, encodeMessage(m));
const uptime = () => Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000);
const t0 = performance.now();

function main(): void {
  say({ t: 'hello', v: PROTOCOL_VERSION, release: unameRelease(), machine: process.arch === 'x64' ? 'x86_64' : process.arch, bootMs: uptime() });
  const input = JSON.parse(readFileSync(BENCH_LOAD_INPUT, 'utf8')) as BenchLoadInput;
  const release = unameRelease();
  // Opened as the agent opens it in a run: from the host's index when the bytes are the ones it indexed.
  const bytes = readFileSync('/sys/kernel/btf/vmlinux');
  const ix = input.btfIndex;
  const indexed = ix && bytes.equals(readFileSync(ix.btf)) ? { findNames: ix.names, index: decodeBtfIndex(readFileSync(ix.index), ix.index) } : {};
  if (ix && !('index' in indexed)) say({ t: 'log', level: 'warn', msg: `bench load guest: /sys/kernel/btf/vmlinux differs from ${ix.btf}; parsed without the host's index` });
  const kernelBtf = parseBtf(bytes, { source: '/sys/kernel/btf/vmlinux', ...indexed });
  const kconfig = { config: readKernelConfig(release).config, linuxKernelVersion: linuxKernelVersion() };

  const ours = (path: string, name: string): LoaderTiming => {
    const a = performance.now();
    const v0 = progLoadStats.ms;
    let coll: Collection | undefined;
    try {
      coll = new Collection(loadObjectSpec(readFileSync(path), name));
      coll.load({ kernelBtf, kernelBtfName: '/sys/kernel/btf/vmlinux', kconfig, kallsyms: (names) => kallsymsLookup(names) });
      const ms = performance.now() - a;
      const loaded = coll.outcomes.filter((o) => o.status === 'loaded').length;
      return { ms, progLoadMs: progLoadStats.ms - v0, loaded, whole: loaded > 0 && coll.outcomes.every((o) => STATUS_WHOLE.has(o.status)) };
    } catch (e) {
      return { ms: performance.now() - a, progLoadMs: progLoadStats.ms - v0, loaded: 0, whole: false, error: (e as Error).message.split('\n')[0] };
    } finally {
      coll?.close();
    }
  };
  // libbpf's whole load (open + configure + load) carries one time on every loaded program; when it
  // fails, libbpf's programs are tried one at a time, each with its own time: not a whole load.
  const libbpf = (path: string, name: string): LoaderTiming => {
    try {
      const r = loadWithLibbpf(readFileSync(path), name, { library: input.libbpf });
      r.close();
      const loaded = r.outcomes.filter((o) => o.status === 'loaded');
      const times = new Set(loaded.map((o) => o.loadMs));
      return { ms: loaded[0]?.loadMs ?? 0, loaded: loaded.length, whole: times.size === 1 && r.outcomes.every((o) => STATUS_WHOLE.has(o.status)) };
    } catch (e) {
      return { ms: 0, loaded: 0, whole: false, error: (e as Error).message.split('\n')[0] };
    }
  };

  // Each loader's one-time costs (libbpf's dlopen and feature probes, our probes) before timing.
  const first = input.objects[0];
  if (first) {
    ours(first.path, 'warm-up');
    libbpf(first.path, 'warm-up');
  }
  const rows: BenchLoadRow[] = input.objects.map((o) => ({ unit: o.unit, ours: [], libbpf: [] }));
  const beat = () => say({ t: 'hb', ms: uptime() });
  for (let round = 0; round < input.rounds; round++) {
    input.objects.forEach((o, i) => {
      const name = o.unit.replace(/^object:/, '');
      const row = rows[i]!;
      beat();
      say({ t: 'step', step: { unit: o.unit, object: name, phase: 'load', index: i + 1, total: input.objects.length } });
      if ((i + round) % 2 === 0) {
        row.ours.push(ours(o.path, name));
        row.libbpf.push(libbpf(o.path, name));
      } else {
        row.libbpf.push(libbpf(o.path, name));
        row.ours.push(ours(o.path, name));
      }
    });
  }
  say({ t: 'result', kind: BENCH_LOAD_KIND, data: rows });
  say({ t: 'done', ok: true, ms: Math.round(performance.now() - t0) });
}

try {
  main();
} catch (e) {
  say({ t: 'log', level: 'error', msg: `bench load guest: ${(e as Error).message.split('\n')[0]}` });
  say({ t: 'done', ok: false, ms: Math.round(performance.now() - t0) });
}
