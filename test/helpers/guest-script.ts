// Bundles a TypeScript entry into one ESM file a guest runs as its agent (`cm.agent=`), the way
// scripts/build.mjs bundles the real agent: koffi stays external (its native module ships in the
// image), `require` is provided for the CommonJS pieces.
import { build } from 'esbuild';

export async function bundleGuestScript(entry: string, outfile: string): Promise<string> {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    external: ['koffi'],
    logLevel: 'warning',
    banner: { js: "import { createRequire as __cmCreateRequire } from 'node:module'; const require = __cmCreateRequire(import.meta.url);" },
  });
  return outfile;
}
