// The plain-data view of applied CO-RE relocations, shared by `corematrix relocate --json`, the
// guest agent's results and the reports. Values are numbers when they fit exactly, else strings.

import type { AppliedRelo } from './patch.js';
import type { ReloKindName } from './spec.js';

export interface RelocationRecord {
  section: string;
  /** Instruction index within the section. */
  insn: number;
  kind: ReloKindName;
  /** Local root type as C, e.g. `struct task_struct___old`. */
  type: string;
  /** Raw access string, e.g. `0:83`. */
  access: string;
  /** Field path, e.g. `pid` or `__sk_common.skc_net.net`. */
  spec: string;
  local: number;
  target: number | null;
  status: 'ok' | 'poisoned' | 'error';
  error?: string;
  /** The matched target type (C), its raw access path and id, when one matched. */
  targetType?: string;
  targetAccess?: string;
  targetTypeId?: number;
}

function num(v: bigint): number {
  // CO-RE values are offsets, sizes, ids, booleans and enumerator values: a 64-bit enumerator
  // above 2^53 is the only thing that does not fit; keep its bits as a signed number then.
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : Number(BigInt.asIntN(64, v));
}

export function toRecord(r: AppliedRelo): RelocationRecord {
  const rec: RelocationRecord = {
    section: r.section,
    insn: r.insn,
    kind: r.kindName,
    type: r.localType,
    access: r.access,
    spec: r.spec,
    local: num(r.orig),
    target: r.status === 'ok' && r.new !== undefined ? num(r.new) : null,
    status: r.status,
  };
  if (r.reason && r.status !== 'ok') rec.error = r.reason;
  if (r.target) {
    rec.targetType = r.target.typeName;
    rec.targetAccess = r.target.raw;
    rec.targetTypeId = r.target.typeId;
  }
  return rec;
}
