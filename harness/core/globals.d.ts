// The only host globals the pure core may use: text codecs, which are part of the JS language
// runtime everywhere (Node, browsers) and do no I/O. Declared here because the core compiles
// without Node or DOM types on purpose.
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: Uint8Array): string;
}
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
