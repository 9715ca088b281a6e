// The page shape most metadata kinds share: a table of rows, a "New" button, an editor form that
// POSTs or PUTs to the kind's admin route, and deletes confirmed by typing the row's label.
// A page supplies its columns, its form fields and how a draft becomes a request body.
import { html, useState } from './html.js';
import { appApi } from './api.js';
import { ConfirmDelete, ErrorBox, Notice, Page, useLoad as useLoadBase } from './ui.js';

function KindForm({ app, kind, entities, initial, onSaved, onCancel }) {
  const client = appApi(app);
  const isNew = !initial.id;
  const [draft, setDraft] = useState(initial);
  const [error, setError] = useState(null);
  const at = (key) => (error && error.fieldMessages ? error.fieldMessages(key) : []);
  const under = (prefix) => (error && error.details ? error.details.filter((d) => d.field && d.field.startsWith(prefix)).map((d) => `${d.field}: ${d.message}`) : []);
  const save = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      const body = kind.toBody(draft);
      if (isNew) await client.post(kind.path, body);
      else await client.put(`${kind.path}/${initial.id}`, body);
      onSaved(isNew ? 'created' : 'saved');
    } catch (err) {
      setError(err);
    }
  };
  const Fields = kind.Fields;
  return html`<form class="card" onSubmit=${save} aria-labelledby="kind-form" novalidate>
    <h2 id="kind-form">${isNew ? `New ${kind.noun}` : `Edit ${kind.noun} ${kind.label(initial)}`}</h2>
    <${ErrorBox} error=${error} title="Not saved" />
    <${Fields} app=${app} draft=${draft} setDraft=${setDraft} at=${at} under=${under} entities=${entities} isNew=${isNew} />
    <div class="actions">
      <button type="submit" class="primary">${isNew ? `Create ${kind.noun}` : `Save ${kind.noun}`}</button>
      <button type="button" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

// kind: {title, noun, path, columns: [{label, cell(row)}], blank(entities), toBody(draft),
//        label(row), Fields, actions?(row, reload, setNotice), pageActions?}
export function KindPage({ app, kind, children }) {
  const client = appApi(app);
  const [editing, setEditing] = useState(null);
  const [notice, setNotice] = useState('');
  const state = useRows(app, kind);
  const saved = (verb) => {
    setNotice(`${kind.noun[0].toUpperCase()}${kind.noun.slice(1)} ${verb}.`);
    setEditing(null);
    state.reload();
  };
  const remove = async (row) => {
    await client.del(`${kind.path}/${row.id}`);
    setNotice(`${kind.noun[0].toUpperCase()}${kind.noun.slice(1)} ${kind.label(row)} deleted.`);
    state.reload();
  };
  const data = state.data;
  return html`<${Page} title=${kind.title} wide actions=${html`${kind.pageActions || null}
      ${kind.Fields ? html`<button type="button" class="primary" onClick=${() => setEditing(kind.blank(data ? data.entities : []))}>New ${kind.noun}</button>` : null}`}>
    <${Notice}>${notice}<//>
    <${ErrorBox} error=${state.error} />
    ${children}
    ${editing && data ? html`<${KindForm} key=${editing.id || 'new'} app=${app} kind=${kind} entities=${data.entities} initial=${editing} onSaved=${saved} onCancel=${() => setEditing(null)} />` : null}
    ${data
      ? data.rows.length
        ? html`<div class="table-wrap"><table>
            <thead><tr>${kind.columns.map((c) => html`<th scope="col">${c.label}</th>`)}<th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>${data.rows.map((row) => html`<tr key=${row.id}>
              ${kind.columns.map((c) => html`<td>${c.cell(row)}</td>`)}
              <td class="actions">
                ${kind.actions ? kind.actions(row, state.reload, setNotice) : null}
                ${kind.Fields ? html`<button type="button" onClick=${() => setEditing(kind.fromRow ? kind.fromRow(row) : row)}>Edit ${kind.label(row)}</button>` : null}
                ${kind.canDelete === false ? null : html`<${ConfirmDelete} name=${kind.label(row)} what=${kind.noun} onConfirm=${() => remove(row)} />`}
              </td>
            </tr>`)}</tbody></table></div>`
        : html`<p>No ${kind.noun}s yet.</p>`
      : null}
  <//>`;
}

function useRows(app, kind) {
  const client = appApi(app);
  return useLoadBase(async () => {
    const [entities, rows] = await Promise.all([client.get('/_admin/entities'), client.get(kind.path, { query: kind.query })]);
    return { entities: entities.data, rows: rows.data };
  }, [app, kind.path, JSON.stringify(kind.query || {})]);
}
