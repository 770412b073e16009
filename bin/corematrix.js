#!/usr/bin/env node
// Thin launcher: the CLI is bundled by esbuild into dist/cli/main.js (npm run build).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(cli)) {
  process.stderr.write(`corematrix: ${cli} is missing; run: npm run build\n`);
  process.exit(2);
}
await import(cli);
