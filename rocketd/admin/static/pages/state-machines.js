// State machines: the list with a rendered state diagram for each, and an editor (entity, field,
// initial state, transitions as JSON, validated by the API).
import { html } from '../lib/html.js';
import { Diagram } from '../lib/diagram.js';
import { KindPage } from '../lib/kind.js';
import { CheckField, JsonField, SelectField, TextField } from '../lib/ui.js';

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

function MachineFields({ draft, setDraft, at, under, entities }) {
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  const setDef = (key) => (value) => setDraft({ ...draft, definition: { ...draft.definition, [key]: value } });
  const entity = entities.find((e) => e.name === draft.entity);
  const graph = stateGraph(draft.definition);
  return html`
    <div class="row">
      <${SelectField} label="Entity" value=${draft.entity} options=${['', ...entities.map((e) => e.name)]} onChange=${set('entity')} errors=${at('entity')} />
      <${SelectField} label="State field" value=${draft.field} options=${['', ...(entity ? entity.definition.fields.map((f) => f.name) : [])]} onChange=${set('field')} errors=${at('field')} />
      <${TextField} label="Initial state" value=${draft.definition.initial || ''} onInput=${setDef('initial')} errors=${at('definition.initial')} />
      <${CheckField} label="Active" checked=${draft.active} onChange=${set('active')} />
    </div>
    <${JsonField} label="Transitions" value=${draft.definition.transitions} onChange=${setDef('transitions')} rows=${10}
      errors=${under('definition.transitions')}
      hint='[{"from": "draft", "to": "sent"}, {"from": ["sent"], "to": "paid", "guard": "record.total > 0", "roles": ["accounting"]}]' />
    ${graph.nodes.length ? html`<${Diagram} nodes=${graph.nodes} edges=${graph.edges} label="State diagram of the machine being edited" />` : null}`;
}

function bodyOf(draft) {
  const definition = { ...draft.definition };
  if (!definition.initial) delete definition.initial;
  return { entity: draft.entity, field: draft.field, active: draft.active, definition };
}

const MACHINES = {
  title: 'State machines',
  noun: 'state machine',
  path: '/_admin/state-machines',
  label: (row) => `${row.entity}.${row.field}`,
  columns: [
    { label: 'Machine', cell: (r) => html`<strong>${r.entity}.${r.field}</strong>${r.active ? null : html` <span class="pill">inactive</span>`}` },
    { label: 'States', cell: (r) => { const g = stateGraph(r.definition); return html`<${Diagram} nodes=${g.nodes} edges=${g.edges} label=${`State diagram of ${r.entity}.${r.field}`} />`; } },
  ],
  blank: (entities) => blank(entities[0] && entities[0].name),
  toBody: bodyOf,
  Fields: MachineFields,
};

export function StateMachinesPage({ app }) {
  return html`<${KindPage} app=${app} kind=${MACHINES} />`;
}
