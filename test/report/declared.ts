// What harness/results.ts declares a RunReport to hold, leaf by leaf, read by the TypeScript checker
// itself (not restated by hand): the hostile-report tests put payloads into every leaf a real
// report has and judge the reader against these declarations.
import ts from 'typescript';

export interface DeclaredLeaf {
  /** JSON path with array indexes left out: `kernels[].cells[].relocations[].local`. */
  path: string;
  /** What the declared type admits: `string`, `number`, `boolean`, `null`, `unknown`, or a literal (`"pass"`, `1`). */
  admits: Set<string>;
  /** Optional in the interface, or of a type that holds `undefined` (JSON drops it): may be absent. */
  mayBeAbsent: boolean;
}

/** Every leaf of `RunReport` (harness/results.ts) and the types they admit. */
export function declaredLeaves(file = 'harness/results.ts', root = 'RunReport'): Map<string, DeclaredLeaf> {
  const program = ts.createProgram([file], { strict: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noEmit: true, skipLibCheck: true, types: [] });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  if (!source) throw new Error(`${file}: not found by the TypeScript compiler`);
  const symbol = checker.getExportsOfModule(checker.getSymbolAtLocation(source)!).find((s) => s.name === root);
  if (!symbol) throw new Error(`${file}: no export ${root}`);
  const out = new Map<string, DeclaredLeaf>();

  const describe = (t: ts.Type, path: string): string => {
    if (t.flags & ts.TypeFlags.Unknown || t.flags & ts.TypeFlags.Any) return 'unknown';
    if (t.flags & ts.TypeFlags.String) return 'string';
    if (t.flags & ts.TypeFlags.Number) return 'number';
    if (t.flags & ts.TypeFlags.BooleanLiteral) return 'boolean';
    if (t.flags & ts.TypeFlags.Null) return 'null';
    if (t.isStringLiteral()) return JSON.stringify(t.value);
    if (t.isNumberLiteral()) return String(t.value);
    throw new Error(`${path}: a type the hostile-report test does not know: ${checker.typeToString(t)}`);
  };

  const visit = (t: ts.Type, path: string, optional: boolean): void => {
    const members = (t.isUnion() ? t.types : [t]).filter((m) => !(m.flags & ts.TypeFlags.Undefined));
    const objects = members.filter((m) => m.flags & ts.TypeFlags.Object);
    if (objects.length) {
      if (objects.length !== members.length || objects.length > 1) throw new Error(`${path}: a union of objects and other types: ${checker.typeToString(t)}`);
      const o = objects[0]!;
      if (checker.isArrayType(o)) return visit(checker.getTypeArguments(o as ts.TypeReference)[0]!, `${path}[]`, false);
      for (const p of checker.getPropertiesOfType(o)) visit(checker.getTypeOfSymbol(p), path ? `${path}.${p.name}` : p.name, (p.flags & ts.SymbolFlags.Optional) !== 0);
      return;
    }
    const admits = new Set(members.map((m) => describe(m, path)));
    out.set(path, { path, admits, mayBeAbsent: optional || admits.has('unknown') });
  };
  visit(checker.getDeclaredTypeOfSymbol(symbol), '', false);
  return out;
}
