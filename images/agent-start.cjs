// Starts a CommonJS agent bundle with a V8 code cache (installed in the guest as /agent-start.js;
// images/init runs `node <flags> /agent-start.js /agent.js` when /agent.js.cache exists).
//
// Node 20 has no compile cache for user code, so this does what its CommonJS loader does
// (Module.wrap, compile, call with exports/require/module/__filename/__dirname) through
// vm.Script, which accepts `cachedData`. Under TCG every byte of V8's parser and compiler that
// runs is emulated; with the cache, V8 deserialises the bytecode the host compiled instead.
// V8 checks the cache (its version, the source, the flags) and falls back to compiling when it
// does not match: `script.cachedDataRejected`, which is reported on the result port.
//
// The same file produces the cache on the host (harness/images/agent-cache.ts), run by the node
// the guest carries (for arm64 guests: Debian's arm64 node under qemu-aarch64-static):
//   node <the guest's flags> agent-start.cjs --produce <bundle> <out.cache>
// runs the bundle (the caller sets an environment in which the agent returns early and has no
// effect) and writes the code cache on exit, so functions the start-up ran are in it, not only
// the top level.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

/** `file` (a CommonJS script) compiled as node's loader would wrap it, from `cachedData` when V8 accepts it. */
function compileWithCache(file, cachedData) {
  return new vm.Script(Module.wrap(fs.readFileSync(file, 'utf8')), { filename: file, cachedData });
}

/** Runs a script from compileWithCache as the CommonJS module `file` (what require() would do). */
function runAsModule(script, file) {
  const mod = new Module(file, null);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(path.dirname(file));
  script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(file), mod, file, path.dirname(file));
  mod.loaded = true;
}

// bin/corematrix.js runs the host CLI bundle with these two as well.
module.exports = { compileWithCache, runAsModule };

if (require.main === module) main();

function main() {
  const t0 = process.hrtime.bigint();
  const produce = process.argv[2] === '--produce';
  const file = path.resolve(produce ? process.argv[3] : process.argv[2]);
  const out = produce ? process.argv[4] : undefined;
  // The agent sees argv as if node had run it directly: [node, /agent.js, ...].
  process.argv.splice(1, produce ? 4 : 1, file);

  let cachedData;
  if (!produce) {
    try {
      cachedData = fs.readFileSync(`${file}.cache`);
    } catch {
      cachedData = undefined;
    }
  }
  // Producing: compile every function of the bundle now (--no-lazy), not only those the host's
  // short run reaches, so the guest deserialises bytecode instead of compiling functions lazily
  // as the suites first call them (~0.2 s per guest under TCG, measured). The flag is set back
  // before anything runs: V8 stamps the cache with the hash of the flags in force when it is
  // written, and the guest runs lazily, as every node does by default.
  // node:v8 is required only here: loading it in a guest costs ~0.15 s (it pulls in node:stream).
  const v8 = produce ? require('node:v8') : undefined;
  v8?.setFlagsFromString('--no-lazy');
  const script = compileWithCache(file, cachedData);
  v8?.setFlagsFromString('--lazy');
  const compileMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const status = cachedData === undefined ? 'none' : script.cachedDataRejected ? 'rejected' : 'accepted';

  if (produce) {
    process.on('exit', () => fs.writeFileSync(out, script.createCachedData()));
  } else {
    // One protocol line (harness/protocol.ts) before the agent's hello; a rejected cache is a warning.
    const port = process.env.CM_RESULT_PORT ?? '/dev/ttyS1';
    const msg = `start: code cache ${status} (${cachedData?.length ?? 0} bytes), compiled in ${compileMs.toFixed(0)} ms`;
    try {
      fs.appendFileSync(port, JSON.stringify({ t: 'log', level: status === 'rejected' ? 'warn' : 'info', msg }) + '\n');
    } catch {
      process.stderr.write(`${msg}\n`);
    }
  }
  runAsModule(script, file);
}
