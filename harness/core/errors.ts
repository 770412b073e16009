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

/** Malformed input: a truncated ELF, garbage BTF, a bad string offset. CLI exit code 2. */
export class FormatError extends CoreMatrixError {
  override name = 'FormatError';
  override exitCode = 2;
  constructor(
    message: string,
    readonly offset?: number,
  ) {
    super(offset === undefined ? message : `${message} (at offset ${offset})`);
  }
}

/** A CO-RE relocation that cannot be resolved for a reason other than "not found" (ambiguity, bad spec). */
export class RelocationError extends CoreMatrixError {
  override name = 'RelocationError';
  override exitCode = 2;
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
    Object.defineProperty(e, 'message', { value: `${context}: ${err.message}`, enumerable: false, writable: true });
    Object.defineProperty(e, 'cause', { value: err, enumerable: false, writable: true });
    e.stack = `${e.name}: ${e.message}`;
    return e;
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new CoreMatrixError(`${context}: ${msg}`, { cause: err });
}
