#!/usr/bin/env node
// Launcher. The CLI is bundled by esbuild (npm run build) into one CommonJS file,
// dist/corematrix.cjs, which this compiles with a V8 code cache (dist/corematrix.cjs.<command>.cache): V8
// then deserialises bytecode instead of parsing and compiling the code a command runs, and no
// ES module loader is involved. The cache is written by the first run that finds none (or finds
// one V8 rejects, or one made for another build of the bundle or another node), after the command
// ran, so it holds what that command compiled. COREMATRIX_CODE_CACHE=off runs without it.
import { closeSync, existsSync, openSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

// The guest agent's launcher compiles and runs a CommonJS bundle the same way (images/agent-start.cjs).
const { compileWithCache, runAsModule } = createRequire(import.meta.url)('../images/agent-start.cjs');

const bundle = fileURLToPath(new URL('../dist/corematrix.cjs', import.meta.url));

if (existsSync(bundle)) {
  runBundle(bundle);
} else {
  process.stderr.write(`corematrix: ${bundle} is missing; run: npm run build\n`);
  process.exit(2);
}

function runBundle(file) {
  const useCache = process.env.COREMATRIX_CODE_CACHE !== 'off';
  // One cache per command: each holds what its command compiled on the run that wrote it.
  const command = /^[a-z]{1,20}$/.test(process.argv[2] ?? '') ? process.argv[2] : 'none';
  const cacheFile = `${file}.${command}.cache`;
  const st = statSync(file);
  // What the cache was made for: V8 itself checks its version, flags and the source's length,
  // not the source's bytes, so a rebuilt bundle is told apart by its size and mtime here.
  const header = JSON.stringify({ v: 1, node: process.version, arch: process.arch, size: st.size, mtimeMs: st.mtimeMs });
  const cachedData = useCache ? readCache(cacheFile, header) : undefined;
  const script = compileWithCache(file, cachedData);
  if (useCache && (cachedData === undefined || script.cachedDataRejected)) {
    process.once('exit', () => writeCache(cacheFile, header, script));
  }
  runAsModule(script, file);
}

/** The cache bytes after a header line equal to `header`, else undefined. */
function readCache(path, header) {
  let fd;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const data = readFileSync(fd);
    const nl = data.indexOf(10);
    if (nl < 0 || data.subarray(0, nl).toString() !== header) return undefined;
    return data.subarray(nl + 1);
  } finally {
    closeSync(fd);
  }
}

/** Best effort: a read-only install simply runs without a cache. Atomic for concurrent runs. */
function writeCache(path, header, script) {
  try {
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, Buffer.concat([Buffer.from(header + '\n'), script.createCachedData()]));
    renameSync(tmp, path);
  } catch {
    /* not writable: fine */
  }
}
