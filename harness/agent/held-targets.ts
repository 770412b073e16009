// freplace into another object's program (an object config's target-program: <object>:<program>):
// the objects one loader keeps loaded and attached while later objects replace functions of their
// programs, and the run members that tie a replacement's runs to its target's. The agent's object
// loops (main.ts) use it for both loaders.
import type { Btf } from '../core/btf/btf.js';
import type { Attachment } from '../loader/attach.js';
import { replacedObjects, splitTargetProgram } from '../loader/object-config.js';
import type { RunMember } from './attach-run.js';
import type { RunManifest } from './manifest.js';

/** Per object of this guest, the later objects whose freplace programs replace functions of its programs. */
export function replacersOf(objects: RunManifest['objects']): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  objects.forEach((o, i) => {
    for (const target of o.config ? replacedObjects(o.config) : []) {
      // Not before it in this guest (another guest's share of the objects): its load says so.
      if (!objects.slice(0, i).some((x) => x.name === target)) continue;
      const set = out.get(target) ?? new Set<string>();
      set.add(o.name);
      out.set(target, set);
    }
  });
  return out;
}

/** An object kept loaded and attached (by one loader) while later objects replace functions of its programs. */
export interface HeldTarget {
  /** Its programs' attachments after its own run: what runs a program again (the frames an XDP hook is fed). */
  attachments: ReadonlyMap<string, Attachment>;
  /** A program's run count, from the kernel. */
  runCounts: RunMember['runCounts'];
  /** A loaded program's fd. */
  programFd: (program: string) => number | undefined;
  /** The BTF its programs were loaded with (ours; libbpf finds it from the program's fd). */
  btf?: Btf;
  /** The objects still to replace into it; when none is left it is closed. */
  waiting: Set<string>;
  close: () => void;
}

/** The objects one loader holds for the objects that replace functions of their programs. */
export class HeldTargets {
  private readonly held = new Map<string, HeldTarget>();
  constructor(
    private readonly objects: RunManifest['objects'],
    private readonly loader: 'ours' | 'libbpf',
    private readonly warn: (msg: string) => void,
  ) {}

  hold(name: string, t: HeldTarget): void {
    this.held.set(name, t);
  }

  get(name: string): HeldTarget | undefined {
    return this.held.get(name);
  }

  /** The held object `name`, for `replacer`; else why it is not there (one line). */
  find(name: string, replacer: string): HeldTarget | { reason: string } {
    const t = this.held.get(name);
    if (t) return t;
    const at = this.objects.findIndex((x) => x.name === name);
    const me = this.objects.findIndex((x) => x.name === replacer);
    if (at < 0) return { reason: `${name} is not among this guest's objects` };
    if (at > me) return { reason: `${name} comes after ${replacer}` };
    return { reason: `${this.loader === 'ours' ? 'our loader' : 'libbpf'} could not load ${name}` };
  }

  /** `replacer` is done (loaded, attached, run): the objects it replaced into that wait for no one else are closed. */
  done(replacer: string, targets: readonly string[]): void {
    for (const name of targets) {
      const t = this.held.get(name);
      if (!t) continue;
      t.waiting.delete(replacer);
      if (t.waiting.size === 0) this.release(name, t);
    }
  }

  /** Closes whatever is still held (a replacer that never came to its turn). */
  closeAll(): void {
    for (const [name, t] of [...this.held]) this.release(name, t);
  }

  private release(name: string, t: HeldTarget): void {
    this.held.delete(name);
    try {
      t.close();
    } catch (e) {
      this.warn(`agent: ${name}: closing after the objects replacing into it (${this.loader}): ${(e as Error).message.split('\n')[0]}`);
    }
  }
}

/** A run member whose attachments are also handed to `keep` (an object others replace into: they run its programs again). */
export function keepingAttachments(member: RunMember, keep: (a: ReadonlyMap<string, Attachment>) => void): RunMember {
  return {
    ...member,
    attach: () => {
      const a = member.attach();
      keep(a);
      return a;
    },
  };
}

/**
 * A replacing object's part in a run. A replacement of another object's function runs when that
 * object's program runs: it is exercised as that program is (the frames its XDP hook is fed), and
 * its runs are that program's while it is attached: the kernel's count of it after the run, less
 * its count when the replacement was attached (the kernel keeps no count for a replacement).
 */
export function replacingMember(member: RunMember, held: HeldTargets): RunMember {
  /** `object:program` → the target's run count when the replacement was attached. */
  const base = new Map<string, { target: HeldTarget; program: string; runCnt: bigint }>();
  return {
    ...member,
    attach: () => {
      const attachments = member.attach();
      for (const a of attachments.values()) {
        if (!a.runsInside || a.verdict.status !== 'attached') continue;
        const { object, program } = splitTargetProgram(a.runsInside);
        const target = object === undefined ? undefined : held.get(object);
        if (!target) continue;
        base.set(a.runsInside, { target, program, runCnt: target.runCounts(program)?.runCnt ?? 0n });
        a.exercise ??= target.attachments.get(program)?.exercise;
      }
      return attachments;
    },
    runCounts: (name) => {
      const b = base.get(name);
      if (!b) return member.runCounts(name);
      const now = b.target.runCounts(b.program)?.runCnt;
      return now === undefined ? undefined : { runCnt: now - b.runCnt };
    },
  };
}
