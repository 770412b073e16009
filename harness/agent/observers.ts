// Which objects only watch: every program of theirs is a tracing program that can see the kernel
// and the workload but not change what they do (kprobes, uprobes, tracepoints, raw tracepoints,
// fentry/fexit, perf events, iterators) and none calls a helper that acts on what it sees
// (bpf_override_return, bpf_probe_write_user, bpf_send_signal*). Such objects can share one run
// of the workload: another watcher attached beside them changes no event they count, so each
// program's run count is the one it would have alone. Anything else (XDP, tc, cgroup, LSM,
// fmod_ret, struct_ops, sockmaps, writable raw tracepoints, syscall programs, an object whose
// config adds workload commands) runs the workload alone. Pure: reads the parsed object only.
import type { ObjectSpec } from '../core/object/types.js';
import { AttachType, ProgType } from '../core/uapi.js';

/** Helpers through which a tracing program changes what it traces: probe_write_user, override_return, send_signal, send_signal_thread. */
const ACTING_HELPERS = new Set([36, 58, 109, 117]);
/** kfuncs that do the same. */
const ACTING_KFUNCS = new Set(['bpf_send_signal_task']);

const BPF_JMP_CALL = 0x85;

/** Tracing attach types that only observe (tracing programs with another one, fmod_ret say, do not). */
const OBSERVING_TRACING = new Set<number>([AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT, AttachType.TRACE_RAW_TP, AttachType.TRACE_ITER]);

function observes(type: number, expectedAttachType: number | undefined): boolean {
  switch (type) {
    case ProgType.KPROBE:
    case ProgType.TRACEPOINT:
    case ProgType.PERF_EVENT:
    case ProgType.RAW_TRACEPOINT:
      return true;
    case ProgType.TRACING:
      return expectedAttachType !== undefined && OBSERVING_TRACING.has(expectedAttachType);
    default:
      return false;
  }
}

/** Whether any instruction of the object's code calls one of ACTING_HELPERS (BPF_CALL with src_reg 0: a helper). */
function callsActingHelper(spec: ObjectSpec): boolean {
  for (const insns of spec.sections.values()) {
    const dv = new DataView(insns.buffer, insns.byteOffset, insns.byteLength);
    for (let at = 0; at + 8 <= insns.length; at += 8) {
      if (insns[at] === BPF_JMP_CALL && (insns[at + 1]! >> 4) === 0 && ACTING_HELPERS.has(dv.getInt32(at + 4, true))) return true;
    }
  }
  return false;
}

/**
 * Why the object must run the workload alone, or undefined when it only observes (every program
 * it would load, by section; the same answer for ours and libbpf, whatever each one loads).
 */
export function mustRunAlone(spec: ObjectSpec, workloadCommands: readonly string[] = []): string | undefined {
  if (workloadCommands.length) return 'its config adds workload commands';
  const actor = spec.programs.find((p) => p.autoload && !observes(p.type, p.expectedAttachType));
  if (actor) return `program ${actor.name} (${actor.kind}) acts on what it is attached to`;
  if (spec.structOps.length) return 'it registers struct_ops';
  if (spec.externs.some((e) => e.func && ACTING_KFUNCS.has(e.name))) return 'it calls a kfunc that signals tasks';
  if (callsActingHelper(spec)) return 'it calls a helper that changes what it traces';
  return undefined;
}
