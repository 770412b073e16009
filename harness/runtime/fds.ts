// Debug registry of the file descriptors the runtime opened and has not closed yet, so tests
// (and the guest agent after each suite) can assert that nothing leaked.

export type FdKind = 'map' | 'prog' | 'btf' | 'link' | 'perf_event' | 'other';

export interface OpenFd {
  fd: number;
  kind: FdKind;
  label: string;
}

const open = new Map<number, OpenFd>();

/** Records a freshly opened fd; returns it for chaining. */
export function trackFd(fd: number, kind: FdKind, label: string): number {
  open.set(fd, { fd, kind, label });
  return fd;
}

/** Forgets an fd (called by sys.close). */
export function untrackFd(fd: number): void {
  open.delete(fd);
}

/** The fds opened by the runtime and still open, oldest first. */
export function openFds(): OpenFd[] {
  return [...open.values()];
}

/** How many runtime fds are open. */
export function openFdCount(): number {
  return open.size;
}
