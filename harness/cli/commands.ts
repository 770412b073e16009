// The command table: name, one-line summary, and the module to import when the command runs.
// Commands are loaded lazily (and the CLI bundle is split per command), so start-up pays only
// for the command used.
import type { CommandEntry } from './command.js';

export const commands: CommandEntry[] = [
  { name: 'matrix', summary: 'boot the kernel matrix and run every suite in each guest', load: async () => (await import('./matrix.js')).matrixCommand },
  { name: 'relocate', summary: "apply an object's CO-RE relocations against one BTF, offline", load: async () => (await import('./relocate.js')).relocateCommand },
  { name: 'link', summary: 'link BPF objects built from several .c files into one, as bpftool gen object does', load: async () => (await import('./link.js')).linkCommand },
  { name: 'kernels', summary: 'list, fetch and locate the matrix kernels (vmlinuz, config, BTF)', load: async () => (await import('./kernels.js')).kernelsCommand },
  { name: 'diff', summary: 'compare a baseline report.json with a new one (exit 1 on regression)', load: async () => (await import('./diff.js')).diffCommand },
  { name: 'report', summary: 'merge shards, render report.json/junit.xml/summary.md/index.html, show the diff', load: async () => (await import('./report.js')).reportCommand },
  { name: 'btf', summary: 'join kernels\' BTF into one C header; minimize a BTF to what objects\' CO-RE relocations need', load: async () => (await import('./btf.js')).btfCommand },
  { name: 'shell', summary: 'an interactive shell in a guest booted with the matrix image of one kernel', load: async () => (await import('../vm/shell-command.js')).shellCommand },
  { name: 'boot', summary: 'boot kernels with the guest image and print verdicts', load: async () => (await import('../vm/boot-command.js')).bootCommand },
];
