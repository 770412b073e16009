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

export class ConsoleScanner {
  readonly splats: Splat[] = [];
  private tail: string[] = [];
  private lines = 0;

  constructor(private readonly keep = 200) {}

  /** Feeds one console line; returns the splat it is, if any. */
  push(raw: string): Splat | undefined {
    const line = cleanConsoleLine(raw);
    const lineNo = this.lines++;
    this.tail.push(line);
    if (this.tail.length > this.keep) this.tail.splice(0, this.tail.length - this.keep);
    const b = body(line);
    for (const [kind, re] of PATTERNS) {
      if (re.test(b)) {
        const s = { kind, line: b, lineNo };
        this.splats.push(s);
        return s;
      }
    }
    return undefined;
  }

  first(kind: SplatKind): Splat | undefined {
    return this.splats.find((s) => s.kind === kind);
  }

  /** The last `n` lines, newline-joined. */
  tailText(n = 40): string {
    return this.tail.slice(-n).join('\n');
  }

  get lineCount(): number {
    return this.lines;
  }
}
