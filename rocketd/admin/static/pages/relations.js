// Relations: the list, a form to create or edit one, and the entity-relationship diagram.
import { html, useEffect, useRef, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { Diagram } from '../lib/diagram.js';
import { ConfirmDelete, ErrorBox, Notice, Page, SelectField, TextField, useLoad } from '../lib/ui.js';

const TYPES = ['one_to_many', 'one_to_one', 'many_to_many'];
const ON_DELETE = ['', 'cascade', 'set_null', 'restrict', 'detach'];
const WRITE_MODES = ['', 'diff', 'replace', 'append'];
const OWNERSHIP = ['', 'source', 'target', 'none'];
const FETCH = ['', 'lazy', 'eager'];

function blank() {
  return { name: '', type: 'one_to_many', source: '', target: '', source_key: 'id', target_key: '', on_delete: '', write_mode: '', ownership: '', fetch: '' };
}

function bodyOf(draft) {
  const body = {};
  for (const [key, value] of Object.entries(draft)) if (value !== '' && value !== undefined && value !== null) body[key] = value;
  if (draft.type !== 'many_to_many') {
    delete body.join_table;
    delete body.source_join_key;
    delete body.target_join_key;
  } else delete body.target_key;
  return body;
}

function RelationForm({ app, entities, initial, onSaved, onCancel }) {
  const client = appApi(app);
  const isNew = !initial;
  const [draft, setDraft] = useState(initial || blank());
  const [error, setError] = useState(null);
  const heading = useRef(null);
  // Opening an existing relation's form (below the list) takes the focus there, so keyboard and
  // screen-reader users land on what they asked for.
  useEffect(() => {
    if (!isNew && heading.current) heading.current.focus();
  }, []);
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  const at = (key) => (error && error.fieldMessages ? error.fieldMessages(key) : []);
  const names = ['', ...entities.map((e) => e.name)];
  const fieldsOf = (entity) => {
    const found = entities.find((e) => e.name === entity);
    return ['', ...(found ? found.definition.fields.map((f) => f.name) : [])];
  };
  const save = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      const answer = isNew ? await client.post('/_admin/relations', bodyOf(draft)) : await client.put(`/_admin/relations/${draft.name}`, bodyOf(draft));
      onSaved(draft.name, answer.meta);
      if (isNew) setDraft(blank());
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card" onSubmit=${save} aria-labelledby="relation-form">
    <h2 id="relation-form" tabIndex="-1" ref=${heading}>${isNew ? 'New relation' : `Edit relation ${draft.name}`}</h2>
    <${ErrorBox} error=${error} title="Not saved" />
    <div class="row">
      <${TextField} label="Relation name" value=${draft.name} onInput=${set('name')} readOnly=${!isNew} errors=${at('name')}
        hint=${isNew ? '' : 'a relation cannot be renamed'} />
      <${SelectField} label="Type" value=${draft.type} options=${TYPES} onChange=${set('type')} errors=${at('type')} />
      <${SelectField} label="Source (parent)" value=${draft.source} options=${names} onChange=${set('source')} errors=${at('source')} />
      <${SelectField} label="Target (child)" value=${draft.target} options=${names} onChange=${set('target')} errors=${at('target')} />
    </div>
    <div class="row">
      <${SelectField} label="Source key" value=${draft.source_key || ''} options=${fieldsOf(draft.source)} onChange=${set('source_key')} errors=${at('source_key')} />
      ${draft.type === 'many_to_many'
        ? html`<${TextField} label="Join table" value=${draft.join_table || ''} onInput=${set('join_table')} errors=${at('join_table')} />
            <${TextField} label="Source join key" value=${draft.source_join_key || ''} onInput=${set('source_join_key')} errors=${at('source_join_key')} />
            <${TextField} label="Target join key" value=${draft.target_join_key || ''} onInput=${set('target_join_key')} errors=${at('target_join_key')} />`
        : html`<${SelectField} label="Target key (foreign key on the child)" value=${draft.target_key || ''} options=${fieldsOf(draft.target)} onChange=${set('target_key')} errors=${at('target_key')} />`}
    </div>
    <div class="row">
      <${SelectField} label="On delete" value=${draft.on_delete || ''} options=${ON_DELETE} onChange=${set('on_delete')} errors=${at('on_delete')} />
      <${SelectField} label="Nested write mode" value=${draft.write_mode || ''} options=${WRITE_MODES} onChange=${set('write_mode')} errors=${at('write_mode')} />
      <${SelectField} label="Ownership" value=${draft.ownership || ''} options=${OWNERSHIP} onChange=${set('ownership')} errors=${at('ownership')} />
      <${SelectField} label="Fetch" value=${draft.fetch || ''} options=${FETCH} onChange=${set('fetch')} errors=${at('fetch')}
        hint="stored as given; includes stay explicit either way" />
    </div>
    <div class="actions">
      <button type="submit" class="primary">${isNew ? 'Create relation' : 'Save relation'}</button>
      ${!isNew ? html`<button type="button" onClick=${onCancel}>Cancel</button>` : null}
    </div>
  </form>`;
}

export function RelationsPage({ app }) {
  const client = appApi(app);
  const [editing, setEditing] = useState(null);
  const [notice, setNotice] = useState('');
  const state = useLoad(async () => {
    const [entities, relations] = await Promise.all([client.get('/_admin/entities'), client.get('/_admin/relations')]);
    return { entities: entities.data, relations: relations.data };
  }, [app]);
  const saved = (name, meta) => {
    const notes = (meta && meta.migration) || [];
    setNotice(`Relation ${name} saved.${notes.length ? ` ${notes.join(' ')}` : ''}`);
    setEditing(null);
    state.reload();
  };
  const remove = async (name) => {
    await client.del(`/_admin/relations/${name}`);
    setNotice(`Relation ${name} deleted.`);
    state.reload();
  };
  const data = state.data;
  const nodes = data ? data.entities.map((e) => ({ id: e.name, title: e.name, lines: e.definition.fields.map((f) => `${f.name}: ${f.type}`) })) : [];
  const edges = data ? data.relations.map((r) => ({ from: r.source, to: r.target, label: `${r.name} (${r.definition.type.replace(/_/g, ' ')})` })) : [];
  return html`<${Page} title="Relations" wide>
    <${Notice}>${notice}<//>
    <${ErrorBox} error=${state.error} />
    ${data
      ? html`
        ${data.relations.length
          ? html`<div class="table-wrap"><table>
              <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Source</th><th scope="col">Target</th><th scope="col">Keys</th><th scope="col">On delete</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
              <tbody>${data.relations.map((r) => html`<tr key=${r.name}>
                <th scope="row">${r.name}</th><td>${r.definition.type}</td><td>${r.source}</td><td>${r.target}</td>
                <td><code>${r.definition.type === 'many_to_many' ? `${r.definition.join_table}(${r.definition.source_join_key}, ${r.definition.target_join_key})` : `${r.definition.source_key || 'id'} → ${r.definition.target_key}`}</code></td>
                <td>${r.definition.on_delete || ''}</td>
                <td class="actions"><button type="button" onClick=${() => setEditing(r.definition)}>Edit ${r.name}</button>
                  <${ConfirmDelete} name=${r.name} what="relation" onConfirm=${() => remove(r.name)} /></td>
              </tr>`)}</tbody></table></div>`
          : html`<p>No relations yet.</p>`}
        ${editing
          ? html`<${RelationForm} key=${`edit-${editing.name}`} app=${app} entities=${data.entities} initial=${editing} onSaved=${saved} onCancel=${() => setEditing(null)} />`
          : html`<${RelationForm} key="new" app=${app} entities=${data.entities} onSaved=${saved} />`}
        <h2>Entity-relationship diagram</h2>
        ${nodes.length ? html`<${Diagram} nodes=${nodes} edges=${edges} label="Entity-relationship diagram" />` : html`<p>No entities yet.</p>`}`
      : null}
  <//>`;
}
