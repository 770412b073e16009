// The frame of a test's guest script: say hello on the result port (/dev/ttyS1, or the one /init was told:
// CM_RESULT_PORT; harness/protocol.ts),
// beat while the work runs (sync or async), send its report as one `result` of `kind`, then `done` (ok or not, with
// the error's stack in a log line). The work is the script's own; this is only the protocol around it.
import { openSync, writeSync } from 'node:fs';
import { machine, release, uptime } from 'node:os';
import { encodeMessage, PROTOCOL_VERSION, type GuestMessage } from '../../harness/protocol.js';

export async function guestReport(kind: string, work: (t0: number) => unknown): Promise<void> {
  const fd = openSync(process.env.CM_RESULT_PORT ?? '/dev/ttyS1', 'w');
  const say = (m: GuestMessage) => writeSync(fd, encodeMessage(m));
  const t0 = Date.now();
  say({ t: 'hello', v: PROTOCOL_VERSION, release: release(), machine: machine(), bootMs: Math.round(uptime() * 1000) });
  const hb = setInterval(() => say({ t: 'hb', ms: Date.now() - t0 }), 1000);
  try {
    say({ t: 'result', kind, data: await work(t0) });
    say({ t: 'done', ok: true, ms: Date.now() - t0 });
  } catch (e) {
    say({ t: 'log', level: 'error', msg: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e) });
    say({ t: 'done', ok: false, ms: Date.now() - t0 });
  } finally {
    clearInterval(hb);
  }
}
