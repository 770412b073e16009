// The kernel store hands out no blob it has not hashed: a blob corrupted in place, its size and
// mtime kept (what a stale "verified" memo would trust), is found, re-extracted or fetched again.
// The shared store is only read here: the corruption happens in a private copy of 7.3's entry.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, symlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTarget } from '../../harness/cli/relocate.js';
import { readTargetBtf, relocateObject } from '../../harness/core/relocate.js';
import { parseBzImage } from '../../harness/kernels/extract.js';
import { KernelStore, type KernelArtifacts } from '../../harness/kernels/store.js';
import { compileBpf } from '../helpers/tools.js';

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
// A private cache root: its kernel store a copy of 7.3's entry, its apt state the shared one.
const root = mkdtempSync(join(tmpdir(), 'cm-store-integrity-'));
const dir = join(root, 'kernels');
const object = compileBpf('test/fixtures/core_kernel.bpf.c');
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** XORs bytes of `file` at `pos` in place, keeping its size, atime and mtime (to the nanosecond: `touch -r`). */
function corrupt(file: string, pos: number, mask: number[]): void {
  const before = statSync(file, { bigint: true });
  const times = join(root, 'times');
  execFileSync('touch', ['-r', file, times]);
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(mask.length);
    readSync(fd, b, 0, b.length, pos);
    for (let i = 0; i < b.length; i++) b[i]! ^= mask[i]!;
    writeSync(fd, b, 0, b.length, pos);
  } finally {
    closeSync(fd);
  }
  execFileSync('touch', ['-r', times, file]);
  const after = statSync(file, { bigint: true });
  expect([after.size, after.mtimeNs]).toEqual([before.size, before.mtimeNs]);
}

/**
 * Where the bit offset of `struct s`'s member `m` is stored in raw BTF, read with a walk of the
 * format written here (not the project's BTF reader): header, then 12-byte types with per-kind tails.
 */
