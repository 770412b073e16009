// What the bench's load-comparison guest (load-guest.ts) is given and what it reports: shared by
// that guest script and the host side (corpus.ts), which must not import the guest's runtime.
import type { ReferenceLibrary } from '../reference/libbpf.js';

/** The `result` kind of the guest's one report. */
export const BENCH_LOAD_KIND = 'bench-load';
/** Where the guest reads its input. */
export const BENCH_LOAD_INPUT = '/cm/bench/load.json';

export interface BenchLoadInput {
  objects: { unit: string; path: string }[];
  libbpf: ReferenceLibrary;
  /** Times every object is loaded by each loader (the order of the two alternates every time). */
  rounds: number;
  /**
   * The kernel package's BTF and the host's index of the names the objects look up in it, as a
   * matrix run ships them (the agent's openKernelBtf): our loads then pay what they pay in a run.
   */
  btfIndex?: { btf: string; index: string; names: string[] };
}

/** One loader's load of one object. */
export interface LoaderTiming {
  ms: number;
  /** One load of the whole object: every program loaded or left out by autoload, at least one loaded. */
  whole: boolean;
  loaded: number;
  /** Ours: the part spent inside bpf(BPF_PROG_LOAD). */
  progLoadMs?: number;
  error?: string;
}

/** One object: each loader's loads of it, one per round. */
export interface BenchLoadRow {
  unit: string;
  ours: LoaderTiming[];
  libbpf: LoaderTiming[];
}
