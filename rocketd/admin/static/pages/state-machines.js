// State machines: the list with a rendered state diagram for each, and an editor (entity, field,
// initial state, transitions as JSON, validated by the API).
import { html, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { Diagram } from '../lib/diagram.js';
import { CheckField, ConfirmDelete, ErrorBox, JsonField, Notice, Page, SelectField, TextField, useLoad } from '../lib/ui.js';

function blank(entity) {
  return { entity: entity || '', field: '', active: true, definition: { initial: '', transitions: [{ from: '', to: '' }] } };
}

export function stateGraph(definition) {
  const states = new Set(definition.initial ? [definition.initial] : []);
  const edges = [];
  const transitions = Array.isArray(definition.transitions) ? definition.transitions : [];
  for (const t of transitions) {
    if (!t || typeof t.to !== 'string' || !t.to) continue; // a draft being typed
    for (const from of [].concat(t.from).filter((f) => typeof f === 'string' && f)) {
      states.add(from);
      states.add(t.to);
      const extras = [t.guard ? 'guard' : '', t.roles && t.roles.length ? t.roles.join('/') : ''].filter(Boolean);
      edges.push({ from, to: t.to, label: extras.join(', ') });
    }
  }
  return { nodes: [...states].map((s) => ({ id: s, title: s, initial: s === definition.initial })), edges };
}

function MachineForm({ app, entities, initial, onSaved, onCancel }) {
  const client = appApi(app);
  const isNew = !initial.id;
  const [draft, setDraft] = useState(initial);
  const [error, setError] = useState(null);
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  const setDef = (key) => (value) => setDraft({ ...draft, definition: { ...draft.definition, [key]: value } });
  const at = (key) => (error && error.fieldMessages ? error.fieldMessages(key) : []);
  const entity = entities.find((e) => e.name === draft.entity);
  const save = async (event) => {
    event.preventDefault();
    setError(null);
    const definition = { ...draft.definition };
    if (!definition.initial) delete definition.initial;
    const body = { entity: draft.entity, field: draft.field, active: draft.active, definition };
    try {
      if (isNew) await client.post('/_admin/state-machines', body);
      else await client.put(`/_admin/state-machines/${initial.id}`, body);
      onSaved();
    } catch (err) {
      setError(err);
    }
  };
  const graph = stateGraph(draft.definition);
  return html`<form class="card" onSubmit=${save} aria-labelledby="machine-form" novalidate>
    <h2 id="machine-form">${isNew ? 'New state machine' : `Edit state machine ${draft.entity}.${draft.field}`}</h2>
    <${ErrorBox} error=${error} title="Not saved" />
    <div class="row">
      <${SelectField} label="Entity" value=${draft.entity} options=${['', ...entities.map((e) => e.name)]} onChange=${set('entity')} errors=${at('entity')} />
      <${SelectField} label="State field" value=${draft.field} options=${['', ...(entity ? entity.definition.fields.map((f) => f.name) : [])]} onChange=${set('field')} errors=${at('field')} />
      <${TextField} label="Initial state" value=${draft.definition.initial || ''} onInput=${setDef('initial')} errors=${at('definition.initial')} />
      <${CheckField} label="Active" checked=${draft.active} onChange=${set('active')} />
    </div>
    <${JsonField} label="Transitions" value=${draft.definition.transitions} onChange=${setDef('transitions')} rows=${10}
      errors=${(error && error.details ? error.details.filter((d) => d.field && d.field.startsWith('definition.transitions')).map((d) => `${d.field}: ${d.message}`) : [])}
      hint='[{"from": "draft", "to": "sent"}, {"from": ["sent"], "to": "paid", "guard": "record.total > 0", "roles": ["accounting"]}]' />
    ${graph.nodes.length ? html`<${Diagram} nodes=${graph.nodes} edges=${graph.edges} label="State diagram of the machine being edited" />` : null}
    <div class="actions">
      <button type="submit" class="primary">${isNew ? 'Create state machine' : 'Save state machine'}</button>
      <button type="button" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

export function StateMachinesPage({ app }) {
  const client = appApi(app);
  const [editing, setEditing] = useState(null);
  const [notice, setNotice] = useState('');
  const state = useLoad(async () => {
    const [entities, machines] = await Promise.all([client.get('/_admin/entities'), client.get('/_admin/state-machines')]);
    return { entities: entities.data, machines: machines.data };
  }, [app]);
  const saved = () => {
    setNotice('State machine saved.');
    setEditing(null);
    state.reload();
  };
  const data = state.data;
  return html`<${Page} title="State machines" actions=${html`<button type="button" class="primary" onClick=${() => setEditing(blank(data && data.entities[0] && data.entities[0].name))}>New state machine</button>`}>
    <${Notice}>${notice}<//>
    <${ErrorBox} error=${state.error} />
    ${editing && data ? html`<${MachineForm} key=${editing.id || 'new'} app=${app} entities=${data.entities} initial=${editing} onSaved=${saved} onCancel=${() => setEditing(null)} />` : null}
    ${data
      ? data.machines.length
        ? data.machines.map((m) => {
            const graph = stateGraph(m.definition);
            const label = `${m.entity}.${m.field}`;
            return html`<section class="card" key=${m.id} aria-label=${`State machine ${label}`}>
              <h2>${label} ${m.active ? null : html`<span class="pill">inactive</span>`}</h2>
              <${Diagram} nodes=${graph.nodes} edges=${graph.edges} label=${`State diagram of ${label}`} />
              <div class="actions">
                <button type="button" onClick=${() => setEditing(m)}>Edit ${label}</button>
                <${ConfirmDelete} name=${label} what="state machine" onConfirm=${async () => { await client.del(`/_admin/state-machines/${m.id}`); setNotice('State machine deleted.'); state.reload(); }} />
              </div>
            </section>`;
          })
        : html`<p>No state machines yet.</p>`
      : null}
  <//>`;
}
