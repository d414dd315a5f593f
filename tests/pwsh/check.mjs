// Parse each .ps1 named on the command line; print "FILE:LINE:COL: syntax error near TEXT"
// for each error node and exit 1 if any file has one. tree-sitter recovers from errors, so
// a file is broken exactly when its tree holds ERROR or MISSING nodes.
import { readFileSync } from 'node:fs';
import Parser from 'tree-sitter';
import PowerShell from 'tree-sitter-powershell';

const parser = new Parser();
parser.setLanguage(PowerShell);

function* problems(node) {
  if (node.isError || node.isMissing) {
    yield node;
    return;
  }
  if (!node.hasError) return;
  for (const child of node.children) yield* problems(child);
}

let failed = 0;
for (const file of process.argv.slice(2)) {
  const source = readFileSync(file, 'utf8');
  // The default 32 KiB buffer truncates larger inputs: give the whole file.
  const tree = parser.parse(source, null, { bufferSize: source.length * 2 + 1024 });
  for (const node of problems(tree.rootNode)) {
    const { row, column } = node.startPosition;
    const what = node.isMissing ? `missing ${node.type}` : `syntax error near ${JSON.stringify(node.text.slice(0, 40))}`;
    console.log(`${file}:${row + 1}:${column + 1}: ${what}`);
    failed += 1;
  }
}
console.log(`${process.argv.length - 2} files parsed, ${failed} errors`);
process.exit(failed ? 1 : 0);
