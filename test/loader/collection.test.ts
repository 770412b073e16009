// The guest loader on this machine's own kernel (root may call bpf() here): global variables by
// name, .rodata set before load and frozen after, and BPF_PROG_TEST_RUN seeing the writes.
// The same loader runs in every guest of the matrix (test/matrix/e2e.test.ts).
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseBtf } from '../../harness/core/btf/btf.js';
import { loadObjectSpec } from '../../harness/core/object/load.js';
import { Collection } from '../../harness/loader/collection.js';
import { linuxKernelVersion } from '../../harness/runtime/index.js';
import { compileBpf } from '../helpers/tools.js';

const vmlinux = '/sys/kernel/btf/vmlinux';

describe.runIf(existsSync(vmlinux))('Collection on the host kernel', () => {
  it('reads and writes globals by name and the program sees them', () => {
    const obj = compileBpf('test/fixtures/vars.bpf.c');
    const coll = new Collection(loadObjectSpec(readFileSync(obj), 'vars.bpf.o'));
    try {
      coll.load({ kernelBtf: parseBtf(readFileSync(vmlinux)), kernelBtfName: vmlinux, kconfig: { config: new Map(), linuxKernelVersion: linuxKernelVersion() }, rodata: { limit: 99 } });
      expect(coll.outcomes.map((o) => o.status)).toEqual(['loaded']);
      expect(coll.readVar('counter')).toBe(5);
      expect(coll.readVar('label')).toBe('initial');
      coll.writeVar('counter', 41);
      coll.writeVar('label', 'written');
      const prog = coll.programs.get('bump')!;
      expect(prog.testRun({ data: new Uint8Array(64) }).retval).toBe(42);
      expect(coll.readVar('counter')).toBe(42);
      expect(coll.readVar('label')).toBe('written');
      expect(coll.readVar('seen')).toBe(99);
      expect(coll.readVar('limit')).toBe(99);
      expect(() => coll.writeVar('limit', 1)).toThrow(/frozen/);
      expect(() => coll.writeVar('label', 'x'.repeat(40))).toThrow(/does not fit/);
      expect(() => coll.readVar('nope')).toThrow(/no global variable named 'nope'/);
    } finally {
      coll.close();
    }
  });

  it('refuses a .rodata value for a variable the object does not have', () => {
    const obj = compileBpf('test/fixtures/vars.bpf.c');
    const coll = new Collection(loadObjectSpec(readFileSync(obj), 'vars.bpf.o'));
    try {
      expect(() => coll.load({ kernelBtf: parseBtf(readFileSync(vmlinux)), kernelBtfName: vmlinux, kconfig: { config: new Map(), linuxKernelVersion: linuxKernelVersion() }, rodata: { missing: 1 } })).toThrow(/missing/);
    } finally {
      coll.close();
    }
  });
});
