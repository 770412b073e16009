// The host tools corematrix runs by name (scripts/setup.mjs and .ci/run install them).

/** The BPF compiler: Debian bookworm's clang 19 (suites, fixtures, the selftest corpus, cm-seed). */
export const CLANG = 'clang-19';
