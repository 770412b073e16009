// One differential run in the running kernel: the same object loaded by our loader (Collection)
// and by libbpf, program by program, and compared (translated instructions, verdicts, CO-RE
// decisions). Used by the guest tests and usable by the guest agent.

import type { Btf } from '../core/btf/btf.js';
import { CoreMatrixError } from '../core/errors.js';
import type { KconfigFacts } from '../core/kconfig.js';
import { loadObjectSpec } from '../core/object/load.js';
import type { ObjectSpec } from '../core/object/types.js';
import { Collection, type LoadOptions, type ProgramOutcome } from '../loader/collection.js';
import { compareOutcomes, type OutcomeComparison } from './compare.js';
import { loadWithLibbpf, type LibbpfSettings, type ReferenceLibrary, type ReferenceLoad, type ReferenceOutcome } from './libbpf.js';
import { WHOLE_OBJECT } from '../results.js';

export interface DifferentialOptions {
  kernelBtf: Btf;
  kernelBtfName: string;
  /** Loaded modules' BTF (split on kernelBtf): our loader's candidates for module types, as libbpf reads /sys/kernel/btf/<module>. */
  moduleBtfs?: Btf[];
  kconfig: KconfigFacts;
  kallsyms?: LoadOptions['kallsyms'];
  programs?: string[];
  /**
   * libbpf's `btf_custom_path`: the file `kernelBtf` was read from, when that is not the running
   * kernel's /sys/kernel/btf/vmlinux (relocating against another kernel's BTF).
   */
  btfCustomPath?: string;
  /** The libbpf to compare with (default: the system's, Debian's libbpf.so.1). */
  library?: ReferenceLibrary;
  /** The object as its config made it (ours) and the same settings for libbpf's setters. */
  configured?: { spec: ObjectSpec; settings: LibbpfSettings };
  /** Passed to our loader only (test hook: a deliberately broken loader). */
  mutateInsns?: LoadOptions['mutateInsns'];
  /** Leave libbpf's load open (returned as `live`) for the caller to attach, run and close. */
  keepReference?: boolean;
  /** The object already parsed by the caller (not yet loaded), instead of parsing `bytes` again. */
  parsed?: ObjectSpec;
  /**
   * Our loader's outcomes for this object in this kernel, when the caller has just loaded it
   * (the agent's attach-and-run load): compared as they are, not loaded a second time.
   */
  oursOutcomes?: ProgramOutcome[];
}

export interface DifferentialResult {
  object: string;
  ours: ProgramOutcome[];
  reference: ReferenceOutcome[];
  comparisons: OutcomeComparison[];
  oursMs: number;
  referenceMs: number;
  /** libbpf's load, still open, when `keepReference` was asked and libbpf could open the object. */
  live?: ReferenceLoad;
}

/**
 * Loads `bytes` with both loaders in this kernel and compares each program. Both loads are
 * closed before returning. A program libbpf did not see (or we did not) is reported as an
 * 'error' outcome on the missing side.
 */
export function differential(bytes: Uint8Array, name: string, o: DifferentialOptions): DifferentialResult {
  const t0 = performance.now();
  let spec: ObjectSpec | undefined;
  let unreadable: string | undefined;
  try {
    spec = o.configured?.spec ?? o.parsed ?? loadObjectSpec(bytes, name);
  } catch (err) {
    // Our reader refuses the object: libbpf still loads it, and each of its programs is compared
    // with our refusal (a disagreement wherever libbpf loads one).
    unreadable = `our loader cannot read the object: ${(err as Error).message.split('\n')[0]}`;
  }
  const coll = spec && !o.oursOutcomes ? new Collection(spec) : undefined;
  let ours: ProgramOutcome[] = o.oursOutcomes ?? [];
  if (coll) {
    try {
      coll.load({ kernelBtf: o.kernelBtf, moduleBtfs: o.moduleBtfs, kernelBtfName: o.kernelBtfName, kconfig: o.kconfig, kallsyms: o.kallsyms, programs: o.programs, mutateInsns: o.mutateInsns });
      ours = coll.outcomes.map((x) => ({ ...x }));
    } catch (err) {
      // Refused before any program load (an extern, a map): every program failed with that reason,
      // and libbpf still gets its turn, so the two can be compared on the refusal too.
      ours = coll.objectFailed((err as Error).message.split('\n')[0]!, o.programs);
    } finally {
      coll.close();
    }
  }
  const t1 = performance.now();
  let ref: { outcomes: ReferenceOutcome[] };
  let live: ReferenceLoad | undefined;
  try {
    const loaded = loadWithLibbpf(bytes, name, { programs: o.programs, btfCustomPath: o.btfCustomPath, ...(o.library ? { library: o.library } : {}), ...(o.configured ? { configure: o.configured.settings } : {}) });
    if (o.keepReference) live = loaded;
    else loaded.close();
    ref = loaded;
  } catch (err) {
    // libbpf cannot even open it (legacy `maps` definitions since libbpf 1.0, say): each of our
    // programs is compared with that refusal.
    if (!(err instanceof CoreMatrixError)) throw err;
    const reason = err.message.split('\n')[0]!.replace(/^reference: /, '');
    const label = o.library ? `libbpf ${o.library.version ?? ''} (${o.library.source ?? o.library.so})` : 'libbpf (system)';
    // When our reader refused it too, the two refusals are compared on the object itself, so the
    // report still shows libbpf's word on it.
    const names = unreadable ? [WHOLE_OBJECT] : ours.map((p) => p.name);
    ref = { outcomes: names.map((n) => ({ name: n, libbpf: label, status: 'error' as const, reason, relocations: [], log: [], loadMs: 0 })) };
  }
  const t2 = performance.now();
  const comparisons: OutcomeComparison[] = [];
  for (const p of ours) {
    const theirs = ref.outcomes.find((r) => r.name === p.name) ?? { name: p.name, status: 'error' as const, reason: 'libbpf has no such program', relocations: [] };
    comparisons.push(compareOutcomes(p, theirs));
  }
  for (const r of ref.outcomes) {
    if (!ours.some((p) => p.name === r.name)) comparisons.push(compareOutcomes({ name: r.name, status: 'error', reason: unreadable ?? 'our loader has no such program' }, r));
  }
  return { object: name, ours, reference: ref.outcomes, comparisons, oursMs: Math.round(t1 - t0), referenceMs: Math.round(t2 - t1), ...(live ? { live } : {}) };
}
