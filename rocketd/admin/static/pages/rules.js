// Rules (on the shared KindPage): the list, an editor for field / expression / computed rules, and a live panel that
// tests the rule being edited against a record (POST /_admin/rules/test: the server's own
// evaluator, nothing written).
import { html, useEffect, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { KindPage } from '../lib/kind.js';
import { CheckField, ErrorBox, Field, JsonField, SelectField, TextField } from '../lib/ui.js';

const HOOKS = ['before_write', 'before_delete', 'after_write'];
const TYPES = ['expression', 'field', 'computed'];
const OPERATORS = ['min', 'max', 'min_length', 'max_length', 'pattern'];

function blank(entity) {
  return { entity: entity || '', hook: 'before_write', type: 'expression', priority: 0, active: true, definition: { expression: '', message: '' } };
}

function bodyOf(draft) {
  const d = draft.definition;
  const definition = {};
  if (draft.type === 'field') {
    definition.field = d.field || '';
    definition.operator = d.operator || 'min';
    const number = Number(d.value);
    definition.value = d.operator === 'pattern' || d.value === '' || Number.isNaN(number) ? d.value : number;
  } else {
    definition.expression = d.expression || '';
    if (draft.type === 'computed') definition.field = d.field || '';
  }
  if (d.message) definition.message = d.message;
  if (d.stop_on_fail) definition.stop_on_fail = true;
  return { entity: draft.entity, hook: draft.hook, type: draft.type, priority: Number(draft.priority) || 0, active: Boolean(draft.active), definition };
}

function TestPanel({ app, draft }) {
  const client = appApi(app);
  const [record, setRecord] = useState({});
  const [old, setOld] = useState({});
  const [action, setAction] = useState('create');
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const body = JSON.stringify(bodyOf(draft));
  // Live: every change of the rule or the record is tested again (after a short pause).
  useEffect(() => {
    if (!draft.entity) return undefined;
    const timer = setTimeout(async () => {
      try {
        const { data } = await client.post('/_admin/rules/test', { rule: JSON.parse(body), record, old, action });
        setResult(data);
        setError(null);
      } catch (err) {
        setResult(null);
        setError(err);
      }
    }, 300);
    return () => clearTimeout(timer);
  }, [body, JSON.stringify(record), JSON.stringify(old), action]);
  return html`<section class="card" aria-labelledby="rule-test">
    <h2 id="rule-test">Test this rule against a record</h2>
    <div class="row">
      <${SelectField} label="Write" value=${action} options=${['create', 'update', 'delete']} onChange=${setAction} />
    </div>
    <div class="row">
      <div class="field"><${JsonField} label="Record (the values the write sends)" value=${record} onChange=${setRecord} rows=${5} /></div>
      ${action !== 'create' ? html`<div class="field"><${JsonField} label="Stored record (old)" value=${old} onChange=${setOld} rows=${5} /></div>` : null}
    </div>
    <div aria-live="polite" class="test-result">
      ${result
        ? result.passed
          ? html`<p class="notice ok"><strong>Passes.</strong>${Object.keys(result.computed).length ? html` Computed: <code>${JSON.stringify(result.computed)}</code>` : null}</p>`
          : html`<div class="error-box"><p><strong>Rejected:</strong></p><ul>${result.violations.map((v) => html`<li>${v.field ? html`<code>${v.field}</code>: ` : null}${v.message}</li>`)}</ul></div>`
        : null}
      ${error ? html`<${ErrorBox} error=${error} title="The rule cannot be tested yet" />` : null}
    </div>
  </section>`;
}

function RuleFields({ app, draft, setDraft, at, entities }) {
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  const setDef = (key) => (value) => setDraft({ ...draft, definition: { ...draft.definition, [key]: value } });
  const entity = entities.find((e) => e.name === draft.entity);
  const fieldNames = ['', ...(entity ? entity.definition.fields.map((f) => f.name) : [])];
  const d = draft.definition;
  return html`
    <div class="row">
      <${SelectField} label="Entity" value=${draft.entity} options=${['', ...entities.map((e) => e.name)]} onChange=${set('entity')} errors=${at('entity')} />
      <${SelectField} label="Hook" value=${draft.hook} options=${HOOKS} onChange=${set('hook')} errors=${at('hook')} />
      <${SelectField} label="Rule type" value=${draft.type} options=${TYPES} onChange=${set('type')} errors=${at('type')} />
      <${TextField} label="Priority" type="number" value=${draft.priority} onInput=${set('priority')} errors=${at('priority')} hint="lower runs first" />
    </div>
    ${draft.type === 'field'
      ? html`<div class="row">
          <${SelectField} label="Field" value=${d.field || ''} options=${fieldNames} onChange=${setDef('field')} errors=${at('definition.field')} />
          <${SelectField} label="Operator" value=${d.operator || 'min'} options=${OPERATORS} onChange=${setDef('operator')} errors=${at('definition.operator')} />
          <${TextField} label="Value" value=${d.value ?? ''} onInput=${setDef('value')} errors=${at('definition.value')} />
        </div>`
      : html`<div class="row">
          ${draft.type === 'computed' ? html`<${SelectField} label="Field to compute" value=${d.field || ''} options=${fieldNames} onChange=${setDef('field')} errors=${at('definition.field')} />` : null}
          <${Field} label=${draft.type === 'computed' ? 'Expression (its value is stored)' : 'Expression (true means the record is rejected)'} errors=${at('definition.expression')}
            hint="e.g. record.total < 0 || (record.status == 'paid' && record.paid_on == nil)"
            render=${(a) => html`<textarea ...${a} class="code" rows="3" spellcheck=${false} value=${d.expression || ''} onInput=${(e) => setDef('expression')(e.currentTarget.value)}></textarea>`} />
        </div>`}
    <div class="row">
      <${TextField} label="Message" value=${d.message || ''} onInput=${setDef('message')} errors=${at('definition.message')} />
      <${CheckField} label="Stop on failure" checked=${d.stop_on_fail} onChange=${setDef('stop_on_fail')} />
      <${CheckField} label="Active" checked=${draft.active} onChange=${set('active')} />
    </div>
    <${TestPanel} app=${app} draft=${draft} />`;
}

function describe(rule) {
  const d = rule.definition;
  if (rule.type === 'field') return `${d.field} ${d.operator} ${JSON.stringify(d.value)}`;
  if (rule.type === 'computed') return `${d.field} = ${d.expression}`;
  return d.expression;
}

const RULES = {
  title: 'Rules',
  noun: 'rule',
  path: '/_admin/rules',
  label: (row) => `${row.entity} ${row.hook} ${row.id.slice(0, 8)}`,
  columns: [
    { label: 'Entity', cell: (r) => r.entity },
    { label: 'Hook', cell: (r) => r.hook },
    { label: 'Type', cell: (r) => r.type },
    { label: 'Rule', cell: (r) => html`<code>${describe(r)}</code>` },
    { label: 'Message', cell: (r) => r.definition.message || '' },
    { label: 'Active', cell: (r) => (r.active ? 'yes' : 'no') },
  ],
  blank: (entities) => blank(entities[0] && entities[0].name),
  toBody: bodyOf,
  Fields: RuleFields,
};

export function RulesPage({ app }) {
  return html`<${KindPage} app=${app} kind=${RULES} />`;
}
