// Validate mermaid diagrams with mermaid's own parser, under Node.js.
//
// Usage: node validate.mjs FILE...   (or "-" for stdin)
// Prints one JSON object per line per input: {"file": ..., "ok": true, "type": ...}
// or {"file": ..., "ok": false, "error": ...}; exits 1 when any input fails.
//
// mermaid expects a browser: its DOMPurify import needs a window when the
// module is first evaluated, so jsdom's window and document become globals
// *before* mermaid is imported (hence the dynamic import below).
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
globalThis.DOMParser = dom.window.DOMParser;
globalThis.Element = dom.window.Element;

const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

let failed = false;
for (const file of process.argv.slice(2)) {
  const text = readFileSync(file === '-' ? 0 : file, 'utf8');
  try {
    const result = await mermaid.parse(text);
    console.log(JSON.stringify({ file, ok: true, type: result.diagramType }));
  } catch (error) {
    failed = true;
    console.log(JSON.stringify({ file, ok: false, error: String(error.message ?? error) }));
  }
}
process.exit(failed ? 1 : 0);
