// The data browser (filters of every operator, sort, paging by page or by cursor, the total
// skipped on request, includes; the URL carries the same
// query parameters as the API, so a view can be bookmarked) and the record editor (fields by
// type, file upload and download, nested children written in diff, replace or append mode).
import { html, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { downloadFile, uploadFile } from '../lib/files.js';
import { navigate, setQuery, useLocation } from '../lib/router.js';
import { CheckField, ConfirmDelete, ErrorBox, Field, JsonField, Notice, Page, SelectField, TextField, preview, useLoad } from '../lib/ui.js';

const OPERATORS = ['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'in', 'not_in', 'like'];
const PER_PAGE = ['10', '25', '50', '100'];
const FILTER_KEY = /^filter\[([a-z][a-z0-9_]*)(?:\.([a-z_]+))?\]$/;

async function loadSchema(client) {
  const [entities, relations] = await Promise.all([client.get('/_admin/entities'), client.get('/_admin/relations')]);
  return { entities: entities.data.map((r) => r.definition), relations: relations.data.map((r) => r.definition) };
}

function filtersOf(query) {
  const found = [];
  for (const [key, value] of query.entries()) {
    const m = FILTER_KEY.exec(key);
    if (m) found.push({ key, field: m[1], op: m[2] || 'eq', value });
  }
  return found;
}

function FilterForm({ entity }) {
  const names = entity.fields.map((f) => f.name);
  const [field, setField] = useState(names[0]);
  const [op, setOp] = useState('eq');
  const [value, setValue] = useState('');
  const add = (event) => {
    event.preventDefault();
    setQuery({ [op === 'eq' ? `filter[${field}]` : `filter[${field}.${op}]`]: value, page: null, after: null });
    setValue('');
  };
  return html`<form class="filters" onSubmit=${add} aria-label="Add a filter">
    <div class="row">
      <${SelectField} label="Filter field" value=${field} options=${names} onChange=${setField} />
      <${SelectField} label="Operator" value=${op} options=${OPERATORS} onChange=${setOp}
        hint=${op === 'like' ? '% and _ are wildcards' : op.endsWith('in') ? 'comma-separated values' : ''} />
      <${TextField} label="Value" value=${value} onInput=${setValue} />
      <button type="submit">Add filter</button>
    </div>
  </form>`;
}

function Browser({ app, schema, entityName }) {
  const client = appApi(app);
  const { query } = useLocation();
  const entity = schema.entities.find((e) => e.name === entityName);
  const includable = schema.relations.filter((r) => r.source === entityName || r.target === entityName);
  const apiQuery = Object.fromEntries([...query.entries()]);
  const list = useLoad(() => client.get(`/${entityName}`, { query: apiQuery }), [app, entityName, query.toString()]);
  if (!entity) return html`<p>No entity named ${entityName}.</p>`;
  const filters = filtersOf(query);
  const includes = (query.get('include') || '').split(',').filter(Boolean);
  const sort = query.get('sort') || '';
  const sortField = sort.replace(/^-/, '');
  const pk = entity.primary_key.field;
  const columns = entity.fields.slice(0, 8).map((f) => f.name);
  const meta = (list.data && list.data.meta) || { page: 1, per_page: 25, total: 0 };
  const counted = meta.total !== undefined;
  const pages = counted ? Math.max(1, Math.ceil(meta.total / meta.per_page)) : null;
  const byCursor = query.has('after');
  // Without `total` in the query the entity's `list_total` decides whether lists count.
  const skipByDefault = entity.list_total === false;
  const skipping = query.has('total') ? query.get('total') === 'false' : skipByDefault;
  const toggleInclude = (name, on) => {
    const next = on ? [...includes, name] : includes.filter((n) => n !== name);
    setQuery({ include: next.join(',') || null });
  };
  return html`
    <${FilterForm} entity=${entity} />
    ${filters.length
      ? html`<ul class="row" aria-label="Active filters">${filters.map((f) => html`<li class="pill">
          <code>${f.field} ${f.op} ${f.value}</code>
          <button type="button" onClick=${() => setQuery({ [f.key]: null, page: null, after: null })} aria-label=${`Remove filter ${f.field} ${f.op} ${f.value}`}>×</button></li>`)}</ul>`
      : null}
    <div class="row">
      <${SelectField} label="Sort by" value=${sortField} options=${['', ...entity.fields.map((f) => f.name)]}
        onChange=${(v) => setQuery({ sort: v ? (sort.startsWith('-') ? `-${v}` : v) : null, after: null })} />
      <${SelectField} label="Direction" value=${sort.startsWith('-') ? 'desc' : 'asc'} options=${[{ value: 'asc', label: 'ascending' }, { value: 'desc', label: 'descending' }]}
        onChange=${(v) => sortField && setQuery({ sort: v === 'desc' ? `-${sortField}` : sortField, after: null })} />
      <${SelectField} label="Per page" value=${String(meta.per_page)} options=${PER_PAGE} onChange=${(v) => setQuery({ per_page: v, page: null, after: null })} />
      <${CheckField} label="Skip the total (faster on large tables)" checked=${skipping}
        onChange=${(on) => setQuery({ total: on === skipByDefault ? null : String(!on), page: null, after: null })} />
    </div>
    ${includable.length
      ? html`<fieldset><legend>Include related records</legend><div class="row">
          ${includable.map((r) => html`<${CheckField} label=${r.name} checked=${includes.includes(r.name)} onChange=${(on) => toggleInclude(r.name, on)} />`)}
        </div></fieldset>`
      : null}
    <${ErrorBox} error=${list.error} />
    ${list.data
      ? html`<p class="muted" role="status">${counted
          ? `${meta.total} record${meta.total === 1 ? '' : 's'}`
          : `Total not counted; ${meta.has_more ? 'more records follow this page' : 'this is the last page'} (has_more: ${meta.has_more})`}</p>
        <div class="table-wrap"><table>
          <thead><tr>${columns.map((c) => html`<th scope="col">${c}</th>`)}${includes.map((n) => html`<th scope="col">${n}</th>`)}</tr></thead>
          <tbody>${list.data.data.map((record) => html`<tr key=${record[pk]}>
            ${columns.map((c, i) => (i === 0 || c === pk
              ? html`<td class="cell"><a href=${`/admin/apps/${app}/data/${entityName}/${encodeURIComponent(record[pk])}`}>${preview(record[c]) || '(open)'}</a></td>`
              : html`<td class="cell">${preview(record[c])}</td>`))}
            ${includes.map((n) => html`<td class="cell">${preview(record[n])}</td>`)}
          </tr>`)}</tbody>
        </table></div>
        <${Pager} meta=${meta} pages=${pages} byCursor=${byCursor} />`
      : null}`;
}

// Offset pages (`page`), or, when the API offers `meta.next_cursor`, the next page by cursor
// (`after`): a cursor page has no page number, so it offers the first page instead of the previous.
function Pager({ meta, pages, byCursor }) {
  const more = pages === null ? Boolean(meta.has_more) : meta.page < pages;
  return html`<nav class="pager" aria-label="Pages">
    ${byCursor
      ? html`<button type="button" onClick=${() => setQuery({ after: null, page: null })}>First page</button><span>Page by cursor</span>`
      : html`<button type="button" disabled=${meta.page <= 1} onClick=${() => setQuery({ page: String(meta.page - 1) })}>Previous page</button>
        <span>Page ${meta.page}${pages === null ? '' : ` of ${pages}`}</span>
        <button type="button" disabled=${!more} onClick=${() => setQuery({ page: String(meta.page + 1) })}>Next page</button>`}
    ${meta.next_cursor ? html`<button type="button" onClick=${() => setQuery({ after: meta.next_cursor, page: null })}>Next page by cursor</button>` : null}
  </nav>`;
}

export function DataPage({ app, entity }) {
  const client = appApi(app);
  const schema = useLoad(() => loadSchema(client), [app]);
  const names = schema.data ? schema.data.entities.map((e) => e.name) : [];
  return html`<${Page} title=${entity ? `Data: ${entity}` : 'Data'} wide
    actions=${entity ? html`<a class="button primary" href=${`/admin/apps/${app}/data/${entity}/new`}>New ${entity}</a>` : null}>
    <${ErrorBox} error=${schema.error} />
    ${schema.data
      ? html`<${SelectField} label="Entity" value=${entity || ''} options=${['', ...names]} onChange=${(v) => v && navigate(`/admin/apps/${app}/data/${v}`)} />
        ${entity ? html`<${Browser} key=${entity} app=${app} schema=${schema.data} entityName=${entity} />` : html`<p>Choose an entity to browse its records.</p>`}`
      : null}
  <//>`;
}

// ---- record editor ----

function editable(entity, field, isNew) {
  if (field.auto) return false;
  if (field.name === entity.primary_key.field) return isNew && !entity.primary_key.generated;
  return field.name !== 'deleted_at';
}

function toInput(field, value) {
  if (value === null || value === undefined) return field.type === 'boolean' ? false : '';
  if (field.type === 'file') return value;
  return value;
}

function fromInput(field, value) {
  if (['int', 'integer', 'bigint', 'float'].includes(field.type)) {
    if (value === '' || value === null) return null;
    const number = Number(value);
    return Number.isNaN(number) ? value : number;
  }
  if (field.type === 'boolean') return Boolean(value);
  if (value === '' && !field.required) return null;
  return value;
}

function FileInput({ app, field, value, onChange, errors }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const meta = value && typeof value === 'object' ? value : null;
  const upload = async (event) => {
    const file = event.currentTarget.files[0];
    if (!file) return;
    setBusy(true);
    setError(null);
    try {
      const stored = await uploadFile(app, file);
      onChange(stored);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Field} label=${field.name} errors=${errors}
    render=${(a) => html`<div class="file-field">
      ${meta ? html`<p><span>${meta.filename} (${meta.size} bytes)</span>
        <button type="button" onClick=${() => downloadFile(app, meta.id, meta.filename).catch(setError)}>Download ${meta.filename}</button></p>` : null}
      <input ...${a} type="file" onChange=${upload} disabled=${busy} />
      ${busy ? html`<span aria-live="polite">Uploading…</span>` : null}
      <${ErrorBox} error=${error} title="Upload failed" />
    </div>`} />`;
}

function ValueInput({ app, field, value, onChange, errors, label }) {
  const name = label || field.name;
  if (field.type === 'boolean') return html`<${CheckField} label=${name} checked=${value} onChange=${onChange} errors=${errors} />`;
  if (field.enum && field.enum.length) return html`<${SelectField} label=${name} value=${value ?? ''} options=${['', ...field.enum]} onChange=${onChange} errors=${errors} />`;
  if (field.type === 'json') return html`<${JsonField} label=${name} value=${value === '' ? null : value} onChange=${onChange} errors=${errors} rows=${4} />`;
  if (field.type === 'file') return html`<${FileInput} app=${app} field=${field} value=${value} onChange=${onChange} errors=${errors} />`;
  if (field.type === 'text') {
    return html`<${Field} label=${name} errors=${errors} render=${(a) => html`<textarea ...${a} rows="3" value=${value ?? ''} onInput=${(e) => onChange(e.currentTarget.value)}></textarea>`} />`;
  }
  const hint = { timestamp: 'e.g. 2026-02-22T10:15:30Z', date: 'e.g. 2026-02-22', decimal: 'exact decimal, e.g. 12.50' }[field.type];
  const type = ['int', 'integer', 'bigint', 'float'].includes(field.type) ? 'number' : 'text';
  return html`<${TextField} label=${name} type=${type} value=${value ?? ''} onInput=${onChange} errors=${errors} hint=${hint} />`;
}

function childRelations(schema, entityName) {
  return schema.relations.filter((r) => r.source === entityName && r.type !== 'many_to_many');
}

function linkRelations(schema, entityName) {
  return schema.relations.filter((r) => r.source === entityName && r.type === 'many_to_many');
}

function rowLabel(entity, row) {
  const pk = entity.primary_key.field;
  const text = entity.fields.find((f) => f.name !== pk && (f.type === 'string' || f.type === 'text') && row[f.name]);
  return text ? `${row[text.name]} (${row[pk]})` : String(row[pk]);
}

// Many-to-many links: the linked targets (unlink each), and a target to link, written with the
// relation's write mode or the one chosen here.
function Links({ app, schema, relation, state, onChange }) {
  const client = appApi(app);
  const target = schema.entities.find((e) => e.name === relation.target);
  const candidates = useLoad(() => client.get(`/${relation.target}`, { query: { per_page: 100 } }).then((r) => r.data), [app, relation.target]);
  const [choice, setChoice] = useState('');
  if (!target) return null;
  const pk = target.primary_key.field;
  const appending = modeOf(relation, state) === 'append';
  const taken = new Set([...state.linked.map((l) => String(l.row[pk])), ...state.added.map((a) => String(a[pk]))]);
  const options = (candidates.data || []).filter((row) => !taken.has(String(row[pk])));
  const link = () => {
    const row = options.find((o) => String(o[pk]) === choice);
    if (row) onChange({ ...state, added: [...state.added, row] });
    setChoice('');
  };
  return html`<section class="children" aria-labelledby=${`links-${relation.name}`}>
    <h2 id=${`links-${relation.name}`}>${relation.name} <span class="muted">(linked ${relation.target})</span></h2>
    <${SelectField} label=${`Write mode for ${relation.name}`} value=${state.mode} options=${modeOptions(relation)}
      onChange=${(mode) => onChange({ ...state, mode })} hint=${appending ? 'append only links: nothing is unlinked' : ''} />
    <ul class="links">
      ${state.linked.map((l, i) => (appending
        ? html`<li key=${l.row[pk]}>${rowLabel(target, l.row)} <span class="pill">stays linked</span></li>`
        : html`<li key=${l.row[pk]}><${CheckField} label=${`Unlink ${rowLabel(target, l.row)}`} checked=${l.unlink}
          onChange=${(on) => onChange({ ...state, linked: state.linked.map((x, j) => (j === i ? { ...x, unlink: on } : x)) })} /></li>`))}
      ${state.added.map((row) => html`<li key=${`new-${row[pk]}`}>${rowLabel(target, row)} <span class="pill">to link</span></li>`)}
    </ul>
    <div class="row">
      <${SelectField} label=${`Link a ${relation.target}`} value=${choice} options=${['', ...options.map((o) => ({ value: String(o[pk]), label: rowLabel(target, o) }))]} onChange=${setChoice} />
      <button type="button" onClick=${link} disabled=${!choice}>Link ${relation.target}</button>
    </div>
    <${ErrorBox} error=${candidates.error} />
  </section>`;
}

// What a write in `mode` does with what the form shows (data-api.md, "Nested writes"): `diff`
// acts on the items listed (update, `_delete`); `replace` makes the list the whole set, so every
// kept row is listed and a removed one is left out; `append` only adds (items naming a current
// child or link, and `_delete`, are skipped), so only the new rows are sent and the current ones
// are shown as they stay. The mode is the one chosen, else the relation's, else `diff`.
function modeOf(relation, state) {
  return state.mode || relation.write_mode || 'diff';
}

function modeOptions(relation) {
  return [{ value: '', label: `default (${relation.write_mode || 'diff'})` }, 'diff', 'replace', 'append'];
}

function envelope(state, mode, data) {
  if (!data.length && mode !== 'replace') return null;
  return state.mode ? { _write_mode: state.mode, data } : { data };
}

function linksBody(schema, relation, state) {
  const pk = schema.entities.find((e) => e.name === relation.target).primary_key.field;
  const mode = modeOf(relation, state);
  const data = state.added.map((row) => ({ [pk]: row[pk] }));
  if (mode !== 'append') {
    for (const l of state.linked) {
      if (l.unlink) {
        if (mode === 'diff') data.push({ [pk]: l.row[pk], _delete: true });
      } else if (mode === 'replace') data.push({ [pk]: l.row[pk] });
    }
  }
  return envelope(state, mode, data);
}

function Children({ app, schema, relation, state, onChange }) {
  const target = schema.entities.find((e) => e.name === relation.target);
  if (!target) return null;
  const pk = target.primary_key.field;
  const fields = target.fields.filter((f) => f.name !== relation.target_key && editable(target, f, true));
  const appending = modeOf(relation, state) === 'append';
  const setRow = (i, row) => onChange({ ...state, rows: state.rows.map((r, j) => (j === i ? row : r)) });
  const add = () => onChange({ ...state, rows: [...state.rows, { values: {}, changed: {}, isNew: true }] });
  return html`<section class="children" aria-labelledby=${`children-${relation.name}`}>
    <h2 id=${`children-${relation.name}`}>${relation.name} <span class="muted">(${relation.target})</span></h2>
    <${SelectField} label=${`Write mode for ${relation.name}`} value=${state.mode} options=${modeOptions(relation)}
      onChange=${(mode) => onChange({ ...state, mode })}
      hint="diff: update listed, delete marked; replace: the list becomes the children; append: only add" />
    ${state.rows.map((row, i) => (appending && !row.isNew
      ? html`<fieldset class="child kept" key=${i}>
          <legend>${relation.target} ${row.values[pk]} <span class="pill">stays as it is</span></legend>
          <div class="row">${fields.map((f) => html`<div class="field"><span class="label">${f.name}</span><output>${preview(row.values[f.name])}</output></div>`)}</div>
        </fieldset>`
      : html`<fieldset class=${row.deleted ? 'child deleted' : 'child'} key=${i}>
      <legend>${row.isNew ? `New ${relation.target} ${i + 1}` : `${relation.target} ${row.values[pk]}`}</legend>
      <div class="row">
        ${fields.map((f) => html`<${ValueInput} app=${app} field=${f} label=${`${row.isNew ? `new ${relation.target} ${i + 1}` : `${relation.target} ${row.values[pk]}`} ${f.name}`} value=${toInput(f, row.values[f.name])}
          onChange=${(v) => setRow(i, { ...row, values: { ...row.values, [f.name]: v }, changed: { ...row.changed, [f.name]: true } })} />`)}
      </div>
      ${row.isNew
        ? html`<button type="button" onClick=${() => onChange({ ...state, rows: state.rows.filter((_, j) => j !== i) })}>Remove new ${relation.target} ${i + 1}</button>`
        : html`<${CheckField} label=${`Delete ${relation.target} ${row.values[pk]}`} checked=${row.deleted} onChange=${(on) => setRow(i, { ...row, deleted: on })} />`}
    </fieldset>`))}
    <button type="button" onClick=${add}>Add ${relation.target}</button>
  </section>`;
}

function nestedBody(schema, relation, state) {
  const target = schema.entities.find((e) => e.name === relation.target);
  const pk = target.primary_key.field;
  const fields = target.fields.filter((f) => f.name !== relation.target_key && editable(target, f, true));
  const mode = modeOf(relation, state);
  const data = [];
  for (const row of state.rows) {
    if (row.isNew) {
      const item = {};
      for (const f of fields) if (row.changed[f.name]) item[f.name] = fromInput(f, row.values[f.name]);
      data.push(item);
    } else if (mode === 'append') continue;
    else if (row.deleted) {
      if (mode === 'diff') data.push({ [pk]: row.values[pk], _delete: true });
    } else if (Object.keys(row.changed).length || mode === 'replace') {
      const item = { [pk]: row.values[pk] };
      for (const f of fields) if (row.changed[f.name]) item[f.name] = fromInput(f, row.values[f.name]);
      data.push(item);
    }
  }
  return envelope(state, mode, data);
}

let flash = '';

function RecordForm({ app, schema, entity, record, isNew, onSaved, notice }) {
  const client = appApi(app);
  const children = childRelations(schema, entity.name);
  const [values, setValues] = useState(() => Object.fromEntries(entity.fields.map((f) => [f.name, toInput(f, record[f.name])])));
  const [changed, setChanged] = useState({});
  const [nested, setNested] = useState(() => Object.fromEntries(children.map((r) => {
    const rows = record[r.name] ? [].concat(record[r.name]) : [];
    return [r.name, { mode: '', rows: rows.map((v) => ({ values: v, changed: {}, isNew: false })) }];
  })));
  const linkable = linkRelations(schema, entity.name);
  const [links, setLinks] = useState(() => Object.fromEntries(linkable.map((r) => [
    r.name, { mode: '', linked: (record[r.name] || []).map((row) => ({ row, unlink: false })), added: [] },
  ])));
  const [error, setError] = useState(null);
  const pk = entity.primary_key.field;
  const set = (name) => (value) => {
    setValues({ ...values, [name]: value });
    setChanged({ ...changed, [name]: true });
  };
  const save = async (event) => {
    event.preventDefault();
    setError(null);
    const body = {};
    for (const f of entity.fields) {
      if (!editable(entity, f, isNew) || !changed[f.name]) continue;
      const value = values[f.name];
      body[f.name] = f.type === 'file' ? (value && value.id) || null : fromInput(f, value);
    }
    for (const r of children) {
      const part = nestedBody(schema, r, nested[r.name]);
      if (part) body[r.name] = part;
    }
    for (const r of linkable) {
      const part = linksBody(schema, r, links[r.name]);
      if (part) body[r.name] = part;
    }
    try {
      if (isNew) {
        const { data } = await client.post(`/${entity.name}`, body);
        flash = `${entity.name} created.`;
        navigate(`/admin/apps/${app}/data/${entity.name}/${encodeURIComponent(data[pk])}`, { replace: true });
      } else {
        await client.put(`/${entity.name}/${encodeURIComponent(record[pk])}`, body);
        onSaved(`${entity.name} saved.`); // read the record and its children again
      }
    } catch (err) {
      setError(err);
    }
  };
  const remove = async () => {
    await client.del(`/${entity.name}/${encodeURIComponent(record[pk])}`);
    navigate(`/admin/apps/${app}/data/${entity.name}`);
  };
  const at = (name) => (error && error.fieldMessages ? error.fieldMessages(name) : []);
  return html`<form onSubmit=${save} novalidate>
    <${Notice} kind="ok">${notice}<//>
    ${error ? html`<${ErrorBox} error=${error} title="Not saved" />` : null}
    <div class="row">
      ${entity.fields.map((f) => (editable(entity, f, isNew)
        ? html`<${ValueInput} app=${app} field=${f} value=${values[f.name]} onChange=${set(f.name)} errors=${at(f.name)} />`
        : isNew ? null : html`<div class="field"><span class="label">${f.name}</span><output>${preview(record[f.name])}</output></div>`))}
    </div>
    ${children.map((r) => html`<${Children} app=${app} schema=${schema} relation=${r} state=${nested[r.name]} onChange=${(s) => setNested({ ...nested, [r.name]: s })} />`)}
    ${linkable.map((r) => html`<${Links} app=${app} schema=${schema} relation=${r} state=${links[r.name]} onChange=${(s) => setLinks({ ...links, [r.name]: s })} />`)}
    <div class="actions">
      <button type="submit" class="primary">${isNew ? `Create ${entity.name}` : `Save ${entity.name}`}</button>
      ${!isNew ? html`<${ConfirmDelete} name=${String(record[pk])} what="record" onConfirm=${remove} />` : null}
    </div>
  </form>`;
}

export function RecordPage({ app, entity: entityName, id }) {
  const client = appApi(app);
  const isNew = id === 'new';
  const [saved, setSaved] = useState(() => {
    const shown = { version: 0, notice: flash };
    flash = '';
    return shown;
  });
  const version = saved.version;
  const state = useLoad(async () => {
    const schema = await loadSchema(client);
    const entity = schema.entities.find((e) => e.name === entityName);
    if (!entity) throw new Error(`No entity named ${entityName}`);
    const include = [...childRelations(schema, entityName), ...linkRelations(schema, entityName)].map((r) => r.name).join(',');
    const record = isNew ? {} : (await client.get(`/${entityName}/${encodeURIComponent(id)}`, { query: { include } })).data;
    return { schema, entity, record, version };
  }, [app, entityName, id, version]);
  // The form shows the record as read for the current version, never the one from before a save.
  const fresh = state.data && !state.loading && state.data.version === version;
  return html`<${Page} title=${isNew ? `New ${entityName}` : `${entityName} ${id}`}
    actions=${html`<a class="button" href=${`/admin/apps/${app}/data/${entityName}`}>All ${entityName} records</a>`}>
    <${ErrorBox} error=${state.error} />
    ${fresh ? html`<${RecordForm} key=${version} notice=${saved.notice} onSaved=${(notice) => setSaved({ version: version + 1, notice })} app=${app} schema=${state.data.schema} entity=${state.data.entity} record=${state.data.record} isNew=${isNew} />` : null}
  <//>`;
}
