// Debian version ordering (Debian Policy 5.6.12): [epoch:]upstream[-revision]. Written from the
// policy text: compare epochs numerically, then upstream and revision by alternating runs of
// non-digits (lexical, '~' sorts before everything, even the end; letters before non-letters)
// and digits (numerically).

export interface DebVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

const VALID = /^(?:(\d+):)?([0-9][A-Za-z0-9.+~:-]*?)(?:-([A-Za-z0-9.+~]+))?$/;

/** Splits a Debian version; undefined when it is not one. */
export function parseDebVersion(v: string): DebVersion | undefined {
  const m = VALID.exec(v.trim());
  if (!m) return undefined;
  const upstream = m[2]!;
  // A colon in the upstream part is only legal with an explicit epoch.
  if (upstream.includes(':') && m[1] === undefined) return undefined;
  return { epoch: m[1] === undefined ? 0 : Number(m[1]), upstream, revision: m[3] ?? '' };
}

/** The upstream part of a Debian version (epoch and revision dropped), e.g. 6.1.176 for 6.1.176-1. */
export function upstreamOf(v: string): string {
  return parseDebVersion(v)?.upstream ?? v;
}

function order(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === '~') return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

function comparePart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // Non-digit run, compared character by character with the modified ordering.
    while ((i < a.length && !isDigit(a[i])) || (j < b.length && !isDigit(b[j]))) {
      const ca = i < a.length && !isDigit(a[i]) ? a[i] : undefined;
      const cb = j < b.length && !isDigit(b[j]) ? b[j] : undefined;
      const d = order(ca) - order(cb);
      if (d !== 0) return d < 0 ? -1 : 1;
      if (ca !== undefined) i++;
      if (cb !== undefined) j++;
    }
    // Digit run, compared numerically (leading zeros do not matter; runs may exceed 2^53).
    let da = '';
    let db = '';
    while (isDigit(a[i])) da += a[i++];
    while (isDigit(b[j])) db += b[j++];
    da = da.replace(/^0+/, '');
    db = db.replace(/^0+/, '');
    if (da.length !== db.length) return da.length < db.length ? -1 : 1;
    if (da !== db) return da < db ? -1 : 1;
  }
  return 0;
}

/** Compares two Debian versions: negative, 0 or positive, like `dpkg --compare-versions`. */
export function compareDebVersions(a: string, b: string): number {
  const pa = parseDebVersion(a) ?? { epoch: 0, upstream: a, revision: '' };
  const pb = parseDebVersion(b) ?? { epoch: 0, upstream: b, revision: '' };
  if (pa.epoch !== pb.epoch) return pa.epoch < pb.epoch ? -1 : 1;
  return comparePart(pa.upstream, pb.upstream) || comparePart(pa.revision, pb.revision);
}
