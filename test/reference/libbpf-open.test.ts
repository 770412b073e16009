// The koffi bindings on the host, on paths that make no bpf() call: libbpf opens (parses) objects,
// lists programs, reports open failures through its print callback and libbpf_strerror.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CoreMatrixError } from '../../harness/core/errors.js';
import { libbpfStrerror, libbpfVersion, loadWithLibbpf } from '../../harness/reference/libbpf.js';
import { compileBpf } from '../helpers/tools.js';

describe('libbpf through koffi (no kernel needed)', () => {
  it('is Debian\'s libbpf 1.x', () => {
    expect(libbpfVersion()).toMatch(/^v1\.\d+$/);
  });

  it('libbpf_strerror knows libbpf\'s own codes and errno values', () => {
    expect(libbpfStrerror(-4000)).toMatch(/libelf/i); // LIBBPF_ERRNO__LIBELF
    expect(libbpfStrerror(-4001)).toBe('BPF object format invalid'); // LIBBPF_ERRNO__FORMAT
    expect(libbpfStrerror(-2)).toBe('No such file or directory');
  });

  it('an object libbpf cannot open: one line with libbpf\'s code and its own warning (print callback)', () => {
    const junk = new TextEncoder().encode('not an ELF object at all');
    let err: unknown;
    try {
      loadWithLibbpf(junk, 'junk.o');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CoreMatrixError);
    expect((err as Error).message).toBe("reference: libbpf cannot open junk.o: BPF object format invalid (4001): elf: 'junk.o' is not a proper ELF object");
  });

  it('asking for a program the object does not have is an error naming it', () => {
    const obj = new Uint8Array(readFileSync(compileBpf(new URL('./fixtures/relo_fail.bpf.c', import.meta.url).pathname)));
    expect(() => loadWithLibbpf(obj, 'relo_fail.o', { programs: ['new_state', 'nope'] })).toThrow("reference: relo_fail.o has no program named 'nope'");
  });
});
