// Events (the _events routes): the stream (filterable, colour-coded by source, live), the
// waterfall of one trace, and the stats dashboard with charts.
import { html, useEffect, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { Chart } from '../lib/chart.js';
import { setQuery, useLocation } from '../lib/router.js';
import { CheckField, ErrorBox, Page, SelectField, TextField, formatTime, useLoad, usePolling } from '../lib/ui.js';

const SOURCES = ['', 'http', 'engine', 'auth', 'db', 'webhook', 'workflow', 'storage', 'business'];
const FILTERS = ['source', 'component', 'action', 'entity', 'event_type', 'trace_id', 'user_id', 'status', 'from', 'to'];

function Tabs({ app, current }) {
  const tabs = [['events', 'Stream'], ['events/stats', 'Stats']];
  return html`<nav class="tabs" aria-label="Events">${tabs.map(([path, label]) => html`<a href=${`/admin/apps/${app}/${path}`} aria-current=${current === path ? 'page' : undefined}>${label}</a>`)}</nav>`;
}

export function EventsPage({ app }) {
  const client = appApi(app);
  const { query } = useLocation();
  const params = Object.fromEntries([...query.entries()].filter(([k]) => FILTERS.includes(k) || k === 'page'));
  const events = useLoad(() => client.get('/_events', { query: { ...params, per_page: 50 } }), [app, query.toString()]);
  const [live, setLive] = useState(true);
  usePolling(live && !query.get('page'), events.reload, 2000);
  const page = events.data ? events.data.pagination : { page: 1, per_page: 50, total: 0 };
  const pages = Math.max(1, Math.ceil(page.total / page.per_page));
  return html`<${Page} title="Events" wide>
    <${Tabs} app=${app} current="events" />
    <div class="row filters">
      <${SelectField} label="Source" value=${query.get('source') || ''} options=${SOURCES} onChange=${(v) => setQuery({ source: v, page: null })} />
      <${TextField} label="Action" value=${query.get('action') || ''} onInput=${(v) => setQuery({ action: v, page: null }, { replace: true })} />
      <${TextField} label="Entity" value=${query.get('entity') || ''} onInput=${(v) => setQuery({ entity: v, page: null }, { replace: true })} />
      <${SelectField} label="Status" value=${query.get('status') || ''} options=${['', 'ok', 'error']} onChange=${(v) => setQuery({ status: v, page: null })} />
      <${TextField} label="Trace id" value=${query.get('trace_id') || ''} onInput=${(v) => setQuery({ trace_id: v.trim(), page: null }, { replace: true })} />
      <${CheckField} label="Live (refresh every 2 s)" checked=${live} onChange=${setLive} />
    </div>
    <${ErrorBox} error=${events.error} />
    ${events.data
      ? html`<p class="muted" role="status">${page.total} events</p>
        <ol class="event-list">${events.data.data.map((e) => html`<li key=${e.id} class=${`event src-${e.source}`}>
          <span class="pill">${e.source}</span>
          <strong>${e.action}</strong>
          ${e.entity ? html`<span>${e.entity}${e.record_id ? ` ${e.record_id}` : ''}</span>` : null}
          ${e.duration_ms !== null ? html`<span>${e.duration_ms.toFixed(2)} ms</span>` : null}
          ${e.status === 'error' ? html`<span class="pill error">error</span>` : null}
          <span class="muted">${formatTime(e.created_at)}</span>
          <a href=${`/admin/apps/${app}/events/trace/${e.trace_id}`}>Trace ${e.trace_id.slice(0, 8)}</a>
        </li>`)}</ol>
        <nav class="pager" aria-label="Pages">
          <button type="button" disabled=${page.page <= 1} onClick=${() => setQuery({ page: page.page > 2 ? String(page.page - 1) : null })}>Newer</button>
          <span>Page ${page.page} of ${pages}</span>
          <button type="button" disabled=${page.page >= pages} onClick=${() => setQuery({ page: String(page.page + 1) })}>Older</button>
        </nav>`
      : null}
  <//>`;
}

// Spans carry durations, not start times: children are laid out one after another inside their
// parent (what sequential work looks like), clamped to the parent's end.
export function waterfall(root) {
  const rows = [];
  const visit = (node, start, depth, parentEnd) => {
    const duration = node.duration_ms || 0;
    const end = Math.min(start + duration, parentEnd);
    rows.push({ node, start, end, depth });
    let cursor = start;
    for (const child of node.children || []) {
      visit(child, Math.min(cursor, end), depth + 1, end);
      cursor += child.duration_ms || 0;
    }
  };
  visit(root, 0, 0, root.duration_ms || Infinity);
  return rows;
}

// A request's events are stored in batches shortly after it ends (`instrumentation.
// flush_interval_ms`), so a trace followed right away may not be there yet (404), or only in part:
// its stored root then has a parent that is not stored yet. The page asks again every half second
// while that is so, for ten seconds at most (a root whose parent is another system's, from a
// `traceparent`, never arrives), showing what it has meanwhile.
const TRACE_ASKS = 20;

function stillStoring(trace) {
  if (trace.loading) return false;
  if (trace.error) return trace.error.status === 404;
  return Boolean(trace.data && trace.data.root_span.parent_span_id);
}

export function TracePage({ app, traceId }) {
  const client = appApi(app);
  const [asked, setAsked] = useState(0);
  const trace = useLoad(() => client.get(`/_events/trace/${traceId}`).then((r) => r.data), [app, traceId, asked]);
  const waiting = asked < TRACE_ASKS && stillStoring(trace);
  useEffect(() => {
    if (!waiting) return undefined;
    const timer = setTimeout(() => setAsked((n) => n + 1), 500);
    return () => clearTimeout(timer);
  }, [waiting, asked]);
  const missing = trace.error && trace.error.status === 404 && asked < TRACE_ASKS;
  const t = trace.data;
  const rows = t ? waterfall(t.root_span) : [];
  const total = t ? t.total_duration_ms || Math.max(...rows.map((r) => r.end), 1) : 1;
  const critical = new Set((t && t.critical_path) || []);
  return html`<${Page} title=${`Trace ${traceId.slice(0, 8)}`} wide>
    <${Tabs} app=${app} current="trace" />
    ${missing ? html`<p role="status" aria-busy="true">Waiting for the trace's events to be stored…</p>` : html`<${ErrorBox} error=${trace.error} />`}
    ${t
      ? html`<p>${rows.length} spans, ${total.toFixed(2)} ms. Trace id <code>${t.trace_id}</code>. <a href=${`/admin/apps/${app}/events?trace_id=${t.trace_id}`}>Its events in the stream</a></p>
        <ol class="waterfall" aria-label="Span timeline">${rows.map((r) => html`<li key=${r.node.span_id} class=${`src-${r.node.source}`}>
          <span class="span-name" style=${{ paddingLeft: `${r.depth}rem` }}>
            <strong>${r.node.action}</strong> <span class="muted">${r.node.source}${r.node.entity ? ` · ${r.node.entity}` : ''}</span>
            ${critical.has(String(r.node.span_id)) ? html` <span class="pill" title="critical path">critical</span>` : null}
          </span>
          <span class="bar-track" aria-label=${`${r.node.action}: ${(r.node.duration_ms ?? 0).toFixed(2)} ms`}>
            <span class=${r.node.status === 'error' ? 'bar error' : 'bar'} style=${{ left: `${(100 * r.start) / total}%`, width: `${Math.max(0.3, (100 * (r.end - r.start)) / total)}%` }}></span>
            <span class="bar-label">${r.node.duration_ms !== null ? `${r.node.duration_ms.toFixed(2)} ms` : 'event'}</span>
          </span>
        </li>`)}</ol>
        <h2>Spans</h2>
        <div class="table-wrap"><table>
          <thead><tr><th scope="col">Action</th><th scope="col">Source</th><th scope="col">Component</th><th scope="col">Duration</th><th scope="col">Status</th><th scope="col">Metadata</th></tr></thead>
          <tbody>${t.spans.map((s) => html`<tr key=${s.span_id}><td>${s.action}</td><td>${s.source}</td><td>${s.component}</td><td>${s.duration_ms ?? ''}</td><td>${s.status || ''}</td><td class="cell"><code>${JSON.stringify(s.metadata)}</code></td></tr>`)}</tbody>
        </table></div>`
      : null}
  <//>`;
}

export function StatsPage({ app }) {
  const client = appApi(app);
  const stats = useLoad(async () => {
    const [summary, requests] = await Promise.all([
      client.get('/_events/stats').then((r) => r.data),
      client.get('/_events', { query: { source: 'http', per_page: 100 } }).then((r) => r.data),
    ]);
    return { summary, requests: requests.filter((e) => e.duration_ms !== null).reverse() };
  }, [app]);
  const s = stats.data && stats.data.summary;
  const requests = stats.data ? stats.data.requests : [];
  return html`<${Page} title="Event stats" wide>
    <${Tabs} app=${app} current="events/stats" />
    <${ErrorBox} error=${stats.error} />
    ${s
      ? html`<ul class="stats" aria-label="Totals">
          <li><span><strong>${s.total_events}</strong> events</span></li>
          <li><span><strong>${s.avg_latency_ms ?? '—'}</strong> ms average</span></li>
          <li><span><strong>${s.p95_latency_ms ?? '—'}</strong> ms p95</span></li>
          <li><span><strong>${(s.error_rate * 100).toFixed(2)}%</strong> errors</span></li>
        </ul>
        ${s.by_source.length
          ? html`<${Chart} title="Duration by source (ms)" bars x=${s.by_source.map((_, i) => i)} names=${s.by_source.map((b) => b.source)}
              series=${[{ label: 'average', values: s.by_source.map((b) => b.avg_duration_ms) }, { label: 'p95', values: s.by_source.map((b) => b.p95_duration_ms) }]} />`
          : null}
        ${requests.length > 1
          ? html`<${Chart} title="Latest requests (ms)" x=${requests.map((e) => new Date(e.created_at).getTime() / 1000)}
              series=${[{ label: 'request', values: requests.map((e) => e.duration_ms) }]} />`
          : null}
        <h2>By source</h2>
        <div class="table-wrap"><table>
          <thead><tr><th scope="col">Source</th><th scope="col">Count</th><th scope="col">Average ms</th><th scope="col">p95 ms</th><th scope="col">Errors</th></tr></thead>
          <tbody>${s.by_source.map((b) => html`<tr class=${`src-${b.source}`}><th scope="row">${b.source}</th><td>${b.count}</td><td>${b.avg_duration_ms}</td><td>${b.p95_duration_ms}</td><td>${b.error_count}</td></tr>`)}</tbody>
        </table></div>
        ${s.slowest_traces && s.slowest_traces.length
          ? html`<h2>Slowest requests</h2><ol>${s.slowest_traces.map((t) => html`<li><a href=${`/admin/apps/${app}/events/trace/${t.trace_id}`}>${t.action} ${t.path || ''}</a> ${t.duration_ms} ms</li>`)}</ol>`
          : null}`
      : null}
  <//>`;
}
