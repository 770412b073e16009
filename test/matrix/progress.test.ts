// Matrix progress: plain `[kernel] state` lines when piped or in CI; on a terminal one line per
// kernel redrawn in place. The live mode is checked by replaying its bytes on a small terminal
// model (cursor up, clear line, newline, printable text), as a terminal would show them.
import { describe, expect, it } from 'vitest';
import { liveTerminal, progressSink } from '../../harness/matrix/progress.js';

/** Replays the ANSI subset the sink uses; returns the visible rows. */
function screen(bytes: string): string[] {
  const rows: string[] = [''];
  let row = 0;
  let col = 0;
  for (let i = 0; i < bytes.length; i++) {
    const esc = /^\x1b\[(\d*)([AK])/.exec(bytes.slice(i, i + 8));
    if (esc) {
      const n = esc[1] === '' ? 1 : Number(esc[1]);
      if (esc[2] === 'A') row = Math.max(0, row - n);
      else if (n === 2) rows[row] = '';
      else throw new Error(`unexpected ESC[${esc[1]}K`);
      col = esc[2] === 'A' ? col : 0;
      i += esc[0].length - 1;
      continue;
    }
    const ch = bytes[i]!;
    if (ch === '\x1b') throw new Error(`unexpected escape ${JSON.stringify(bytes.slice(i, i + 6))}`);
    if (ch === '\n') {
      row++;
      col = 0;
      rows[row] ??= '';
      continue;
    }
    const line = rows[row] ?? '';
    rows[row] = line.slice(0, col).padEnd(col) + ch + line.slice(col + 1);
    col++;
  }
  while (rows.length && rows.at(-1) === '') rows.pop();
  return rows;
}

describe('progress on a terminal', () => {
  it('keeps one line per kernel with its latest state, logs scrolling above', () => {
    let out = '';
    const p = progressSink({ write: (s) => (out += s), live: true, columns: () => 60 });
    p.progress('6.1', 'fetching');
    p.progress('5.10', 'fetching');
    p.progress('6.1', 'building image');
    p.log('apt: lists updated in 2.7 s');
    p.progress('5.10', 'booting');
    p.progress('6.1-cloud', 'booting');
    p.progress('6.1', 'suite 1/3 task-fields');
    p.log('[5.10] verifier said something long');
    p.progress('5.10', 'done in 9.7 s: 3/3 cells pass');
    p.progress('6.1', 'done in 8.1 s: 3/3 cells pass');
    p.done();
    out += 'run summary\n';
    expect(screen(out)).toEqual([
      'apt: lists updated in 2.7 s',
      '[5.10] verifier said something long',
      '6.1        done in 8.1 s: 3/3 cells pass',
      '5.10       done in 9.7 s: 3/3 cells pass',
      '6.1-cloud  booting',
      'run summary',
    ]);
    expect(out).toContain('\x1b[3A'); // redrawn in place, not appended
  });

  it('clips status lines to the terminal width so they never wrap', () => {
    let out = '';
    const p = progressSink({ write: (s) => (out += s), live: true, columns: () => 30 });
    p.progress('7.x', `not booted: ${'x'.repeat(100)}`);
    p.progress('7.x', 'done');
    const rows = screen(out);
    expect(rows).toEqual(['7.x  done']);
    for (const line of out.split('\n')) expect(line.replace(/\x1b\[\d*[AK]/g, '').length).toBeLessThanOrEqual(29);
  });
});

describe('progress on a terminal that reports no width', () => {
  it('assumes 80 columns (a pty from script(1) says 0)', () => {
    let out = '';
    const p = progressSink({ write: (s) => (out += s), live: true, columns: () => 0 });
    const state = `done in 9.7 s: 3/3 cells pass (${'y'.repeat(80)})`;
    p.progress('5.10', state);
    expect(screen(out)).toEqual([`5.10  ${state}`.slice(0, 78) + '…']);
  });
});

describe('progress when piped or in CI', () => {
  it('prints plain lines, no escapes', () => {
    let out = '';
    const p = progressSink({ write: (s) => (out += s), live: false });
    p.progress('6.1', 'booting');
    p.log('matrix: 1 kernel(s)');
    p.progress('6.1', 'done');
    p.done();
    expect(out).toBe('[6.1] booting\nmatrix: 1 kernel(s)\n[6.1] done\n');
  });

  it('is live only on a TTY, outside CI, with a capable terminal', () => {
    expect(liveTerminal({ isTTY: true }, { TERM: 'xterm' })).toBe(true);
    expect(liveTerminal({ isTTY: true }, { TERM: 'xterm', CI: 'true' })).toBe(false);
    expect(liveTerminal({ isTTY: false }, { TERM: 'xterm' })).toBe(false);
    expect(liveTerminal({}, {})).toBe(false);
    expect(liveTerminal({ isTTY: true }, { TERM: 'dumb' })).toBe(false);
  });
});
