// Test helpers that drive the real toolchain: clang-19 compiles fixtures, llvm-objcopy and
// bpftool are the independent witnesses our readers are checked against.
import { CLANG } from '../../harness/tools.js';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, basename } from 'node:path';
import { cacheDir } from '../../harness/paths.js';

export const BPF_CFLAGS = ['-g', '-O2', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu'];

/** Compiles a BPF C file (cached by content + flags); returns the object path. */
export function compileBpf(src: string, extra: string[] = []): string {
  const text = readFileSync(src);
  const h = createHash('sha256').update(text).update(JSON.stringify(extra)).update(CLANG).digest('hex').slice(0, 16);
  const dir = cacheDir('test-objects');
  const out = join(dir, `${basename(src, '.c')}-${h}.o`);
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    execFileSync(CLANG, [...BPF_CFLAGS, ...extra, '-c', src, '-o', tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(tmp, out);
  }
  return out;
}

/** Extracts one ELF section with llvm-objcopy (not our ELF reader). */
export function dumpSection(obj: string, section: string): Uint8Array {
  const dir = cacheDir('test-tmp');
  const out = join(dir, `${basename(obj)}.${section.replace(/[^\w.]/g, '_')}.${process.pid}.bin`);
  execFileSync('llvm-objcopy-19', ['--dump-section', `${section}=${out}`, obj, join(dir, `scratch.${process.pid}.o`)]);
  return new Uint8Array(readFileSync(out)); // a copy: Buffer.slice() would alias
}

export interface BpftoolType {
  id: number;
  kind: string;
  name: string;
  [k: string]: unknown;
}

/** bpftool's JSON dump of a raw BTF file (or an ELF with .BTF). */
export function bpftoolDump(file: string): BpftoolType[] {
  const out = execFileSync('bpftool', ['btf', 'dump', 'file', file, '-j'], { maxBuffer: 1 << 30 }).toString();
  return (JSON.parse(out) as { types: BpftoolType[] }).types;
}

export function writeTmp(name: string, data: Uint8Array | string): string {
  const dir = cacheDir('test-tmp');
  mkdirSync(dir, { recursive: true });
  const p = join(dir, `${process.pid}-${name}`);
  writeFileSync(p, data);
  return p;
}

/** Compiles a small host C program (offsetof/sizeof checks against UAPI/libbpf headers) and returns its output. */
export function compileAndRunC(src: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'cm-c-check-'));
  try {
    writeFileSync(join(dir, 'check.c'), src);
    execFileSync('cc', ['-o', join(dir, 'check'), join(dir, 'check.c')], { stdio: 'pipe' });
    return execFileSync(join(dir, 'check'), { encoding: 'utf8' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Makes sure the CLI bundle exists. `npm test` builds before vitest starts; rebuilding from
 * several test files at once would rewrite dist/ while other tests run it.
 */
export function ensureBuilt(): void {
  if (!existsSync('dist/corematrix.cjs') || !existsSync('dist/agent.js')) execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'ignore' });
}

/** The built CLI as CI runs it (bin/corematrix.js, CI set): exit code and both streams, never throws. */
export async function runCli(args: string[], timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['bin/corematrix.js', ...args], { timeout: timeoutMs, env: { ...process.env, CI: '1' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
