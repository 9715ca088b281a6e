// Charts drawn by uPlot (vendored ES module, canvas; no inline script or style attribute).
import { html, useEffect, useRef } from './html.js';
import uPlot from '../vendor/uplot.js';

const COLOURS = ['#0a5bd3', '#b35900', '#116329', '#8250df', '#bf3989', '#57606a'];

// series: [{label, values}], x: numbers (unix seconds for time, else indices named by `names`).
export function Chart({ title, x, series, names, bars, height }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current) return undefined;
    const width = Math.max(280, Math.min(box.current.clientWidth || 600, 900));
    const options = {
      title,
      width,
      height: height || 240,
      // Bars: one slot per name, with room at both ends so the outer bars are whole.
      scales: { x: names ? { time: false, range: () => [-0.5, names.length - 0.5] } : { time: true } },
      axes: [
        names ? { values: (u, ticks) => ticks.map((t) => names[t] ?? ''), space: 40 } : {},
        { label: 'ms' },
      ],
      series: [{}, ...series.map((s, i) => ({
        label: s.label,
        stroke: COLOURS[i % COLOURS.length],
        width: 2,
        fill: bars ? `${COLOURS[i % COLOURS.length]}55` : undefined,
        // Side by side: the first series left of the slot's centre, the second right of it.
        paths: bars ? uPlot.paths.bars({ size: [0.35, 60], align: series.length > 1 ? (i === 0 ? -1 : 1) : 0 }) : undefined,
        points: { show: !bars },
      }))],
    };
    const plot = new uPlot(options, [x, ...series.map((s) => s.values)], box.current);
    return () => plot.destroy();
  }, [JSON.stringify([title, x, series, names, bars])]);
  return html`<figure class="chart"><div ref=${box} role="img" aria-label=${title}></div>
    <figcaption class="sr-only">${title}: ${series.map((s) => `${s.label} ${s.values.map((v, i) => `${names ? names[i] : ''} ${v ?? 'none'}`).join(', ')}`).join('; ')}</figcaption></figure>`;
}
