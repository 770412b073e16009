// Shell-style globs as libbpf and the matrix read them: `*` any run of characters, `?` exactly
// one, everything else literal (no classes, no escapes).

export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

export function globMatch(glob: string, name: string): boolean {
  return globToRegExp(glob).test(name);
}
