// Parses Mermaid files with Mermaid's own parser, in node with jsdom for
// the DOM Mermaid expects. Run by the Go tests (topology_describe_test.go)
// with the packages that .ci/setup-mermaid.sh installs:
//
//	node mermaid-parse.mjs MODULES_DIR FILE...
//
// MODULES_DIR is the folder whose node_modules holds mermaid and jsdom.
// For every FILE it prints one JSON line: {"file", "ok", "error"} and, when
// the text parsed, what the parser saw: the diagram type, the vertices
// (id, shape, label with entity codes decoded), the edges and the
// subgraphs. It exits 0 when it could run, whatever the files held; 2 when
// the packages cannot be loaded.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [modulesDir, ...files] = process.argv.slice(2);
if (!modulesDir || files.length === 0) {
  console.error('usage: node mermaid-parse.mjs MODULES_DIR FILE...');
  process.exit(2);
}

let mermaid;
try {
  const require = createRequire(join(modulesDir, 'package.json'));
  const { JSDOM } = require('jsdom');
  const dom = new JSDOM('<!DOCTYPE html><html><body></body></html>');
  globalThis.window = dom.window;
  globalThis.document = dom.window.document;
  mermaid = (await import(pathToFileURL(require.resolve('mermaid')).href)).default;
  mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });
} catch (e) {
  console.error(`cannot load mermaid and jsdom from ${modulesDir}: ${e?.stack ?? e}`);
  process.exit(2);
}

// Mermaid keeps entity codes (#quot;) as placeholders until it renders.
const decode = (s) => String(s ?? '').replace(/ﬂ°°/g, '&#').replace(/ﬂ°/g, '&').replace(/¶ß/g, ';');

for (const file of files) {
  const out = { file, ok: false };
  try {
    const text = readFileSync(file, 'utf8');
    // parse throws on a syntax error (the check .ci/run relies on) ...
    await mermaid.parse(text);
    // ... and getDiagramFromText exposes what the parser built.
    const d = await mermaid.mermaidAPI.getDiagramFromText(text);
    out.ok = true;
    out.type = d.type;
    if (typeof d.db.getVertices === 'function') {
      out.vertices = [...d.db.getVertices().values()].map((v) => ({ id: v.id, shape: v.type, label: decode(v.text) }));
      out.edges = d.db.getEdges().map((e) => ({ from: e.start, to: e.end, type: e.type, stroke: e.stroke }));
      out.subgraphs = d.db.getSubGraphs().map((s) => ({ id: s.id, title: decode(s.title), nodes: s.nodes }));
    }
  } catch (e) {
    out.error = String(e?.message ?? e);
  }
  console.log(JSON.stringify(out));
}
