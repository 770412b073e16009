// Bundles the host CLI, the benchmark and the guest agent with esbuild. The guest agent is one
// self-contained file (koffi stays external: its native module ships in the image's node_modules).
import { build } from 'esbuild';
import { existsSync } from 'node:fs';

const common = { bundle: true, platform: 'node', target: 'node20', format: 'esm', sourcemap: 'linked', logLevel: 'warning',
  banner: { js: "import { createRequire as __cmCreateRequire } from 'node:module'; const require = __cmCreateRequire(import.meta.url);" } };
const entries = [
  ['harness/cli/main.ts', 'dist/cli.js', ['koffi']],
  ['harness/bench/main.ts', 'dist/bench.js', ['koffi']],
  ['harness/agent/main.ts', 'dist/agent.js', ['koffi']],
  ['harness/fuzz/main.ts', 'dist/fuzz.js', ['koffi']],
];
await Promise.all(entries.filter(([src]) => existsSync(src)).map(([src, out, external]) =>
  build({ ...common, entryPoints: [src], outfile: out, external })));
