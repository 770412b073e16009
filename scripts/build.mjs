// Bundles the host CLI (dist/corematrix.cjs), the benchmark, the fuzzer and the guest agent with esbuild. The guest agent is one
// self-contained file (koffi stays external: its native module ships in the image's node_modules).
import { build } from 'esbuild';
import { existsSync, rmSync } from 'node:fs';

const common = { bundle: true, platform: 'node', target: 'node20', format: 'esm', sourcemap: 'linked', logLevel: 'warning',
  banner: { js: "import { createRequire as __cmCreateRequire } from 'node:module'; const require = __cmCreateRequire(import.meta.url);" } };
const entries = [
  ['harness/bench/main.ts', 'dist/bench.js', ['koffi']],
  ['harness/fuzz/main.ts', 'dist/fuzz.js', ['koffi']],
];
// The guest agent is CommonJS: node runs it without its ESM loader (whose own modules are compiled
// at start-up, emulated under TCG), and a CommonJS script can be compiled from a V8 code cache
// (images/agent-start.cjs; harness/images/agent-cache.ts produces the cache).
// Its clock is process.hrtime: node's global `performance` is built on first use from eleven
// perf_hooks modules, which a guest compiles from source (node's code cache for its own modules
// does not match --jitless).
const agent = { ...common, format: 'cjs', entryPoints: ['harness/agent/main.ts'], outfile: 'dist/agent.js', external: ['koffi'],
  define: { 'performance.now': '__cmNow', 'globalThis.performance': '__cmPerformance' },
  banner: { js: 'const __cmNow = () => Number(process.hrtime.bigint()) / 1e6; const __cmPerformance = { now: __cmNow };' } };
// Earlier layouts of the CLI build (one ES module bundle, then split ES module chunks): gone.
for (const stale of ['dist/cli.js', 'dist/cli.js.map', 'dist/cli']) rmSync(stale, { force: true, recursive: true });
// The CLI is one CommonJS file, which bin/corematrix.js compiles with a V8 code cache (an ES
// module cannot use one in Node 20). import.meta.url is the bundle's own URL.
const cliCjs = build({ ...common, format: 'cjs', entryPoints: ['harness/cli/main.ts'], outfile: 'dist/corematrix.cjs', external: ['koffi'],
  define: { 'import.meta.url': '__cmImportMetaUrl' }, banner: { js: 'const __cmImportMetaUrl = require("node:url").pathToFileURL(__filename).href;' } });
await Promise.all([cliCjs, build(agent), ...entries.filter(([src]) => existsSync(src)).map(([src, out, external]) =>
  build({ ...common, entryPoints: [src], outfile: out, external }))]);
