// The guest → host result channel: one JSON object per line on the guest's second serial port
// (/dev/ttyS1). Plain, versioned data; it crosses the guest/host boundary unchanged.
// The host treats a missing heartbeat for too long as a hung agent.

export const PROTOCOL_VERSION = 1;

export type GuestMessage =
  /** First line the agent sends once node is up. */
  | { t: 'hello'; v: typeof PROTOCOL_VERSION; release: string; machine: string; bootMs: number }
  /** Sent at least every 2 s while the agent is alive. */
  | { t: 'hb'; ms: number }
  /** Progress: suite k of n started. */
  | { t: 'suite'; name: string; index: number; total: number }
  /** One result record (suite/program cell, task tree update, probe…): payload is owned by the producer. */
  | { t: 'result'; kind: string; data: unknown }
  /** A log line worth showing on the host (not the kernel console). */
  | { t: 'log'; level: 'info' | 'warn' | 'error'; msg: string }
  /**
   * Last line: the agent finished (the guest powers off next). `verdict` is the agent's own
   * account when nothing could run at all: 'no-btf' (no kernel BTF and none supplied).
   */
  | { t: 'done'; ok: boolean; ms: number; verdict?: 'no-btf' };

export function encodeMessage(m: GuestMessage): string {
  return JSON.stringify(m) + '\n';
}

/** Parses one line; returns undefined for noise (the port may carry partial lines at boot). */
export function decodeMessage(line: string): GuestMessage | undefined {
  const s = line.trim();
  if (!s.startsWith('{')) return undefined;
  try {
    const m = JSON.parse(s) as { t?: unknown };
    return typeof m.t === 'string' ? (m as GuestMessage) : undefined;
  } catch {
    return undefined;
  }
}