function memberOffsetAt(btf: Buffer, s: string, m: string): number {
  const hdrLen = btf.readUInt32LE(4);
  const types = hdrLen + btf.readUInt32LE(8);
  const end = types + btf.readUInt32LE(12);
  const strs = hdrLen + btf.readUInt32LE(16);
  const name = (off: number) => btf.toString('latin1', strs + off, btf.indexOf(0, strs + off));
  // Bytes after the 12-byte common part, per kind (linux/btf.h), vlen items or a fixed tail.
  const tail: Record<number, (vlen: number) => number> = { 1: () => 4, 3: () => 12, 4: (v) => v * 12, 5: (v) => v * 12, 6: (v) => v * 8, 13: (v) => v * 8, 14: () => 4, 15: (v) => v * 12, 17: () => 4, 19: (v) => v * 12 };
  for (let off = types; off < end; ) {
    const info = btf.readUInt32LE(off + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    if (kind === 4 && name(btf.readUInt32LE(off)) === s)
      for (let i = 0; i < vlen; i++) if (name(btf.readUInt32LE(off + 12 + i * 12)) === m) return off + 12 + i * 12 + 8;
    off += 12 + (tail[kind]?.(vlen) ?? 0);
  }
  throw new Error(`struct ${s} has no member ${m}`);
}

/** What `corematrix relocate core_kernel.o --btf <target>` resolves `bpf_core_field_offset(struct task_struct, comm)` to. */
function commOffset(btf: Uint8Array, name: string): number {
  const r = relocateObject(readFileSync(object), object, sha(object), { vmlinux: readTargetBtf(btf, name) }, name);
  const comm = r.report.relocations.filter((x) => x.kind === 'byte_off' && x.type === 'struct task_struct' && x.spec === 'comm');
  expect(comm.length).toBeGreaterThan(0);
  return comm[0]!.target!;
}

/** bpftool's bit offset of task_struct.comm in a BTF file, in bytes: the witness. */
function bpftoolCommOffset(btfFile: string): number {
  const dump = execFileSync('bpftool', ['btf', 'dump', 'file', btfFile], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const struct = dump.slice(dump.indexOf("] STRUCT 'task_struct' size="));
  const bits = /^\s+'comm' type_id=\d+ bits_offset=(\d+)$/m.exec(struct.slice(0, struct.indexOf('\n[')))![1]!;
  return Number(bits) / 8;
}

let original: KernelArtifacts;
beforeAll(async () => {
  original = await new KernelStore().fetch('7.3');
  symlinkSync(new KernelStore().apt.dir, join(root, 'apt'));
  // A private store holding a copy (not a link: the shared blobs must never change) of 7.3's entry.
  for (const d of ['blobs', 'manifests']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(original.manifest, join(dir, 'manifests', basename(original.manifest)));
  for (const k of ['vmlinuz', 'config', 'btf'] as const) copyFileSync(original[k], join(dir, 'blobs', original.sha256[k]));
}, 600_000);

describe('a corrupted kernel blob with its size and mtime kept', () => {
  it('BTF: fetch hashes it, re-extracts it from the vmlinuz and says so; relocation gives bpftool\'s offset again', async () => {
    const truth = bpftoolCommOffset(original.btf);
    expect(commOffset(readFileSync(original.btf), original.btf)).toBe(truth);
    // A first fetch by the private store, as a run before the corruption did.
    const a = await new KernelStore({ cache: dir }).fetch('7.3');
    expect(a.sha256).toEqual(original.sha256);
    // Flip a bit of task_struct.comm's offset (a byte in the middle of the 5.5 MB blob): comm moves by 8 bytes.
    const at = memberOffsetAt(readFileSync(a.btf), 'task_struct', 'comm');
    expect(readFileSync(a.btf).readUInt32LE(at)).toBe(truth * 8);
    expect(at / a.sizes.btf).toBeGreaterThan(0.1);
    corrupt(a.btf, at, [0x40]);
    expect(bpftoolCommOffset(a.btf)).not.toBe(truth); // the corruption matters
    // `relocate --btf 7.3` as the CLI loads its target, with the private root as the cache.
    const cache = process.env.COREMATRIX_CACHE;
    process.env.COREMATRIX_CACHE = root;
    try {
      const target = await loadTarget('7.3');
      expect(commOffset(target.bytes, target.name)).toBe(truth);
    } finally {
      if (cache === undefined) delete process.env.COREMATRIX_CACHE;
      else process.env.COREMATRIX_CACHE = cache;
    }
    expect(sha(a.btf)).toBe(original.sha256.btf);
    // Again, watching the store's log and progress line.
    corrupt(a.btf, at, [0x40]);
    const said: string[] = [];
    const steps: string[] = [];
    const b = await new KernelStore({ cache: dir, log: (l) => said.push(l) }).fetch('7.3', { onStep: (s) => steps.push(s) });
    expect(sha(b.btf)).toBe(original.sha256.btf);
    expect(commOffset(readFileSync(b.btf), b.btf)).toBe(truth);
    // bpftool reads the re-extracted blob exactly as it reads the shared original.
    const dump = (f: string) => execFileSync('bpftool', ['btf', 'dump', 'file', f], { encoding: 'utf8', maxBuffer: 1 << 30 });
    expect(dump(b.btf) === dump(original.btf)).toBe(true);
    expect(said.filter((l) => /corrupt|missing/.test(l))).toEqual([
      expect.stringMatching(/^kernel 7\.3 \S+: cached btf is corrupt: sha256 is now [0-9a-f]{12}…, 5\d{6} bytes \(expected [0-9a-f]{12}…, 5\d{6} bytes\); re-extracted it from the vmlinuz$/),
    ]);
    expect(said.some((l) => l.includes('downloading'))).toBe(false);
    expect(steps).toEqual(['cached btf is corrupt: re-extracting it from the vmlinuz']);
    // Intact now: the next fetch says nothing.
    said.length = 0;
    await new KernelStore({ cache: dir, log: (l) => said.push(l) }).fetch('7.3');
    expect(said).toEqual([]);
  }, 300_000);

  it('vmlinuz: not hashed by a caller that does not use it; the next caller that does fetches it again', async () => {
    const vmlinuz = join(dir, 'blobs', original.sha256.vmlinuz);
    corrupt(vmlinuz, Math.floor(original.sizes.vmlinuz / 2), [0xff, 0xff, 0xff, 0xff]);
    const said: string[] = [];
    const s = new KernelStore({ cache: dir, log: (l) => said.push(l) });
    // What `relocate --btf 7.3` reads: the BTF and the config, both checked; the vmlinuz is not read.
    const r = await s.fetch('7.3', { use: ['btf', 'config'] });
    expect(sha(r.btf)).toBe(original.sha256.btf);
    expect(said).toEqual([]);
    const steps: string[] = [];
    const k = await s.fetch('7.3', { onStep: (x) => steps.push(x) });
    expect(sha(k.vmlinuz)).toBe(original.sha256.vmlinuz);
    expect(parseBzImage(readFileSync(k.vmlinuz)).banner).toBe(original.banner);
    expect(said.filter((l) => /corrupt/.test(l))).toEqual([expect.stringMatching(/^kernel 7\.3 \S+: cached vmlinuz is corrupt: sha256 is now [0-9a-f]{12}…, \d+ bytes \(expected [0-9a-f]{12}…, \d+ bytes\); fetching it again$/)]);
    expect(said.some((l) => l.includes('downloading'))).toBe(true);
    expect(steps[0]).toBe('cached vmlinuz is corrupt: fetching it again');
  }, 600_000);
});
