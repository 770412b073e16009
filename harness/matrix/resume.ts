// A guest that dies in one object (an LSM program that denies the agent's own mprotect, a load
// that panics the kernel, a verifier that outlasts the guest's budget) must not take the rest of
// its objects with it. The object it died in is named in its cells; every other unit it owed and
// did not finish goes to a follow-up guest of the same kernel, whose cells replace what the dead
// guest sent of those units (the libbpf cells of an object are compared with ours from the same
// guest, so a unit is redone whole, by every loader).

import { describeStep, type AgentStep } from '../protocol.js';
import type { CellResult, GuestVerdict, KernelRun } from '../results.js';

/** At most this many follow-up guests per guest: each excludes one more object that killed one. */
export const MAX_FOLLOW_UPS = 3;

/** Verdicts of a guest that ran and then died: worth a follow-up when it died inside an object. */
const DIED = new Set(['panic', 'oops', 'hung-task', 'agent-oom', 'agent-hang', 'qemu-died', 'timeout', 'agent-failed']);

/**
 * The object the guest died in, when it died in one: the unit of the agent's last step, when that
 * is a user (or corpus) object. A guest that died in a suite, the CO-RE corpus or a command, or
 * before its agent said which step it was in, gets no follow-up: its unfinished units stay "not run".
 */
export function diedIn(run: Pick<KernelRun, 'guest'>, lastStep: AgentStep | undefined): string | undefined {
  if (!DIED.has(run.guest) || !lastStep) return undefined;
  return lastStep.unit.startsWith('object:') ? lastStep.unit : undefined;
}

/** Where a guest died: the object (unit), the agent's last step in it, the guest's verdict. */
export interface Death {
  unit: string;
  step: AgentStep;
  guest: GuestVerdict;
}

/**
 * The row once a follow-up guest has redone `redone`: the row's cells (the dead guest's) of every
 * other unit (the object it died in keeps its "not run" cells, saying so), then the follow-up's.
 * The dead guest's verdict stays the row's (a guest did die), its detail says what the follow-up
 * did; the durations add up (the follow-up ran after it, in the same slot).
 */
export function joinFollowUp(dead: KernelRun, next: KernelRun, redone: readonly string[], death: Death): KernelRun {
  const again = new Set(redone);
  const killer = death.unit;
  const killed = `not run: this object's ${death.step.phase} killed the guest (${death.guest}) in ${describeStep(death.step)}; the guest's other unfinished objects ran again in a follow-up guest`;
  const cells: CellResult[] = [
    ...dead.cells.filter((c) => !again.has(c.suite)).map((c) => (c.suite === killer && c.verdict === 'error' && /^not run: /.test(c.reason ?? '') ? { ...c, reason: killed } : c)),
    ...next.cells,
  ];
  const followUp = `${redone.length} unfinished unit(s) ran again in a follow-up guest: ${next.guest}${next.detail ? ` (${next.detail})` : ''}`;
  const joined: KernelRun = {
    ...dead,
    kernel: next.kernel.btf && !dead.kernel.btf ? { ...dead.kernel, btf: next.kernel.btf } : dead.kernel,
    detail: `${dead.detail ?? dead.guest}; ${followUp}`,
    durationMs: dead.durationMs + next.durationMs,
    cells,
    followUps: (dead.followUps ?? 0) + 1 + (next.followUps ?? 0),
  };
  return joined;
}
