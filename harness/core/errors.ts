// Error classes shared by every part of corematrix. Each has a one-line message that names
// where (file, section, offset, type id) and what is wrong; context is wrapped outward with
// `wrap`, so the outermost message reads like "relocate a.bpf.o: prog 'x': relo #3: ...".

/** Base class: everything corematrix throws on purpose. `exitCode` is what the CLI exits with. */
export class CoreMatrixError extends Error {
  override name = 'CoreMatrixError';
  exitCode = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Longest message an input-driven error may have. */
export const MAX_MESSAGE = 300;
const LONG_WORD = 96;

/**
 * Keeps a message about hostile input one short line: names taken from the input (section,
 * symbol, type names, access strings) can hold newlines and run to kilobytes. Control characters
 * become `?`, any word longer than 96 characters keeps its two ends, and a message still longer
 * than 300 characters keeps its start and its end (where the "what is wrong" usually is).
 */
export function oneLine(message: string): string {
  // eslint-disable-next-line no-control-regex
  let m = message.replace(/[\u0000-\u001f\u007f]/g, '?');
  if (m.length <= MAX_MESSAGE) return m;
  m = m.replace(/\S{97,}/g, (w) => `${w.slice(0, LONG_WORD / 2)}…${w.slice(-(LONG_WORD / 2 - 8))}`);
  if (m.length <= MAX_MESSAGE) return m;
  const head = Math.floor(MAX_MESSAGE * 0.6);
  return `${m.slice(0, head)} … ${m.slice(m.length - (MAX_MESSAGE - head - 3))}`;
}

/** Malformed input: a truncated ELF, garbage BTF, a bad string offset. CLI exit code 2. */
export class FormatError extends CoreMatrixError {
  override name = 'FormatError';
  override exitCode = 2;
  constructor(
    message: string,
    readonly offset?: number,
  ) {
    super(oneLine(offset === undefined ? message : `${message} (at offset ${offset})`));
  }
}

/** A CO-RE relocation that cannot be resolved for a reason other than "not found" (ambiguity, bad spec). */
export class RelocationError extends CoreMatrixError {
  override name = 'RelocationError';
  override exitCode = 2;
  constructor(message: string, options?: { cause?: unknown }) {
    super(oneLine(message), options);
  }
}

/** Bad configuration or command-line use. */
export class UsageError extends CoreMatrixError {
  override name = 'UsageError';
  override exitCode = 2;
}

/** Wraps an error with a short context prefix, keeping its class and exit code. */
export function wrap(context: string, err: unknown): Error {
  if (err instanceof CoreMatrixError) {
    const e = Object.create(Object.getPrototypeOf(err)) as CoreMatrixError;
    Object.assign(e, err);
    const message = `${context}: ${err.message}`;
    Object.defineProperty(e, 'message', { value: err instanceof FormatError || err instanceof RelocationError ? oneLine(message) : message, enumerable: false, writable: true });
    Object.defineProperty(e, 'cause', { value: err, enumerable: false, writable: true });
    e.stack = `${e.name}: ${e.message}`;
    return e;
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new CoreMatrixError(`${context}: ${msg}`, { cause: err });
}
