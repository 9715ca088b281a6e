// UI configs: per-entity JSON for client UIs (layout, labels), by entity and scope.
import { html } from '../lib/html.js';
import { KindPage } from '../lib/kind.js';
import { JsonField, SelectField, TextField, formatTime } from '../lib/ui.js';

function ConfigFields({ draft, setDraft, at, under, entities }) {
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  return html`<div class="row">
      <${SelectField} label="Entity" value=${draft.entity} options=${['', ...entities.map((e) => e.name)]} onChange=${set('entity')} errors=${at('entity')} />
      <${TextField} label="Scope" value=${draft.scope} onInput=${set('scope')} errors=${at('scope')} />
    </div>
    <${JsonField} label="Config" value=${draft.config} onChange=${set('config')} rows=${10} errors=${under('config')} />`;
}

const UI_CONFIGS = {
  title: 'UI configs',
  noun: 'UI config',
  path: '/_admin/ui-configs',
  label: (row) => `${row.entity} ${row.scope}`,
  columns: [
    { label: 'Entity', cell: (r) => r.entity },
    { label: 'Scope', cell: (r) => r.scope },
    { label: 'Config', cell: (r) => html`<code>${JSON.stringify(r.config).slice(0, 120)}</code>` },
    { label: 'Updated', cell: (r) => formatTime(r.updated_at) },
  ],
  blank: (entities) => ({ entity: entities[0] ? entities[0].name : '', scope: 'default', config: {} }),
  toBody: (d) => ({ entity: d.entity, scope: d.scope || 'default', config: d.config || {} }),
  Fields: ConfigFields,
};

export function UiConfigsPage({ app }) {
  return html`<${KindPage} app=${app} kind=${UI_CONFIGS} />`;
}
