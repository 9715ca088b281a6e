// Declared indexes (issue 20): the Indexes section of the entity editor (composite indexes with
// field order, direction and `unique`; each index's build state, polled while a build runs) and
// the "Index guidance" page (list shapes no index serves, with a one-click "add this index" that
// saves the entity through the same admin route the editor uses).
import { html, useEffect, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { CheckField, ErrorBox, Notice, Page, SelectField, formatTime, useLoad } from '../lib/ui.js';

// States that change by themselves: the editor asks again until none is left.
const MOVING = ['building', 'dropping'];
const POLL_MS = 1000;

// The key that says two declarations are the same index (the API's own identity).
export function indexKey(index) {
  return `${(index.fields || []).join(',')}|${Boolean(index.unique)}`;
}

// An index written the way the API takes it: `unique` only when set.
export function cleanIndex(index) {
  const out = { fields: index.fields.filter((f) => f && f !== '-') };
  if (index.unique) out.unique = true;
  return out;
}

// The build states of an entity's indexes, asked again every second while one is still moving.
export function useIndexStates(client, name, initial) {
  const [states, setStates] = useState(initial || []);
  const [error, setError] = useState(null);
  const refresh = () =>
    client.get(`/_admin/entities/${name}`).then(
      (r) => {
        setStates(r.data.indexes || []);
        setError(null);
      },
      setError,
    );
  const moving = states.some((s) => MOVING.includes(s.state));
  useEffect(() => {
    if (!moving || !name) return undefined;
    const timer = setTimeout(refresh, POLL_MS);
    return () => clearTimeout(timer);
  }, [states, name]);
  return { states, error, refresh, moving };
}

function StateBadge({ state }) {
  if (!state) return html`<span class="pill">not saved yet</span>`;
  const failed = state.startsWith('failed');
  return html`<span class=${failed ? 'pill error' : `pill ${state}`}>${state}</span>`;
}

function IndexColumn({ column, position, count, names, errors, onChange, onRemove, onMove, label }) {
  const desc = column.startsWith('-');
  const name = desc ? column.slice(1) : column;
  const set = (nextName, nextDesc) => onChange(`${nextDesc ? '-' : ''}${nextName}`);
  return html`<li class="row index-column">
    <${SelectField} label=${`${label}, column ${position + 1}`} value=${name} options=${['', ...names]} onChange=${(v) => set(v, desc)} errors=${errors} />
    <${SelectField} label=${`${label}, column ${position + 1} direction`} value=${desc ? 'desc' : 'asc'}
      options=${[{ value: 'asc', label: 'ascending' }, { value: 'desc', label: 'descending' }]} onChange=${(v) => set(name, v === 'desc')} />
    <button type="button" onClick=${() => onMove(-1)} disabled=${position === 0} aria-label=${`Move column ${position + 1} of ${label} up`}>↑</button>
    <button type="button" onClick=${() => onMove(1)} disabled=${position === count - 1} aria-label=${`Move column ${position + 1} of ${label} down`}>↓</button>
    <button type="button" class="danger" onClick=${onRemove} aria-label=${`Remove column ${position + 1} of ${label}`}>Remove column</button>
  </li>`;
}

function IndexRow({ index, position, names, errorsAt, details, state, onChange, onRemove }) {
  const label = `Index ${position + 1}`;
  const at = `indexes[${position}]`;
  const columns = index.fields;
  const setColumns = (fields) => onChange({ ...index, fields });
  const move = (j) => (step) => {
    const next = [...columns];
    const [moved] = next.splice(j, 1);
    next.splice(j + step, 0, moved);
    setColumns(next);
  };
  // Everything about this index that is not a column's own message (unknown keys, duplicates...).
  const loose = details.filter((d) => d.field === at || (d.field.startsWith(`${at}.`) && !/^indexes\[\d+\]\.(fields\[\d+\]|unique)$/.test(d.field)));
  return html`<fieldset class="index-row">
    <legend>${label}${columns.filter(Boolean).length ? `: (${columns.filter(Boolean).join(', ')})` : ''} <${StateBadge} state=${state} /></legend>
    <ol class="index-columns">
      ${columns.map((column, j) => html`<${IndexColumn} key=${j} column=${column} position=${j} count=${columns.length} names=${names} label=${label}
        errors=${errorsAt(`${at}.fields[${j}]`)} onChange=${(v) => setColumns(columns.map((c, k) => (k === j ? v : c)))}
        onRemove=${() => setColumns(columns.filter((_, k) => k !== j))} onMove=${move(j)} />`)}
    </ol>
    <div class="row checks">
      <button type="button" onClick=${() => setColumns([...columns, ''])}>Add a column to ${label.toLowerCase()}</button>
      <${CheckField} label=${`${label} is unique`} checked=${index.unique} onChange=${(v) => onChange({ ...index, unique: v })} errors=${errorsAt(`${at}.unique`)} />
      <span class="spacer"></span>
      <button type="button" class="danger" onClick=${onRemove} aria-label=${`Remove ${label.toLowerCase()}`}>Remove index</button>
    </div>
    ${loose.length ? html`<ul class="field-error index-errors">${loose.map((d) => html`<li><code>${d.field}</code>: ${d.message}</li>`)}</ul>` : null}
    ${state && state.startsWith('failed') ? html`<p class="field-error">The build failed; fix the cause and save the entity again to retry.</p>` : null}
  </fieldset>`;
}

// The Indexes section of the entity editor: the declared indexes and the states of all the
// entity's indexes (including those of `indexed: true` fields).
export function IndexesSection({ app, indexes, fieldNames, error, states, moving, onChange }) {
  const details = error && error.details ? error.details.filter((d) => d.field && d.field.startsWith('indexes')) : [];
  const errorsAt = (path) => details.filter((d) => d.field === path).map((d) => d.message);
  const stateOf = (index) => {
    const found = states.find((s) => indexKey(s) === indexKey(cleanIndex(index)));
    return found && found.state;
  };
  const top = errorsAt('indexes');
  return html`<section class="indexes" aria-labelledby="indexes-title">
    <h2 id="indexes-title">Indexes</h2>
    <p class="muted">Composite, unique and descending indexes; built concurrently after the save, without blocking writes.
      A field's own <em>Indexed</em> box declares an index on that field alone.
      <a href=${`/admin/apps/${app}/index-guidance`}>Index guidance</a> shows the lists that need one.</p>
    ${top.length ? html`<p class="field-error">${top.join('; ')}</p>` : null}
    ${indexes.map((index, i) => html`<${IndexRow} key=${i} index=${index} position=${i} names=${fieldNames} errorsAt=${errorsAt} details=${details}
      state=${stateOf(index)} onChange=${(next) => onChange(indexes.map((x, j) => (j === i ? next : x)))}
      onRemove=${() => onChange(indexes.filter((_, j) => j !== i))} />`)}
    <p><button type="button" onClick=${() => onChange([...indexes, { fields: [''], unique: false }])}>Add an index</button></p>
    ${states.length
      ? html`<div class="table-wrap"><table aria-describedby="index-states-caption">
          <caption id="index-states-caption">Build state of each index${moving ? html` <span class="muted" aria-live="polite">(refreshing while a build runs)</span>` : null}</caption>
          <thead><tr><th scope="col">Index</th><th scope="col">Columns</th><th scope="col">Unique</th><th scope="col">Live rows only</th><th scope="col">State</th></tr></thead>
          <tbody>${states.map((s) => html`<tr key=${s.name}>
            <td><code>${s.name}</code></td><td>${s.fields.join(', ')}</td><td>${s.unique ? 'yes' : 'no'}</td><td>${s.partial ? 'yes' : 'no'}</td>
            <td class="index-state"><${StateBadge} state=${s.state} /></td>
          </tr>`)}</tbody></table></div>`
      : null}
  </section>`;
}

// ---- guidance page ----

function describeShape(shape) {
  const filters = shape.filters.map((f) => `${f.field} ${f.op}`).join(', ');
  return `${filters ? `filter ${filters}` : 'no filter'}; sort ${shape.sort}`;
}

export function IndexGuidancePage({ app }) {
  const client = appApi(app);
  // The shapes, and the build states of the indexes each entity declares already (a shape whose
  // suggested index is declared shows that index's state instead of the button).
  const guidance = useLoad(async () => {
    const [shapes, entities] = await Promise.all([client.get('/_admin/indexes/guidance'), client.get('/_admin/entities')]);
    const states = Object.fromEntries(entities.data.map((e) => [e.name, e.indexes || []]));
    return { shapes: shapes.data, states };
  }, [app]);
  const declared = (shape) => {
    const key = indexKey(cleanIndex(shape.suggested_index));
    const found = ((guidance.data && guidance.data.states[shape.entity]) || []).find((s) => indexKey(s) === key);
    return found && found.state;
  };
  const [done, setDone] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const add = async (shape) => {
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const current = (await client.get(`/_admin/entities/${shape.entity}`)).data.definition;
      const wanted = cleanIndex(shape.suggested_index);
      const indexes = current.indexes || [];
      const next = indexes.some((i) => indexKey(i) === indexKey(wanted)) ? indexes : [...indexes, wanted];
      const answer = await client.put(`/_admin/entities/${shape.entity}`, { ...current, indexes: next });
      setDone({ entity: shape.entity, index: wanted, migration: (answer.meta && answer.meta.migration) || [] });
      guidance.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const shapes = guidance.data ? guidance.data.shapes : [];
  const entities = [...new Set(shapes.map((s) => s.entity))];
  return html`<${Page} title="Index guidance" actions=${html`<button type="button" onClick=${guidance.reload}>Refresh</button>`}>
    <p class="muted">Lists served by this instance in the last hour whose filter or sort no index serves: each reads every match, however big the table grows.
      Adding the suggested index declares it in the entity and builds it concurrently.</p>
    <${ErrorBox} error=${guidance.error} />
    <${ErrorBox} error=${error} title="Index not added" />
    ${done
      ? html`<${Notice} kind="ok"><p>Index (${done.index.fields.join(', ')}) added to <a href=${`/admin/apps/${app}/entities/${done.entity}`}>${done.entity}</a>; it is built in the background.</p>
          ${done.migration.length ? html`<ul class="migration-notes">${done.migration.map((n) => html`<li>${n}</li>`)}</ul>` : null}<//>`
      : null}
    ${guidance.data && !shapes.length ? html`<p>No list of the last hour needs an index.</p>` : null}
    ${entities.map((entity) => html`<section class="guidance-entity" aria-labelledby=${`guidance-${entity}`}>
      <h2 id=${`guidance-${entity}`}>${entity}</h2>
      <div class="table-wrap"><table>
        <thead><tr><th scope="col">List</th><th scope="col">Seen</th><th scope="col">Last seen</th><th scope="col">Suggested index</th><th scope="col"><span class="sr-only">Action</span></th></tr></thead>
        <tbody>${shapes.filter((s) => s.entity === entity).map((shape) => html`<tr>
          <td>${describeShape(shape)}</td><td>${shape.seen}</td><td>${formatTime(shape.last_seen)}</td>
          <td><code>(${shape.suggested_index.fields.join(', ')})</code></td>
          <td>${declared(shape)
            ? html`<span class="muted">Declared: </span><${StateBadge} state=${declared(shape)} />`
            : html`<button type="button" class="primary" disabled=${busy} onClick=${() => add(shape)}
                aria-label=${`Add this index (${shape.suggested_index.fields.join(', ')}) to ${entity}`}>Add this index</button>`}</td>
        </tr>`)}</tbody>
      </table></div>
    </section>`)}
  <//>`;
}
