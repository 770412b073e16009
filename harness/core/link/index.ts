// The static linker (libbpf's `bpftool gen object`, in the pure core): BPF objects in, one object out.
export { linkObjects, type LinkResult, type ResolvedGlobal } from './link.js';
export type { LinkInput } from './input.js';
export { LinkError } from './errors.js';
