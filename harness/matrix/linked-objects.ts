// `--object a.o+b.o`: an object its tool builds from several .c files, linked on the host as
// `bpftool gen object` would (harness/core/link), before anything boots. The linked object is
// cached by its inputs' contents and named after them (`a+b.o`), so every guest loads the same file.
//
//   const path = linkedObject('build/a.bpf.o+build/b.bpf.o');   // ~/.cache/corematrix/linked/<hash>/a.bpf+b.bpf.o

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { UsageError } from '../core/errors.js';
import { linkObjects } from '../core/link/index.js';
import { cacheDir } from '../paths.js';

/** An `--object` argument that names objects to link (`a.o+b.o`) rather than one file. */
export function isLinkSpec(arg: string): boolean {
  return arg.includes('+') && !existsSync(arg);
}

/** Links the `+`-separated objects of `arg` (in that order) and returns the linked file's path. */
export function linkedObject(arg: string): string {
  const parts = arg.split('+');
  if (parts.some((p) => p === '')) throw new UsageError(`--object ${arg}: objects to link are written a.o+b.o`);
  for (const p of parts) if (!existsSync(p)) throw new UsageError(`--object ${arg}: ${p}: no such file`);
  const inputs = parts.map((p) => ({ name: basename(p), bytes: new Uint8Array(readFileSync(p)) }));
  const h = createHash('sha256');
  for (const i of inputs) h.update(i.name).update('\0').update(i.bytes);
  const name = `${inputs.map((i) => i.name.replace(/\.o$/, '')).join('+')}.o`;
  const out = join(cacheDir('linked', h.digest('hex').slice(0, 16)), name);
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    writeFileSync(tmp, linkObjects(inputs).bytes);
    renameSync(tmp, out);
  }
  return out;
}
