// Entities: the list, and the editor of one entity's definition (fields, types, primary key,
// soft delete, slug, declared indexes and their build states, list totals). The API's validation errors are shown at the input they concern (their
// `field` is a path like `fields[2].type`); the migration notes of a save are shown after it.
import { html, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { navigate } from '../lib/router.js';
import { CheckField, ConfirmDelete, ErrorBox, Notice, Page, SelectField, TextField, useLoad } from '../lib/ui.js';
import { IndexesSection, cleanIndex, useIndexStates } from './indexes.js';

export const FIELD_TYPES = ['string', 'text', 'int', 'bigint', 'float', 'decimal', 'boolean', 'uuid', 'timestamp', 'date', 'json', 'file'];
const PK_TYPES = ['uuid', 'int', 'bigint', 'string'];

// Notes of the last save, shown once on the page the save navigated to.
let flash = null;

export function EntitiesPage({ app }) {
  const client = appApi(app);
  const entities = useLoad(() => client.get('/_admin/entities').then((r) => r.data), [app]);
  return html`<${Page} title="Entities" actions=${html`<a class="button primary" href=${`/admin/apps/${app}/entities/new`}>New entity</a>`}>
    <${ErrorBox} error=${entities.error} />
    ${entities.data
      ? entities.data.length
        ? html`<div class="table-wrap"><table>
            <thead><tr><th scope="col">Name</th><th scope="col">Table</th><th scope="col">Fields</th><th scope="col">Primary key</th><th scope="col"><span class="sr-only">Data</span></th></tr></thead>
            <tbody>${entities.data.map((row) => html`<tr key=${row.name}>
              <th scope="row"><a href=${`/admin/apps/${app}/entities/${row.name}`}>${row.name}</a></th>
              <td><code>${row.table_name}</code></td>
              <td>${row.definition.fields.map((f) => f.name).join(', ')}</td>
              <td>${row.definition.primary_key.field}</td>
              <td><a href=${`/admin/apps/${app}/data/${row.name}`}>Browse data</a></td>
            </tr>`)}</tbody></table></div>`
        : html`<p>No entities yet. <a href=${`/admin/apps/${app}/entities/new`}>Define the first one</a>.</p>`
      : null}
  <//>`;
}

function blankEntity() {
  return {
    name: '',
    table: '',
    primary_key: { field: 'id', type: 'uuid', generated: true },
    soft_delete: false,
    fields: [{ name: 'id', type: 'uuid' }],
  };
}

// Keeps only the keys a field definition should carry (defaults omitted, enum as a list).
function cleanField(field) {
  const out = { name: field.name, type: field.type };
  for (const key of ['required', 'unique', 'nullable', 'indexed']) if (field[key]) out[key] = true;
  if (field.auto) out.auto = field.auto;
  if (field.precision !== undefined && field.precision !== '' && field.precision !== null) out.precision = Number(field.precision);
  if (field.defaultText !== undefined && field.defaultText !== '') {
    try {
      out.default = JSON.parse(field.defaultText);
    } catch {
      out.default = field.defaultText;
    }
  } else if (field.defaultText === undefined && field.default !== undefined) out.default = field.default;
  const enumText = field.enumText !== undefined ? field.enumText : (field.enum || []).join(', ');
  const values = enumText.split(',').map((v) => v.trim()).filter(Boolean);
  if (values.length) out.enum = values;
  return out;
}

function definitionOf(draft) {
  const out = {
    name: draft.name.trim(),
    table: draft.table.trim(),
    primary_key: { ...draft.primary_key },
    soft_delete: Boolean(draft.soft_delete),
    fields: draft.fields.map(cleanField),
  };
  const indexes = (draft.indexes || []).map(cleanIndex);
  if (indexes.length) out.indexes = indexes;
  if (draft.list_total === false) out.list_total = false;
  if (draft.slug && draft.slug.field) {
    out.slug = { field: draft.slug.field };
    if (draft.slug.source) out.slug.source = draft.slug.source;
    if (draft.slug.regenerate_on_update) out.slug.regenerate_on_update = true;
  }
  return out;
}

function FieldRow({ field, index, errors, onChange, onRemove, onMove, count }) {
  const at = (key) => errors(`fields[${index}].${key}`);
  const set = (key) => (value) => onChange({ ...field, [key]: value });
  const defaultText = field.defaultText !== undefined ? field.defaultText : field.default === undefined ? '' : JSON.stringify(field.default);
  const enumText = field.enumText !== undefined ? field.enumText : (field.enum || []).join(', ');
  const unknown = errors(`fields[${index}]`);
  return html`<fieldset class="field-row">
    <legend>Field ${index + 1}${field.name ? `: ${field.name}` : ''}</legend>
    <div class="row">
      <${TextField} label="Name" value=${field.name} onInput=${set('name')} errors=${at('name')} />
      <${SelectField} label="Type" value=${field.type} options=${FIELD_TYPES} onChange=${set('type')} errors=${at('type')} />
      <${TextField} label="Default (JSON or text)" value=${defaultText} onInput=${set('defaultText')} errors=${at('default')} />
      <${TextField} label="Allowed values (comma separated)" value=${enumText} onInput=${set('enumText')} errors=${at('enum')} />
      ${field.type === 'decimal' ? html`<${TextField} label="Precision" type="number" value=${field.precision ?? ''} onInput=${set('precision')} errors=${at('precision')} />` : null}
      ${field.type === 'timestamp' ? html`<${SelectField} label="Automatic" value=${field.auto || ''} options=${[{ value: '', label: 'no' }, { value: 'create', label: 'on create' }, { value: 'update', label: 'on every write' }]} onChange=${set('auto')} errors=${at('auto')} />` : null}
    </div>
    <div class="row checks">
      <${CheckField} label="Required" checked=${field.required} onChange=${set('required')} errors=${at('required')} />
      <${CheckField} label="Unique" checked=${field.unique} onChange=${set('unique')} errors=${at('unique')} />
      <${CheckField} label="Nullable" checked=${field.nullable} onChange=${set('nullable')} errors=${at('nullable')} />
      <${CheckField} label=${`Indexed${field.name ? ` (${field.name})` : ''}`} checked=${field.indexed} onChange=${set('indexed')} errors=${at('indexed')} />
      <span class="spacer"></span>
      <button type="button" onClick=${() => onMove(-1)} disabled=${index === 0} aria-label=${`Move field ${field.name || index + 1} up`}>↑</button>
      <button type="button" onClick=${() => onMove(1)} disabled=${index === count - 1} aria-label=${`Move field ${field.name || index + 1} down`}>↓</button>
      <button type="button" class="danger" onClick=${onRemove} aria-label=${`Remove field ${field.name || index + 1}`}>Remove</button>
    </div>
    ${unknown.length ? html`<p class="field-error">${unknown.join('; ')}</p>` : null}
  </fieldset>`;
}

function EntityForm({ app, initial, initialStates, isNew }) {
  const client = appApi(app);
  const [draft, setDraft] = useState(initial);
  const builds = useIndexStates(client, isNew ? '' : initial.name, initialStates);
  const [error, setError] = useState(null);
  const [notes, setNotes] = useState(() => {
    const shown = flash;
    flash = null;
    return shown;
  });
  const [busy, setBusy] = useState(false);
  const errorsAt = (path) => (error && error.fieldMessages ? error.fieldMessages(path) : []);
  // Details whose path starts with a key that is not one of the inputs (e.g. `fields[1].requird`).
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  const setPk = (key) => (value) => setDraft({ ...draft, primary_key: { ...draft.primary_key, [key]: value } });
  const setSlug = (key) => (value) => setDraft({ ...draft, slug: { ...(draft.slug || {}), [key]: value } });
  const setField = (i) => (field) => setDraft({ ...draft, fields: draft.fields.map((f, j) => (j === i ? field : f)) });
  const removeField = (i) => () => setDraft({ ...draft, fields: draft.fields.filter((_, j) => j !== i) });
  const moveField = (i) => (step) => {
    const fields = [...draft.fields];
    const [moved] = fields.splice(i, 1);
    fields.splice(i + step, 0, moved);
    setDraft({ ...draft, fields });
  };
  const addField = () => setDraft({ ...draft, fields: [...draft.fields, { name: '', type: 'string' }] });

  const save = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setNotes(null);
    const body = definitionOf(draft);
    try {
      const answer = isNew ? await client.post('/_admin/entities', body) : await client.put(`/_admin/entities/${draft.name}`, body);
      const meta = answer.meta || {};
      const saved = { verb: isNew ? 'created' : 'saved', migration: meta.migration || [], warnings: (meta.warnings || []).map((w) => w.message) };
      if (isNew) {
        flash = saved;
        navigate(`/admin/apps/${app}/entities/${body.name}`, { replace: true });
      } else {
        setNotes(saved);
        builds.refresh();
      }
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const remove = async () => {
    await client.del(`/_admin/entities/${draft.name}`);
    navigate(`/admin/apps/${app}/entities`);
  };
  const fieldNames = ['', ...draft.fields.map((f) => f.name).filter(Boolean)];
  const placed = (d) => d.field && /^(name|table|primary_key|slug|soft_delete|list_total|indexes|fields\[\d+\]\.(name|type|default|enum|precision|auto|required|unique|nullable|indexed))/.test(d.field);
  const loose = error && error.details ? error.details.filter((d) => !placed(d)) : [];

  return html`<form onSubmit=${save} class="entity-form" novalidate>
    ${notes
      ? html`<${Notice} kind="ok">
          <p>Entity ${notes.verb}.</p>
          ${notes.migration.length ? html`<p>Migration notes:</p><ul class="migration-notes">${notes.migration.map((n) => html`<li>${n}</li>`)}</ul>` : null}
          ${notes.warnings.length ? html`<ul>${notes.warnings.map((n) => html`<li>${n}</li>`)}</ul>` : null}
        <//>`
      : null}
    ${error
      ? html`<div class="error-box" role="alert"><p><strong>Not saved:</strong> ${error.details && error.details.length ? 'see the messages at the fields below.' : error.message} <code>${error.code}</code></p>
          ${loose.length ? html`<ul>${loose.map((d) => html`<li>${d.field ? html`<code>${d.field}</code>: ` : null}${d.message}</li>`)}</ul>` : null}</div>`
      : null}
    <div class="row">
      <${TextField} label="Entity name" name="name" value=${draft.name} onInput=${isNew ? set('name') : () => {}} errors=${errorsAt('name')}
        hint=${isNew ? 'Used in URLs: /api/' + app + '/<name>' : 'An entity cannot be renamed'} />
      <${TextField} label="Table" name="table" value=${draft.table} onInput=${set('table')} errors=${errorsAt('table')} />
    </div>
    <fieldset>
      <legend>Primary key</legend>
      <div class="row">
        <${SelectField} label="Key field" value=${draft.primary_key.field} options=${fieldNames} onChange=${setPk('field')} errors=${errorsAt('primary_key.field')} />
        <${SelectField} label="Key type" value=${draft.primary_key.type || 'uuid'} options=${PK_TYPES} onChange=${setPk('type')} errors=${errorsAt('primary_key.type')} />
        <${CheckField} label="Generated by the database" checked=${draft.primary_key.generated} onChange=${setPk('generated')} errors=${errorsAt('primary_key.generated')} />
      </div>
    </fieldset>
    <fieldset>
      <legend>Deletes and slug</legend>
      <div class="row">
        <${CheckField} label="Soft delete (keep rows, set deleted_at)" checked=${draft.soft_delete} onChange=${set('soft_delete')} errors=${errorsAt('soft_delete')} />
        <${SelectField} label="Slug field" value=${(draft.slug && draft.slug.field) || ''} options=${fieldNames} onChange=${setSlug('field')} errors=${errorsAt('slug.field').concat(errorsAt('slug'))} />
        <${SelectField} label="Slug source" value=${(draft.slug && draft.slug.source) || ''} options=${fieldNames} onChange=${setSlug('source')} errors=${errorsAt('slug.source')} />
        <${CheckField} label="Regenerate the slug on update" checked=${draft.slug && draft.slug.regenerate_on_update} onChange=${setSlug('regenerate_on_update')} />
      </div>
    </fieldset>
    <fieldset>
      <legend>Lists</legend>
      <p class="muted">On a big entity, a list's count reads every match; without it a page answers <code>has_more</code> (a client can still ask <code>total=true</code>).</p>
      <${CheckField} label="Count the total of every list page"
        checked=${draft.list_total !== false} onChange=${(on) => setDraft({ ...draft, list_total: on ? undefined : false })} errors=${errorsAt('list_total')} />
    </fieldset>
    <h2>Fields</h2>
    ${draft.fields.map((field, i) => html`<${FieldRow} key=${i} field=${field} index=${i} count=${draft.fields.length} errors=${errorsAt}
      onChange=${setField(i)} onRemove=${removeField(i)} onMove=${moveField(i)} />`)}
    <p><button type="button" onClick=${addField}>Add a field</button></p>
    <${IndexesSection} app=${app} indexes=${draft.indexes || []} fieldNames=${fieldNames.filter(Boolean)} error=${error} states=${builds.states} moving=${builds.moving}
      onChange=${set('indexes')} />
    <${ErrorBox} error=${builds.error} title="Build states not refreshed" />
    <div class="actions">
      <button type="submit" class="primary" disabled=${busy}>${isNew ? 'Create entity' : 'Save entity'}</button>
      ${!isNew ? html`<a class="button" href=${`/admin/apps/${app}/data/${draft.name}`}>Browse data</a>` : null}
      ${!isNew ? html`<${ConfirmDelete} name=${draft.name} what="entity" onConfirm=${remove} />` : null}
    </div>
  </form>`;
}

export function EntityEditor({ app, name }) {
  const isNew = name === 'new';
  const client = appApi(app);
  const entity = useLoad(() => (isNew ? Promise.resolve({ definition: blankEntity() }) : client.get(`/_admin/entities/${name}`).then((r) => r.data)), [app, name]);
  return html`<${Page} title=${isNew ? 'New entity' : `Entity ${name}`}>
    <${ErrorBox} error=${entity.error} />
    ${entity.data ? html`<${EntityForm} key=${name} app=${app} initial=${entity.data.definition} initialStates=${entity.data.indexes} isNew=${isNew} />` : null}
  <//>`;
}
