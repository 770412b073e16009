// The one way HTML is made in the reports (index.html and its cells/ pages): the `html` tag
// escapes every `${…}` unless it is markup the tag itself made. A report.json may come from
// anywhere (a CI artifact, a shard), so numbers are escaped too, and no string concatenation
// builds markup anywhere. Each page's Content-Security-Policy then allows exactly its own
// <style> (and, on index.html, its own <script>) by sha256.

import { createHash } from 'node:crypto';
import { visible } from './grid.js';

// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /[&<>"'\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;
const ENTITY: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text for an element's content or a quoted attribute: control characters made visible, then escaped. */
export function esc(s: string): string {
  // Most values need nothing: a corpus page escapes millions of them.
  if (!NEEDS_ESCAPE.test(s)) return s;
  return visible(s).replace(/[&<>"']/g, (c) => ENTITY[c]!);
}

/** Markup made by the `html` tag (or a page's own CSS/JS constants): inserted as is. */
export class Html {
  private constructor(readonly markup: string) {}
  /** For the `html` tag's own output and the pages' constants (policy, <style>, <script>): never for report data. */
  static constant(markup: string): Html {
    return new Html(markup);
  }
  static join(parts: readonly Html[], sep = ''): Html {
    return new Html(parts.map((p) => p.markup).join(sep));
  }
}

/** What `${…}` may hold in `html`: markup from this tag, or a value (escaped); `undefined` is nothing. */
export type Value = Html | string | number | undefined | readonly Value[];

function insert(v: Value): string {
  if (v instanceof Html) return v.markup;
  if (v === undefined) return '';
  if (Array.isArray(v)) return v.map(insert).join('');
  return esc(String(v));
}

/** The one way to make markup: every interpolated value is escaped, numbers too. */
export function html(parts: TemplateStringsArray, ...values: Value[]): Html {
  let out = parts[0]!;
  values.forEach((v, i) => {
    out += insert(v) + parts[i + 1]!;
  });
  return Html.constant(out);
}

/** Lines of markup, one per line in the file (easier to read and diff). */
export const lines = (parts: readonly Html[]): Html => Html.join(parts, '\n');

/** A CSP hash source for an inline <style> or <script> body exactly as written. */
export const sha256Source = (text: string): string => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
