// Console classification on lines in the kernel's own formats (printk timestamps, caller ids,
// SeaBIOS escape codes). The real-boot tests cover panic end to end; these cover the rest.
import { describe, expect, it } from 'vitest';
import { cleanConsoleLine, ConsoleScanner } from '../../harness/vm/console.js';

describe('ConsoleScanner', () => {
  it('classifies panics, oopses, BUGs, hung tasks and warnings', () => {
    const s = new ConsoleScanner();
    const lines = [
      '\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r',
      '[    0.000000] Linux version 6.1.0-50-cloud-amd64 (debian-kernel@lists.debian.org)',
      '[    0.512345] [Firmware Bug]: TSC doesn\'t count with P0 frequency!',
      '[    3.101000] WARNING: CPU: 0 PID: 1 at kernel/bpf/verifier.c:123 check_x+0x1/0x2',
      '[    3.201000] BUG: kernel NULL pointer dereference, address: 0000000000000008',
      '[    3.201100] Oops: 0000 [#1] PREEMPT SMP NOPTI',
      '[  242.000000] INFO: task node:115 blocked for more than 120 seconds.',
      '[  300.000000] [    T1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b',
      '[  300.100000] ---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b ]---',
    ];
    for (const l of lines) s.push(l);
    expect(s.splats.map((x) => x.kind)).toEqual(['warning', 'oops', 'oops', 'hung-task', 'panic']);
    expect(s.first('panic')!.line).toBe('Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b');
    expect(s.first('oops')!.line).toBe('BUG: kernel NULL pointer dereference, address: 0000000000000008');
    expect(s.first('hung-task')!.lineNo).toBe(6);
    expect(s.tailText(2).split('\n')[0]).toMatch(/Kernel panic/);
    expect(s.tailText(40).split('\n')[0]).toBe('SeaBIOS (version 1.16.2-debian-1.16.2-1)');
  });

  it('does not mistake ordinary boot lines for splats', () => {
    const s = new ConsoleScanner();
    for (const l of [
      '[    0.100000] Spectre V2 : Mitigation: Retpolines',
      '[    0.200000] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!',
      '[    1.000000] x86/cpu: SGX disabled by BIOS.',
      '[    2.000000] hung_task: watchdog started',
      '{"t":"log","level":"info","msg":"BUG: not from the kernel"}',
    ])
      s.push(l);
    expect(s.splats).toEqual([]);
  });

  it('keeps the first fatal splat in the tail when a long trace follows it', () => {
    const s = new ConsoleScanner();
    for (let i = 0; i < 30; i++) s.push(`[    1.${i}] boot ${i}`);
    s.push('[    2.000000] BUG: kernel NULL pointer dereference, address: 0000000000000000');
    for (let i = 0; i < 100; i++) s.push(`[    2.1${i}]  trace_line_${i}+0x1/0x2`);
    s.push('[    2.200000] Kernel panic - not syncing: Fatal exception');
    const tail = s.tailText(40).split('\n');
    expect(tail).toHaveLength(40);
    expect(tail[0]).toBe('[    1.28] boot 28');
    expect(tail[2]).toMatch(/BUG: kernel NULL pointer dereference/);
    expect(tail[12]).toMatch(/^\[\.\.\. \d+ lines \.\.\.\]$/);
    expect(tail.at(-1)).toMatch(/Kernel panic - not syncing: Fatal exception/);
    // Every line after the 28 before the focus is either shown or counted as skipped.
    expect(28 + 12 + Number(/\d+/.exec(tail[12]!)![0]) + 27).toBe(s.lineCount);
  });

  it('keeps only the last lines for the tail', () => {
    const s = new ConsoleScanner(50);
    for (let i = 0; i < 500; i++) s.push(`[ ${i}.000000] line ${i}`);
    const tail = s.tailText(40).split('\n');
    expect(tail).toHaveLength(40);
    expect(tail.at(-1)).toBe('[ 499.000000] line 499');
    expect(s.lineCount).toBe(500);
    expect(cleanConsoleLine('a\r\x1b[2Jb\x00')).toBe('ab');
  });
});
