// Where a YAML syntax error is. js-yaml reports the place its parser noticed a problem, which
// for an unclosed bracket or quote is the next entry (past blank lines and comments) or the end
// of the file: lines after the mistake. This finds the bracket or quote still open there, so a
// message names the line a person has to fix. Pure: text and the thrown error in, a line out.

/** A js-yaml error (YAMLException) as it is thrown: `reason` says what, `mark` where the parser noticed it (0-based). */
export interface YamlError {
  reason?: string;
  message: string;
  mark?: { line: number; column: number };
}

/**
 * Where a YAML syntax error is, for a message: `line` (1-based) and `reason`. js-yaml's mark is
 * where the parser noticed the problem; for an unclosed bracket or quote that is the next entry
 * (past blank lines and comments) or the end of the file, lines after the mistake. The text is
 * scanned up to the mark for the bracket or quote still open there (quotes and brackets start
 * only where a YAML token can, never in comments, plain scalars or block scalars), and the
 * message points at it, with js-yaml's words and line in parentheses.
 */
export function yamlErrorAt(text: string, e: YamlError): { line: number; reason: string } {
  const reason = e.reason ?? e.message.split('\n')[0]!;
  if (!e.mark) {
    // js-yaml gives no position when a file holds several documents: the second one's `---`.
    const lines = text.split('\n');
    const docs = lines.map((l, i) => (/^---(\s|$)/.test(l) ? i : -1)).filter((i) => i >= 0);
    const second = docs.find((i) => lines.slice(0, i).some((l) => l.trim() !== '' && !l.trimStart().startsWith('#') && !l.startsWith('%')));
    return { line: (second ?? 0) + 1, reason };
  }
  const noticed = e.mark.line + 1;
  const s = scanYaml(text, noticed, e.mark.column);
  const js = `(js-yaml: ${reason}, at line ${noticed})`;
  if (s.quote && /quoted scalar/.test(reason)) return { line: s.quote.line, reason: `the ${s.quote.ch} opened here is never closed ${js}` };
  if (s.runaway && noticed - s.runaway.close <= 1)
    return { line: s.runaway.open, reason: `the ${s.runaway.ch} opened here closes only on line ${s.runaway.close} ${js}` };
  const open = s.flow[s.flow.length - 1];
  if (open && /within a flow collection/.test(reason)) return { line: open.line, reason: `the '${open.ch}' opened here is never closed ${js}` };
  if (open && /missed comma/.test(reason) && s.last && s.last.line < noticed)
    return { line: s.last.line, reason: `a ',' is missing after this entry, or the '${open.ch}' of line ${open.line} is not closed ${js}` };
  return { line: noticed, reason };
}

/** One line for a js-yaml error: `file:line: YAML error: …`, at the line of the mistake (yamlErrorAt). */
export function yamlErrorMessage(file: string, text: string, e: unknown): string {
  const at = yamlErrorAt(text, e as YamlError);
  return `${file}:${at.line}: YAML error: ${at.reason}`;
}

interface YamlScan {
  /** Brackets open at the end of the scan, innermost last (1-based lines). */
  flow: { ch: string; line: number }[];
  /** A quoted scalar still open at the end of the scan. */
  quote?: { ch: string; line: number };
  /** The line where the last token before the end starts (a bracket that closed: its opener's line). */
  last?: { line: number };
  /**
   * The last quoted scalar that spans lines and has text after its closing quote (never valid
   * YAML): most likely a quote left open that the next quote in the file closed.
   */
  runaway?: { ch: string; open: number; close: number };
}

/**
 * Tokenises YAML text just enough to know which brackets and quotes are open at a position
 * (1-based line, 0-based column): comments, quoted scalars, flow brackets and block scalars are
 * recognised; everything else is a plain scalar.
 */
function scanYaml(text: string, endLine: number, endColumn: number): YamlScan {
  const out: YamlScan = { flow: [] };
  const lines = text.split('\n');
  /** Inside a block scalar (| or >): lines indented past this (or blank) are its content. */
  let blockIndent = -1;
  for (let n = 0; n < lines.length && n < endLine; n++) {
    const line = n + 1;
    const src = lines[n]!.replace(/\r$/, '');
    const end = line === endLine ? Math.min(endColumn, src.length) : src.length;
    const indent = /^ */.exec(src)![0].length;
    if (blockIndent >= 0) {
      if (src.trim() === '' || indent > blockIndent) continue;
      blockIndent = -1;
    }
    // Where a token may start: a quote or a bracket there opens one; elsewhere it is scalar text.
    let tokenStart = !out.quote;
    for (let i = 0; i < end; i++) {
      const c = src[i]!;
      if (out.quote) {
        const ch = out.quote.ch;
        if (ch === '"' && c === '\\') i++;
        else if (ch === "'" && c === "'" && src[i + 1] === "'") i++;
        else if (c === ch) {
          const opened = out.quote.line;
          out.quote = undefined;
          out.last = { line: opened };
          const after = src.slice(i + 1);
          if (opened < line && !/^\s*([,\]}:#]|$)/.test(after)) out.runaway = { ch, open: opened, close: line };
          tokenStart = false;
        }
        continue;
      }
      if (c === ' ' || c === '\t' || c === '\r') continue;
      if (c === '#' && (i === 0 || /\s/.test(src[i - 1]!))) break;
      const next = src[i + 1];
      const spaceNext = next === undefined || next === ' ' || next === '\t' || next === '\r';
      const inFlow = out.flow.length > 0;
      if (c === ':' && (spaceNext || (inFlow && /[,\]}]/.test(next!)))) {
        tokenStart = true;
        continue;
      }
      if (inFlow && c === ',') {
        tokenStart = true;
        continue;
      }
      if (inFlow && (c === ']' || c === '}')) {
        const o = out.flow.pop()!;
        out.last = { line: o.line };
        tokenStart = false;
        continue;
      }
      if (!tokenStart) continue;
      if ((c === '-' || c === '?') && spaceNext && !inFlow) continue;
      if (c === '"' || c === "'") out.quote = { ch: c, line };
      else if (c === '[' || c === '{') {
        out.flow.push({ ch: c, line });
        out.last = { line };
        continue;
      } else if ((c === '|' || c === '>') && !inFlow) {
        // A block scalar's header ends its line; its content is the more indented lines after.
        blockIndent = indent;
        break;
      } else out.last = { line };
      tokenStart = false;
    }
  }
  return out;
}
