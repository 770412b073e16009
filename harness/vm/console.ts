// Reads a guest's serial console (ttyS0) line by line and remembers what matters for the verdict:
// panics, oopses and BUG splats, hung-task reports, warnings. Keeps the last lines for the tail.

export type SplatKind = 'panic' | 'oops' | 'hung-task' | 'warning';

export interface Splat {
  kind: SplatKind;
  /** The console line (timestamp and escape codes removed). */
  line: string;
  /** 0-based line number in the console log. */
  lineNo: number;
}

/**
 * Console patterns. Fatal to the run: a panic (the guest reboots, QEMU exits) and an oops/BUG
 * (the kernel killed the task that hit it; kernel state is suspect from then on). A hung-task
 * report means some task is stuck in D state for 120 s. A WARNING is recorded, not fatal.
 */
const PATTERNS: readonly [SplatKind, RegExp][] = [
  ['panic', /^Kernel panic - not syncing/],
  ['oops', /^(Oops: |BUG: |kernel BUG at |general protection fault|Unable to handle kernel)/],
  ['hung-task', /blocked for more than \d+ seconds/],
  ['warning', /^WARNING: /],
];

/** Removes ANSI/VT100 escape sequences and carriage returns (SeaBIOS paints the screen). */
export function cleanConsoleLine(line: string): string {
  // eslint-disable-next-line no-control-regex
  return line.replace(/\x1b(\[[0-9;?]*[A-Za-z]|c|[()][A-Z0-9])/g, '').replace(/[\r\x00]/g, '');
}

/** Strips the printk timestamp ("[    1.234567] ") and a caller prefix ("[  T123] ") if present. */
function body(line: string): string {
  return line.replace(/^\[\s*\d+\.\d+\]\s?/, '').replace(/^\[\s*[TC]\d+\]\s?/, '');
}

/** Lines kept around the first fatal splat: before it, and it plus after it. */
const FOCUS_BEFORE = 2;
const FOCUS_AFTER = 10;

export class ConsoleScanner {
  readonly splats: Splat[] = [];
  private tail: string[] = [];
  private lines = 0;
  /** The first panic/oops/hung-task report with a little context (it may scroll out of the tail). */
  private focus: { start: number; lines: string[] } | undefined;

  constructor(private readonly keep = 200) {}

  /** Feeds one console line; returns the splat it is, if any. */
  push(raw: string): Splat | undefined {
    const line = cleanConsoleLine(raw);
    const lineNo = this.lines++;
    this.tail.push(line);
    if (this.tail.length > this.keep) this.tail.splice(0, this.tail.length - this.keep);
    if (this.focus && this.focus.lines.length < FOCUS_BEFORE + FOCUS_AFTER && lineNo < this.focus.start + FOCUS_BEFORE + FOCUS_AFTER)
      this.focus.lines.push(line);
    const b = body(line);
    for (const [kind, re] of PATTERNS) {
      if (re.test(b)) {
        const s = { kind, line: b, lineNo };
        this.splats.push(s);
        if (!this.focus && kind !== 'warning') {
          const before = this.tail.slice(-1 - FOCUS_BEFORE, -1);
          this.focus = { start: lineNo - before.length, lines: [...before, line] };
        }
        return s;
      }
    }
    return undefined;
  }

  first(kind: SplatKind): Splat | undefined {
    return this.splats.find((s) => s.kind === kind);
  }

  /**
   * The last `n` lines, newline-joined. When the first fatal splat (panic, oops, hung task) has
   * scrolled out of them (a long call trace), the tail starts with it and its next lines, then
   * "[... k lines ...]", then the last lines: never more than `n` lines in all.
   */
  tailText(n = 40): string {
    const f = this.focus;
    const firstInTail = this.lines - Math.min(n, this.tail.length);
    if (!f || f.start >= firstInTail || n < f.lines.length + 6) return this.tail.slice(-n).join('\n');
    const rest = n - f.lines.length - 1;
    const skipped = this.lines - rest - (f.start + f.lines.length);
    if (skipped <= 0) return this.tail.slice(-n).join('\n');
    return [...f.lines, `[... ${skipped} lines ...]`, ...this.tail.slice(-rest)].join('\n');
  }

  get lineCount(): number {
    return this.lines;
  }
}
