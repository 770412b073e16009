// junit.xml: a testsuite per kernel, a testcase per cell. A failure's message is the cell's
// reason; system-out carries the checks and relocations. Text that XML 1.0 cannot carry (control
// bytes from a console, lone surrogates) is written as visible \xNN escapes, never dropped.

import type { CellResult, KernelRun, RunReport } from '../results.js';
import type { KernelDiff } from './diff.js';
import { externValue, reloValue } from './diff.js';
import { FAILING, show, tail } from './grid.js';

/** Characters XML 1.0 allows: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]. */
// eslint-disable-next-line no-control-regex
const INVALID = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export function xmlText(s: string): string {
  return s
    .replace(INVALID, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');
}

export function xmlAttr(s: string): string {
  return xmlText(s).replace(/"/g, '&quot;').replace(/'/g, '&apos;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;').replace(/\t/g, '&#9;');
}

function attrs(a: Record<string, string | number | undefined>): string {
  return Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${xmlAttr(String(v))}"`)
    .join('');
}

function secs(msv: number): string {
  return (msv / 1000).toFixed(3);
}

function cellOut(c: CellResult): string {
  const lines = [`object ${c.object.name} sha256 ${c.object.sha256}`, `kernel ${c.kernel.id} ${c.kernel.release} (${c.kernel.package} ${c.kernel.version})`];
  if (c.checks.length) {
    lines.push('checks:');
    for (const x of c.checks) lines.push(`  ${x.ok ? 'ok  ' : 'FAIL'} ${x.name}: observed ${show(x.observed)}, truth ${show(x.truth)}${x.source ? ` (${x.source})` : ''}`);
  }
  if (c.relocations.length) {
    lines.push('relocations:');
    for (const r of c.relocations) lines.push(`  ${r.section}+${r.insn} ${r.kind} ${r.type}${r.spec ? ` ${r.spec}` : ''}: ${r.local} -> ${reloValue(r)}`);
  }
  if (c.externs.length) {
    lines.push('externs:');
    for (const x of c.externs) lines.push(`  ${x.name} = ${externValue(x.name, x.value)}`);
  }
  if (c.verifier?.insnsProcessed !== undefined) lines.push(`verifier: ${c.verifier.insnsProcessed} insns processed`);
  lines.push(`timings: load ${c.timings.loadMs} ms, run ${c.timings.runMs} ms`);
  return lines.join('\n');
}

function testcase(k: KernelRun, c: CellResult): string {
  const name = c.loader === 'ours' ? c.program : `${c.program} [${c.loader}]`;
  const head = `    <testcase${attrs({ classname: `${k.kernel.id}.${c.suite}`, name, time: secs(c.timings.loadMs + c.timings.runMs) })}>`;
  const body: string[] = [];
  const message = c.reason ?? c.verdict;
  if (c.verdict === 'error') body.push(`      <error${attrs({ message, type: c.verdict })}>${xmlText(tail(c.verifier?.logTail ?? c.output?.tail, 60))}</error>`);
  else if (FAILING.has(c.verdict)) body.push(`      <failure${attrs({ message, type: c.verdict })}>${xmlText(tail(c.verifier?.logTail ?? c.output?.tail, 60))}</failure>`);
  else if (c.verdict === 'expected-skip') body.push(`      <skipped${attrs({ message })}/>`);
  body.push(`      <system-out>${xmlText(cellOut(c))}</system-out>`);
  return [head, ...body, '    </testcase>'].join('\n');
}

export function renderJunit(run: RunReport, diff: KernelDiff): string {
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  let tests = 0;
  let fails = 0;
  let errors = 0;
  let skipped = 0;
  const suites: string[] = [];
  const timestamp = run.startedAt;

  if (!run.complete || !diff.ok) {
    // Visible in every JUnit viewer: a suite for the run itself.
    const cases: string[] = [];
    if (!run.complete) {
      cases.push(`    <testcase classname="corematrix.run" name="complete"><error message="INCOMPLETE RUN: interrupted or a shard is missing; results are partial" type="incomplete"/></testcase>`);
      errors++;
    }
    if (!diff.ok) {
      const lines = [...diff.violations, ...diff.unexpected].map((f) => `${f.class} ${f.cell}: ${f.what}`);
      cases.push(`    <testcase classname="corematrix.run" name="cross-kernel diff"><failure${attrs({ message: `${diff.violations.length} violation(s), ${diff.unexpected.length} unexpected difference(s)`, type: 'diff' })}>${xmlText(lines.join('\n'))}</failure></testcase>`);
      fails++;
    }
    tests += cases.length;
    suites.push(`  <testsuite${attrs({ name: 'corematrix.run', tests: cases.length, failures: diff.ok ? 0 : 1, errors: run.complete ? 0 : 1, skipped: 0, timestamp })}>\n${cases.join('\n')}\n  </testsuite>`);
  }

  for (const k of run.kernels) {
    const cases: string[] = [];
    let f = 0;
    let e = 0;
    let s = 0;
    if (k.guest !== 'ok') {
      cases.push(`    <testcase${attrs({ classname: `${k.kernel.id}.guest`, name: 'boot', time: secs(k.durationMs) })}>\n      <error${attrs({ message: `guest ${k.guest}${k.detail ? `: ${k.detail}` : ''}`, type: k.guest })}>${xmlText(tail(k.consoleTail, 60))}</error>\n    </testcase>`);
      e++;
    }
    for (const c of k.cells) {
      cases.push(testcase(k, c));
      if (c.verdict === 'error') e++;
      else if (FAILING.has(c.verdict)) f++;
      else if (c.verdict === 'expected-skip') s++;
    }
    tests += cases.length;
    fails += f;
    errors += e;
    skipped += s;
    const props = [
      ['package', k.kernel.package],
      ['version', k.kernel.version],
      ['release', k.kernel.release],
      ['flavour', k.kernel.flavour],
      ['guest', k.guest],
      ['accel', k.accel],
      ['bootMs', k.bootMs === undefined ? undefined : String(k.bootMs)],
    ]
      .filter(([, v]) => v !== undefined)
      .map(([n, v]) => `      <property${attrs({ name: n, value: v })}/>`);
    suites.push(
      `  <testsuite${attrs({ name: k.kernel.id, tests: cases.length, failures: f, errors: e, skipped: s, time: secs(k.durationMs), timestamp, hostname: k.kernel.release })}>\n    <properties>\n${props.join('\n')}\n    </properties>\n${cases.join('\n')}\n  </testsuite>`,
    );
  }
  const name = `corematrix ${run.runId}${run.complete ? '' : ' (INCOMPLETE)'}`;
  out.push(`<testsuites${attrs({ name, tests, failures: fails, errors, skipped })}>`, ...suites, '</testsuites>', '');
  return out.join('\n');
}
