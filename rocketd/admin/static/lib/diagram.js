// Diagrams laid out by dagre (vendored, loaded on first use as a classic script from this
// origin) and drawn as SVG: the entity-relationship diagram and the state diagrams.
import { html, useEffect, useState } from './html.js';

let loading = null;

function loadDagre() {
  if (window.dagre) return Promise.resolve(window.dagre);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = new URL('../vendor/dagre.js', import.meta.url).href;
      script.onload = () => resolve(window.dagre);
      script.onerror = () => reject(new Error('could not load the graph layout library'));
      document.head.appendChild(script);
    });
  }
  return loading;
}

// nodes: [{id, title, lines?, initial?}], edges: [{from, to, label}]
function layout(dagre, nodes, edges) {
  const graph = new dagre.graphlib.Graph({ multigraph: true });
  graph.setGraph({ rankdir: 'LR', nodesep: 30, ranksep: 70, marginx: 10, marginy: 10 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const node of nodes) {
    const lines = node.lines || [];
    const width = Math.max(node.title.length, ...lines.map((l) => l.length), 6) * 7.5 + 24;
    graph.setNode(node.id, { width, height: 28 + lines.length * 16, node });
  }
  edges.forEach((edge, i) => {
    graph.setEdge(edge.from, edge.to, { label: edge.label, width: edge.label.length * 6.5, height: 14, labelpos: 'c' }, `e${i}`);
  });
  dagre.layout(graph);
  return graph;
}

function pathOf(points) {
  return points.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
}

function arrowHead(points) {
  const [a, b] = points.slice(-2);
  const angle = Math.atan2(b.y - a.y, b.x - a.x);
  const size = 8;
  const left = { x: b.x - size * Math.cos(angle - 0.4), y: b.y - size * Math.sin(angle - 0.4) };
  const right = { x: b.x - size * Math.cos(angle + 0.4), y: b.y - size * Math.sin(angle + 0.4) };
  return `M${b.x},${b.y} L${left.x},${left.y} L${right.x},${right.y} Z`;
}

export function Diagram({ nodes, edges, label }) {
  const [graph, setGraph] = useState(null);
  const [error, setError] = useState(null);
  const key = JSON.stringify([nodes, edges]);
  useEffect(() => {
    let live = true;
    setError(null);
    loadDagre()
      .then((dagre) => live && setGraph(layout(dagre, nodes, edges)))
      .catch((err) => live && setError(err));
    return () => {
      live = false;
    };
  }, [key]);
  if (error) return html`<p class="field-error">The diagram cannot be drawn: ${error.message}</p>`;
  if (!graph) return html`<p aria-busy="true">Drawing…</p>`;
  const size = graph.graph();
  return html`<div class="diagram" tabindex="0" role="region" aria-label=${label}>
    <svg width=${Math.ceil(size.width)} height=${Math.ceil(size.height)} role="img" aria-label=${label}>
      ${graph.edges().map((e) => {
        const edge = graph.edge(e);
        return html`<g class="edge">
          <path d=${pathOf(edge.points)} />
          <path class="arrow" d=${arrowHead(edge.points)} />
          ${edge.label ? html`<text x=${edge.x} y=${edge.y + 4} text-anchor="middle">${edge.label}</text>` : null}
        </g>`;
      })}
      ${graph.nodes().map((id) => {
        const n = graph.node(id);
        const left = n.x - n.width / 2;
        const top = n.y - n.height / 2;
        return html`<g class=${n.node.initial ? 'node initial' : 'node'} data-node=${id}>
          <rect x=${left} y=${top} width=${n.width} height=${n.height} rx="6" />
          <text class="title" x=${n.x} y=${top + 18} text-anchor="middle">${n.node.title}</text>
          ${(n.node.lines || []).map((line, i) => html`<text x=${left + 10} y=${top + 36 + i * 16}>${line}</text>`)}
        </g>`;
      })}
    </svg>
  </div>`;
}
