// Workflows: definitions (editor with a step diagram), pending approvals (approve or reject with
// a comment) and one instance's history.
import { html, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { Diagram } from '../lib/diagram.js';
import { KindPage } from '../lib/kind.js';
import { setQuery, useLocation } from '../lib/router.js';
import { CheckField, ErrorBox, Field, JsonField, Notice, Page, SelectField, TextField, formatTime, useLoad, usePolling } from '../lib/ui.js';

const APPROVALS_POLL_MS = 3000;

function blank(entity) {
  return {
    name: '',
    active: true,
    trigger: { type: 'state_change', entity: entity || '', field: 'status', to: '' },
    context: { record_id: 'record_id' },
    steps: [{ id: 'review', type: 'approval', assignee: { type: 'role', role: 'admin' }, on_approve: 'end', on_reject: 'end' }],
  };
}

function targetOf(goto) {
  if (!goto) return 'end';
  if (typeof goto === 'string') return goto;
  return goto.goto || 'end';
}

export function stepGraph(steps) {
  const nodes = [{ id: '__start', title: 'start' }, ...steps.map((s) => ({ id: s.id, title: `${s.id} (${s.type})` })), { id: 'end', title: 'end' }];
  const edges = steps.length ? [{ from: '__start', to: steps[0].id, label: '' }] : [];
  const outs = { action: ['then'], condition: ['on_true', 'on_false'], approval: ['on_approve', 'on_reject', 'on_timeout'] };
  for (const step of steps) {
    for (const key of outs[step.type] || []) {
      if (key === 'on_timeout' && !step.on_timeout) continue;
      edges.push({ from: step.id, to: targetOf(step[key]), label: key.replace('on_', '') });
    }
  }
  const known = new Set(nodes.map((n) => n.id));
  return { nodes, edges: edges.filter((e) => known.has(e.to)) };
}

function WorkflowFields({ draft, setDraft, at, under, entities }) {
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  const setTrigger = (key) => (value) => setDraft({ ...draft, trigger: { ...draft.trigger, [key]: value } });
  const entity = entities.find((e) => e.name === draft.trigger.entity);
  const graph = Array.isArray(draft.steps) ? stepGraph(draft.steps.filter((s) => s && s.id)) : { nodes: [], edges: [] };
  return html`
    <div class="row">
      <${TextField} label="Workflow name" value=${draft.name} onInput=${set('name')} errors=${at('name')} />
      <${CheckField} label="Active" checked=${draft.active} onChange=${set('active')} />
    </div>
    <fieldset><legend>Trigger: when a write changes a field to a value</legend>
      <div class="row">
        <${SelectField} label="Trigger entity" value=${draft.trigger.entity} options=${['', ...entities.map((e) => e.name)]} onChange=${setTrigger('entity')} errors=${at('trigger.entity')} />
        <${SelectField} label="Trigger field" value=${draft.trigger.field} options=${['', ...(entity ? entity.definition.fields.map((f) => f.name) : [])]} onChange=${setTrigger('field')} errors=${at('trigger.field')} />
        <${TextField} label="Changed to" value=${draft.trigger.to} onInput=${setTrigger('to')} errors=${at('trigger.to')} />
      </div>
    </fieldset>
    <${JsonField} label="Context (name: dot path)" value=${draft.context} onChange=${set('context')} rows=${4} errors=${under('context')} />
    <${JsonField} label="Steps" value=${draft.steps} onChange=${set('steps')} rows=${12} errors=${under('steps')} />
    ${graph.nodes.length > 2 ? html`<${Diagram} nodes=${graph.nodes} edges=${graph.edges} label="Steps of the workflow being edited" />` : null}`;
}

function WorkflowsKind(app) {
  return {
    title: 'Workflows',
    noun: 'workflow',
    path: '/_admin/workflows',
    label: (row) => row.name,
    columns: [
      { label: 'Name', cell: (w) => html`<strong>${w.name}</strong>` },
      { label: 'Trigger', cell: (w) => html`<code>${w.trigger.entity}.${w.trigger.field} → ${w.trigger.to}</code>` },
      { label: 'Steps', cell: (w) => w.steps.map((s) => s.id).join(' → ') },
      { label: 'Active', cell: (w) => (w.active ? 'yes' : 'no') },
    ],
    blank: (entities) => blank(entities[0] && entities[0].name),
    toBody: (d) => ({ name: d.name, active: d.active, trigger: d.trigger, context: d.context, steps: d.steps }),
    Fields: WorkflowFields,
    actions: (row) => html`<a class="button" href=${`/admin/apps/${app}/workflows/${row.id}/instances`}>Runs of ${row.name}</a>`,
    pageActions: html`<a class="button" href=${`/admin/apps/${app}/approvals`}>Pending approvals</a>`,
  };
}

export function WorkflowsPage({ app }) {
  return html`<${KindPage} app=${app} kind=${WorkflowsKind(app)} />`;
}

// One workflow's latest runs (GET /_admin/workflows/{id}/instances), by status.
export function WorkflowInstancesPage({ app, id }) {
  const client = appApi(app);
  const { query } = useLocation();
  const status = query.get('status') || '';
  const state = useLoad(async () => {
    const [workflow, runs] = await Promise.all([
      client.get(`/_admin/workflows/${id}`).then((r) => r.data),
      client.get(`/_admin/workflows/${id}/instances`, { query: { status } }).then((r) => r.data),
    ]);
    return { workflow, runs };
  }, [app, id, status]);
  const data = state.data;
  return html`<${Page} title=${data ? `Runs of ${data.workflow.name}` : 'Workflow runs'} wide>
    <${ErrorBox} error=${state.error} />
    <${SelectField} label="Status" value=${status} options=${['', 'running', 'completed', 'failed']} onChange=${(v) => setQuery({ status: v })} />
    ${data
      ? data.runs.length
        ? html`<div class="table-wrap"><table>
            <thead><tr><th scope="col">Started</th><th scope="col">Status</th><th scope="col">Current step</th><th scope="col">Last change</th><th scope="col">Context</th></tr></thead>
            <tbody>${data.runs.map((i) => html`<tr key=${i.id}>
              <td><a href=${`/admin/apps/${app}/instances/${i.id}`}>${formatTime(i.created_at)}</a></td>
              <td><span class="pill">${i.status}</span></td><td>${i.current_step || ''}</td>
              <td>${i.history.length ? `${i.history[i.history.length - 1].step}: ${i.history[i.history.length - 1].status}` : ''}</td>
              <td class="cell"><code>${JSON.stringify(i.context)}</code></td>
            </tr>`)}</tbody></table></div>`
        : html`<p>No runs${status ? ` with status ${status}` : ''}.</p>`
      : null}
  <//>`;
}

function Decision({ app, instance, onDone }) {
  const client = appApi(app);
  const [comment, setComment] = useState('');
  const [error, setError] = useState(null);
  const decide = async (verb) => {
    setError(null);
    try {
      const body = comment.trim() ? { comment: comment.trim() } : {};
      const answer = await client.post(`/_workflows/${instance.id}/${verb}`, body);
      onDone(verb, answer.data, answer.traceId);
    } catch (err) {
      setError(err);
    }
  };
  return html`<div>
    <${Field} label=${`Comment on ${instance.workflow_name} ${instance.current_step}`}
      render=${(a) => html`<textarea ...${a} rows="2" value=${comment} onInput=${(e) => setComment(e.currentTarget.value)}></textarea>`} />
    <div class="actions">
      <button type="button" class="primary" onClick=${() => decide('approve')}>Approve</button>
      <button type="button" class="danger" onClick=${() => decide('reject')}>Reject</button>
    </div>
    <${ErrorBox} error=${error} />
  </div>`;
}

export function ApprovalsPage({ app }) {
  const client = appApi(app);
  const [notice, setNotice] = useState('');
  const pending = useLoad(() => client.get('/_workflows/pending').then((r) => r.data), [app]);
  // New approvals appear by themselves: an instance reaches its step in the background.
  usePolling(true, pending.reload, APPROVALS_POLL_MS);
  const done = (verb, instance, traceId) => {
    setNotice(html`${verb === 'approve' ? 'Approved' : 'Rejected'}: ${instance.workflow_name} is now ${instance.status}. <a href=${`/admin/apps/${app}/instances/${instance.id}`}>See its history</a>${traceId ? html`, or <a href=${`/admin/apps/${app}/events/trace/${traceId}`}>follow the trace of this request</a>` : null}.`);
    pending.reload();
  };
  return html`<${Page} title="Pending approvals">
    <p class="muted">Refreshed every ${APPROVALS_POLL_MS / 1000} seconds.</p>
    <${Notice} kind="ok">${notice}<//>
    <${ErrorBox} error=${pending.error} />
    ${pending.data
      ? pending.data.length
        ? pending.data.map((i) => html`<section class="card" key=${i.id} aria-label=${`${i.workflow_name} at ${i.current_step}`}>
            <h2>${i.workflow_name}: <span class="muted">${i.current_step}</span></h2>
            <p>Started ${formatTime(i.created_at)}${i.current_step_deadline ? `, due ${formatTime(i.current_step_deadline)}` : ''}. <a href=${`/admin/apps/${app}/instances/${i.id}`}>History of ${i.workflow_name} ${i.id.slice(0, 8)}</a></p>
            <p>Context: <code>${JSON.stringify(i.context)}</code></p>
            <${Decision} app=${app} instance=${i} onDone=${done} />
          </section>`)
        : html`<p>Nothing waits for an approval.</p>`
      : null}
  <//>`;
}

export function InstancePage({ app, id }) {
  const client = appApi(app);
  const instance = useLoad(() => client.get(`/_workflows/${id}`).then((r) => r.data), [app, id]);
  const i = instance.data;
  return html`<${Page} title=${i ? `Workflow ${i.workflow_name}` : 'Workflow instance'}>
    <${ErrorBox} error=${instance.error} />
    ${i
      ? html`<dl class="facts">
          <dt>Status</dt><dd><span class="pill">${i.status}</span></dd>
          <dt>Current step</dt><dd>${i.current_step || '—'}</dd>
          <dt>Started</dt><dd>${formatTime(i.created_at)}</dd>
          <dt>Context</dt><dd><code>${JSON.stringify(i.context)}</code></dd>
        </dl>
        <h2>History</h2>
        <ol class="history">${i.history.map((h) => html`<li><strong>${h.step}</strong>: ${h.status}${h.by ? ` by ${h.by}` : ''}${h.comment ? html` — “${h.comment}”` : null} <span class="muted">${formatTime(h.at)}</span></li>`)}</ol>
        ${i.status === 'running' ? html`<p><a href=${`/admin/apps/${app}/approvals`}>Pending approvals</a></p>` : null}`
      : null}
  <//>`;
}
