// The agent's watchdog beats for a main thread blocked inside a declared step, naming it; a step
// inside another (a program's load inside its object's parse, relocation and maps) hands the
// beats back to the outer step when it ends, so the object's own work after its programs is not
// silence. The beats are read from the file the worker thread writes them to, as the host reads
// the result port.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { Watchdog } from '../../harness/agent/watchdog.js';

const dir = mkdtempSync(join(tmpdir(), 'cm-watchdog-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Blocks this thread (as a long bpf() call does) for `ms`. */
const block = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

it('beats for the inner step while it runs, then for the outer one again, until the outer one ends', async () => {
  const file = join(dir, 'beats');
  const fd = openSync(file, 'w');
  const dog = new Watchdog(fd, 50);
  try {
    dog.blocking('object x.o (load)', 60_000, () => {
      block(600); // the worker comes up, then beats for the object
      dog.blocking('object x.o: prog (load)', 60_000, () => block(400));
      block(400); // after the program: the object's step again
    });
    block(300); // no step: no beats
  } finally {
    await dog.stop();
    closeSync(fd);
  }
  const steps = readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { busy: { step: string } }).busy.step);
  const runs = steps.filter((s, i) => i === 0 || s !== steps[i - 1]);
  expect(runs).toEqual(['object x.o (load)', 'object x.o: prog (load)', 'object x.o (load)']);
});
