// Webhooks (editor) and their delivery logs (filter by webhook, status, entity; retry).
import { html, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { KindPage } from '../lib/kind.js';
import { setQuery, useLocation } from '../lib/router.js';
import { CheckField, ErrorBox, JsonField, Page, SelectField, TextField, formatTime, useLoad } from '../lib/ui.js';

const HOOKS = ['after_write', 'before_write', 'after_delete', 'before_delete'];
const METHODS = ['POST', 'PUT', 'PATCH', 'GET', 'DELETE'];
const STATUSES = ['', 'pending', 'delivered', 'retrying', 'failed'];

function WebhookFields({ draft, setDraft, at, under, entities }) {
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  return html`<div class="row">
      <${SelectField} label="Entity" value=${draft.entity} options=${['', ...entities.map((e) => e.name)]} onChange=${set('entity')} errors=${at('entity')} />
      <${SelectField} label="Hook" value=${draft.hook} options=${HOOKS} onChange=${set('hook')} errors=${at('hook')} />
      <${SelectField} label="Method" value=${draft.method} options=${METHODS} onChange=${set('method')} errors=${at('method')} />
      <${TextField} label="URL" type="url" value=${draft.url} onInput=${set('url')} errors=${at('url')} />
    </div>
    <div class="row">
      <${TextField} label="Condition (expression; empty: always)" value=${draft.condition} onInput=${set('condition')} errors=${at('condition')} />
      <${CheckField} label="Asynchronous (after commit, with retries)" checked=${draft.async} onChange=${set('async')} errors=${at('async')} />
      <${CheckField} label="Active" checked=${draft.active} onChange=${set('active')} />
    </div>
    <div class="row">
      <div class="field"><${JsonField} label="Headers" value=${draft.headers} onChange=${set('headers')} rows=${4} errors=${under('headers')} /></div>
      <div class="field"><${JsonField} label="Retry" value=${draft.retry} onChange=${set('retry')} rows=${4} errors=${under('retry')} /></div>
    </div>`;
}

const WEBHOOKS = {
  title: 'Webhooks',
  noun: 'webhook',
  path: '/_admin/webhooks',
  label: (row) => `${row.entity} ${row.hook} ${row.url}`,
  columns: [
    { label: 'Entity', cell: (r) => r.entity },
    { label: 'Hook', cell: (r) => r.hook },
    { label: 'Request', cell: (r) => html`<code>${r.method} ${r.url}</code>` },
    { label: 'Condition', cell: (r) => html`<code>${r.condition}</code>` },
    { label: 'Active', cell: (r) => (r.active ? 'yes' : 'no') },
  ],
  blank: (entities) => ({ entity: entities[0] ? entities[0].name : '', hook: 'after_write', method: 'POST', url: '', condition: '', async: true, active: true, headers: {}, retry: { max_attempts: 3, backoff: 'exponential' } }),
  toBody: (d) => ({ entity: d.entity, hook: d.hook, method: d.method, url: d.url, condition: d.condition, async: Boolean(d.async), active: Boolean(d.active), headers: d.headers || {}, retry: d.retry }),
  Fields: WebhookFields,
};

export function WebhooksPage({ app }) {
  const kind = { ...WEBHOOKS, pageActions: html`<a class="button" href=${`/admin/apps/${app}/webhook-logs`}>Delivery logs</a>` };
  return html`<${KindPage} app=${app} kind=${kind} />`;
}

export function WebhookLogsPage({ app }) {
  const client = appApi(app);
  const { query } = useLocation();
  const filters = { webhook_id: query.get('webhook_id') || '', status: query.get('status') || '', entity: query.get('entity') || '' };
  const state = useLoad(async () => {
    const [webhooks, logs] = await Promise.all([client.get('/_admin/webhooks'), client.get('/_admin/webhook-logs', { query: filters })]);
    return { webhooks: webhooks.data, logs: logs.data };
  }, [app, query.toString()]);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState('');
  const retry = async (log) => {
    setError(null);
    try {
      const { data } = await client.post(`/_admin/webhook-logs/${log.id}/retry`, {});
      setNotice(`Delivery ${log.id.slice(0, 8)} queued again (status ${data.status}).`);
      state.reload();
    } catch (err) {
      setError(err);
    }
  };
  const data = state.data;
  return html`<${Page} title="Webhook delivery logs" wide>
    <p role="status">${notice}</p>
    <${ErrorBox} error=${error || state.error} />
    <div class="row filters">
      <${SelectField} label="Webhook" value=${filters.webhook_id} options=${[{ value: '', label: 'all' }, ...(data ? data.webhooks.map((w) => ({ value: w.id, label: `${w.entity} ${w.hook} ${w.url}` })) : [])]}
        onChange=${(v) => setQuery({ webhook_id: v })} />
      <${SelectField} label="Status" value=${filters.status} options=${STATUSES} onChange=${(v) => setQuery({ status: v })} />
      <${TextField} label="Entity" value=${filters.entity} onInput=${(v) => setQuery({ entity: v }, { replace: true })} />
    </div>
    ${data
      ? data.logs.length
        ? html`<div class="table-wrap"><table>
            <thead><tr><th scope="col">When</th><th scope="col">Entity</th><th scope="col">Request</th><th scope="col">Status</th><th scope="col">Attempt</th><th scope="col">Response</th><th scope="col">Error</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>${data.logs.map((l) => html`<tr key=${l.id}>
              <td>${formatTime(l.created_at)}</td><td>${l.entity} ${l.hook}</td><td><code>${l.method} ${l.url}</code></td>
              <td><span class="pill">${l.status}</span></td><td>${l.attempt}/${l.max_attempts}</td><td>${l.response_status || ''}</td><td class="cell">${l.error || ''}</td>
              <td>${l.status === 'failed' || l.status === 'retrying' ? html`<button type="button" onClick=${() => retry(l)}>Retry delivery ${l.id.slice(0, 8)}</button>` : null}</td>
            </tr>`)}</tbody></table></div>`
        : html`<p>No deliveries match.</p>`
      : null}
  <//>`;
}
