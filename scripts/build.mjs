// Bundles the host CLI (dist/corematrix.cjs), the benchmark, the fuzzer and the guest agent with esbuild. The guest agent is one
// self-contained file (koffi's native module ships in the image's node_modules: x86-64's in amd64
// images, arm64's in arm64 images, harness/images/arm64-image.ts).
import { build } from 'esbuild';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

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
// koffi's JavaScript is bundled too, so the code cache holds it (as a file of its own it was compiled
// in every guest, and its platform package read node's ELF header to choose between the glibc and
// musl builds). The image carries the glibc build only, next to the glibc it runs on, so the
// platform package resolves here to that native module, which stays a file in the image. Both
// platforms the guests run on (linux-x64, linux-arm64) resolve so, whether or not the host has
// the other's package installed (npm installs only the host's).
const koffiVersion = JSON.parse(readFileSync(join(dirname(createRequire(import.meta.url).resolve('koffi')), 'package.json'), 'utf8')).version;
/** koffi's platform packages the guests load, by the name koffi's loadStatic asks for. */
const KOFFI_PLATFORMS = { 'linux-x64': '@koromix/koffi-linux-x64', 'linux-arm64': '@koromix/koffi-linux-arm64' };
const koffiNative = {
  name: 'koffi-native',
  setup(b) {
    // koffi's CommonJS entry (its ES module one builds a require from import.meta.url).
    b.onResolve({ filter: /^koffi$/ }, () => ({ path: createRequire(import.meta.url).resolve('koffi') }));
    // koffi's loader for its platform packages swallows their errors and falls back to a search
    // that finds nothing in a bundle: this one lets a failing dlopen say why.
    b.onLoad({ filter: /koffi[\\/]src[\\/]koffi[\\/]src[\\/]static\.cjs$/ }, () => ({
      loader: 'js',
      contents: `module.exports = { loadStatic: (pkg) => (${Object.entries(KOFFI_PLATFORMS).map(([pkg, name]) => `pkg === '${pkg}' ? require('${name}') : `).join('')}null) };`,
    }));
    b.onResolve({ filter: /^@koromix\/koffi-/ }, (args) =>
      Object.values(KOFFI_PLATFORMS).includes(args.path) ? { path: args.path, namespace: 'koffi-native' } : { path: args.path, external: true });
    // In the image the module sits in /node_modules beside /agent.js and is opened directly,
    // without node's package resolution (a package.json read and a realpath walk: ~20 ms under
    // TCG); an agent run from dist/ on a host resolves it as usual.
    b.onLoad({ filter: /.*/, namespace: 'koffi-native' }, (args) => {
      // @koromix/koffi-linux-arm64 → its glibc build, linux_arm64/koffi.node.
      const native = `${args.path}/linux_${args.path.split('-').pop()}/koffi.node`;
      return {
        loader: 'js',
        contents: `const file = require('node:path').join(__dirname, 'node_modules/${native}');
        if (require('node:fs').existsSync(file)) process.dlopen(module, file);
        else module.exports = require('${native}');`,
      };
    });
  },
};
const agent = { ...common, format: 'cjs', entryPoints: ['harness/agent/main.ts'], outfile: 'dist/agent.js', plugins: [koffiNative],
  define: { 'performance.now': '__cmNow', 'globalThis.performance': '__cmPerformance' },
  // The koffi version inside, which the image's native module must match (harness/images/initramfs.ts checks).
  banner: { js: `// koffi ${koffiVersion}\nconst __cmNow = () => Number(process.hrtime.bigint()) / 1e6; const __cmPerformance = { now: __cmNow };` } };
// Earlier layouts of the CLI build (one ES module bundle, then split ES module chunks): gone.
for (const stale of ['dist/cli.js', 'dist/cli.js.map', 'dist/cli']) rmSync(stale, { force: true, recursive: true });
// The CLI is one CommonJS file, which bin/corematrix.js compiles with a V8 code cache (an ES
// module cannot use one in Node 20). import.meta.url is the bundle's own URL.
const cliCjs = build({ ...common, format: 'cjs', entryPoints: ['harness/cli/main.ts'], outfile: 'dist/corematrix.cjs', external: ['koffi'],
  define: { 'import.meta.url': '__cmImportMetaUrl' }, banner: { js: 'const __cmImportMetaUrl = require("node:url").pathToFileURL(__filename).href;' } });
await Promise.all([cliCjs, build(agent), ...entries.filter(([src]) => existsSync(src)).map(([src, out, external]) =>
  build({ ...common, entryPoints: [src], outfile: out, external }))]);
