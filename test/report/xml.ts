// A strict XML 1.0 well-formedness checker for the tests (no DTD support: our files have none).
// It builds a small element tree so tests can query what a JUnit consumer would see, and throws
// with the offset on anything a conforming parser would reject.

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const NAME = /^[A-Za-z_:][A-Za-z0-9_:.-]*/;
// XML 1.0 Char production, as a test on code points.
function validChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

function decode(raw: string, at: number, inAttr: boolean): string {
  if (raw.includes('<')) throw new Error(`'<' in ${inAttr ? 'attribute value' : 'text'} at ${at}`);
  if (!inAttr && raw.includes(']]>')) throw new Error(`']]>' in text at ${at}`);
  return raw.replace(/&([^;]*);?/g, (m, body: string) => {
    if (!m.endsWith(';')) throw new Error(`unterminated entity '${m.slice(0, 12)}' at ${at}`);
    const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (body in named) return named[body]!;
    const num = /^#(\d+)$/.exec(body) ?? /^#x([0-9a-fA-F]+)$/.exec(body);
    if (!num) throw new Error(`unknown entity &${body}; at ${at}`);
    const cp = parseInt(num[1]!, body.startsWith('#x') ? 16 : 10);
    if (!validChar(cp)) throw new Error(`character reference &${body}; is not an XML character at ${at}`);
    return String.fromCodePoint(cp);
  });
}

export function parseXml(xml: string): XmlElement {
  for (let i = 0; i < xml.length; i++) {
    const cp = xml.codePointAt(i)!;
    if (cp > 0xffff) i++;
    else if (cp >= 0xd800 && cp <= 0xdfff) throw new Error(`lone surrogate at ${i}`);
    if (!validChar(cp)) throw new Error(`invalid XML character U+${cp.toString(16).padStart(4, '0')} at ${i}`);
  }
  let pos = 0;
  if (xml.startsWith('<?xml')) {
    const end = xml.indexOf('?>');
    if (end < 0) throw new Error('unterminated XML declaration');
    if (!/^<\?xml\s+version="1\.[0-9]"(\s+encoding="[A-Za-z0-9._-]+")?(\s+standalone="(yes|no)")?\s*\?>$/.test(xml.slice(0, end + 2))) throw new Error('malformed XML declaration');
    pos = end + 2;
  }
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  while (pos < xml.length) {
    const lt = xml.indexOf('<', pos);
    const text = xml.slice(pos, lt < 0 ? xml.length : lt);
    if (text) {
      if (stack.length === 0) {
        if (text.trim()) throw new Error(`text outside the root element at ${pos}`);
      } else stack[stack.length - 1]!.text += decode(text, pos, false);
    }
    if (lt < 0) break;
    pos = lt;
    if (xml.startsWith('<!--', pos)) {
      const end = xml.indexOf('-->', pos + 4);
      if (end < 0 || xml.slice(pos + 4, end).includes('--')) throw new Error(`malformed comment at ${pos}`);
      pos = end + 3;
    } else if (xml.startsWith('<![CDATA[', pos)) {
      if (!stack.length) throw new Error(`CDATA outside the root element at ${pos}`);
      const end = xml.indexOf(']]>', pos);
      if (end < 0) throw new Error(`unterminated CDATA at ${pos}`);
      stack[stack.length - 1]!.text += xml.slice(pos + 9, end);
      pos = end + 3;
    } else if (xml.startsWith('<?', pos)) {
      const end = xml.indexOf('?>', pos);
      if (end < 0) throw new Error(`unterminated processing instruction at ${pos}`);
      pos = end + 2;
    } else if (xml.startsWith('<!', pos)) {
      throw new Error(`DOCTYPE/markup declaration not expected at ${pos}`);
    } else if (xml.startsWith('</', pos)) {
      const m = NAME.exec(xml.slice(pos + 2));
      if (!m) throw new Error(`bad end tag at ${pos}`);
      const after = pos + 2 + m[0].length;
      const close = /^\s*>/.exec(xml.slice(after));
      if (!close) throw new Error(`bad end tag at ${pos}`);
      const open = stack.pop();
      if (!open || open.name !== m[0]) throw new Error(`end tag </${m[0]}> does not match <${open?.name ?? '(none)'}> at ${pos}`);
      pos = after + close[0].length;
    } else {
      const m = NAME.exec(xml.slice(pos + 1));
      if (!m) throw new Error(`bad start tag at ${pos}`);
      const el: XmlElement = { name: m[0], attrs: {}, children: [], text: '' };
      let p = pos + 1 + m[0].length;
      for (;;) {
        const ws = /^\s*/.exec(xml.slice(p))![0];
        p += ws.length;
        if (xml.startsWith('/>', p) || xml.startsWith('>', p)) break;
        if (!ws) throw new Error(`missing whitespace before attribute at ${p}`);
        const a = /^([A-Za-z_:][A-Za-z0-9_:.-]*)\s*=\s*("([^"]*)"|'([^']*)')/.exec(xml.slice(p));
        if (!a) throw new Error(`bad attribute at ${p}`);
        if (a[1]! in el.attrs) throw new Error(`duplicate attribute ${a[1]} at ${p}`);
        el.attrs[a[1]!] = decode(a[3] ?? a[4]!, p, true);
        p += a[0].length;
      }
      if (stack.length) stack[stack.length - 1]!.children.push(el);
      else if (root) throw new Error(`second root element <${el.name}> at ${pos}`);
      else root = el;
      if (xml.startsWith('/>', p)) pos = p + 2;
      else {
        stack.push(el);
        pos = p + 1;
      }
    }
  }
  if (stack.length) throw new Error(`unclosed element <${stack[stack.length - 1]!.name}>`);
  if (!root) throw new Error('no root element');
  return root;
}

export function all(el: XmlElement, name: string): XmlElement[] {
  const out: XmlElement[] = [];
  const walk = (e: XmlElement) => {
    if (e.name === name) out.push(e);
    e.children.forEach(walk);
  };
  walk(el);
  return out;
}
