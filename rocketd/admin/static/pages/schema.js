// Export, import and compare: download the app's schema document, upload one and see the import
// report, or compare one with the app (POST /_admin/diff: what an import would change, nothing
// written) and see what it would add, what differs and what only the app has.
import { html, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { ErrorBox, Field, Notice, Page, preview } from '../lib/ui.js';

function saveJson(name, value) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(value, null, 2)], { type: 'application/json' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function readDocument(file) {
  try {
    return JSON.parse(await file.text());
  } catch (err) {
    throw new Error(`${file.name} is not JSON: ${err.message}`);
  }
}

const GROUPS = [
  ['added', 'Added'],
  ['changed', 'Changed'],
  ['unchanged', 'Unchanged'],
  ['only_in_app', 'Only in the app'],
  ['left_out', 'Left out'],
];
const ACTIONS = {
  create: 'creates it',
  update: 'replaces it',
  skip: 'leaves it',
  ignore: 'ignores it',
};

function sectionLabel(name) {
  const text = name.replace(/_/g, ' ');
  return text === 'ui configs' ? 'UI configs' : text.charAt(0).toUpperCase() + text.slice(1);
}

function shown(value) {
  return value === null || value === undefined ? html`<em>not set</em>` : html`<code>${preview(value)}</code>`;
}

// Every entry of one group, across the sections, with the section it belongs to.
function entriesOf(diff, group) {
  return Object.entries(diff)
    .filter(([name, section]) => name !== 'summary' && section && Array.isArray(section[group]))
    .flatMap(([name, section]) => section[group].map((entry) => ({ section: name, ...entry })));
}

function DiffTable({ caption, head, rows }) {
  if (!rows.length) return null;
  return html`<div class="table-wrap"><table>
    <caption>${caption}</caption>
    <thead><tr>${head.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead>
    <tbody>${rows}</tbody>
  </table></div>`;
}

function DiffResult({ diff, file }) {
  const { summary } = diff;
  const differs = summary.added + summary.changed + summary.only_in_app + summary.left_out > 0;
  const added = entriesOf(diff, 'added');
  const changed = entriesOf(diff, 'changed').flatMap((e) =>
    e.changes.map((c, i) => ({ ...e, change: c, first: i === 0, span: e.changes.length })),
  );
  const onlyInApp = entriesOf(diff, 'only_in_app');
  const leftOut = entriesOf(diff, 'left_out');
  return html`<div class="notice ok" role="region" aria-label="Comparison">
    <p><strong>${differs ? `${file} differs from this app.` : `${file} matches this app: importing it would change nothing.`}</strong> Nothing was written.</p>
    <table class="report" aria-label="Comparison summary"><tbody>
      ${GROUPS.map(([key, label]) => html`<tr><th scope="row">${label}</th><td>${summary[key]}</td></tr>`)}
      <tr><th scope="row">An import would create</th><td>${summary.import.create}</td></tr>
      <tr><th scope="row">An import would replace (UI configs)</th><td>${summary.import.update}</td></tr>
      <tr><th scope="row">An import would leave as they are</th><td>${summary.import.skip}</td></tr>
      <tr><th scope="row">Sample rows an import would write</th><td>${summary.records}</td></tr>
    </tbody></table>
    <${DiffTable} caption="Added: in the document, not in the app" head=${['Section', 'Item', 'Import']}
      rows=${added.map((e) => html`<tr><td>${sectionLabel(e.section)}</td><td><code>${e.key}</code></td><td>${ACTIONS[e.import]}</td></tr>`)} />
    <${DiffTable} caption="Changed: in both, different" head=${['Section', 'Item', 'Attribute', 'In the app', 'In the document', 'Import']}
      rows=${changed.map((e) => html`<tr>
        ${e.first ? html`<td rowspan=${e.span}>${sectionLabel(e.section)}</td><td rowspan=${e.span}><code>${e.key}</code></td>` : null}
        <td><code>${e.change.path || '(whole item)'}</code></td><td>${shown(e.change.old)}</td><td>${shown(e.change.new)}</td>
        ${e.first ? html`<td rowspan=${e.span}>${ACTIONS[e.import]}${e.import === 'skip' ? ' (these changes are not applied)' : ''}</td>` : null}
      </tr>`)} />
    <${DiffTable} caption="Only in the app: not in the document (an import keeps them)" head=${['Section', 'Item']}
      rows=${onlyInApp.map((e) => html`<tr><td>${sectionLabel(e.section)}</td><td><code>${e.key}</code></td></tr>`)} />
    <${DiffTable} caption="Left out: in the document, not imported" head=${['Section', 'Item', 'Import', 'Why']}
      rows=${leftOut.map((e) => html`<tr><td>${sectionLabel(e.section)}</td><td><code>${e.key}</code> (${e.at})</td><td>${ACTIONS[e.import]}</td><td>${e.reason}</td></tr>`)} />
    <${DiffTable} caption="Sample data" head=${['Key', 'Written into', 'Rows', 'Import']}
      rows=${(diff.sample_data || []).map((e) => html`<tr><td><code>${e.key}</code></td><td>${e.into ? e.into.replace('_', ' ') : ''}</td><td>${e.rows ?? ''}</td><td>${e.import === 'insert' ? 'writes the rows' : e.reason}</td></tr>`)} />
  </div>`;
}

// A file input's change handler that reads the chosen document and sends it (`send(document,
// file)`), with the answer, the error and whether it is running.
function useDocumentUpload(send) {
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [running, setRunning] = useState(false);
  const onChange = async (event) => {
    const file = event.currentTarget.files[0];
    if (!file) return;
    setError(null);
    setResult(null);
    setRunning(true);
    try {
      setResult(await send(await readDocument(file), file));
    } catch (err) {
      setError(err);
    } finally {
      setRunning(false);
      event.target.value = '';
    }
  };
  return { result, error, setError, running, onChange };
}

export function SchemaPage({ app }) {
  const client = appApi(app);
  const [notice, setNotice] = useState('');
  const importing = useDocumentUpload(async (document) => {
    const answer = await client.post('/_admin/import', document);
    return { ...answer.data, meta: answer.meta || {} };
  });
  const comparing = useDocumentUpload(async (document, file) => {
    const answer = await client.post('/_admin/diff', document);
    return { data: answer.data, file: file.name };
  });
  const exportSchema = async () => {
    importing.setError(null);
    try {
      const { data } = await client.get('/_admin/export');
      saveJson(`${app}-schema.json`, data);
      setNotice(`Exported ${data.entities.length} entities and ${data.relations.length} relations.`);
    } catch (err) {
      importing.setError(err);
    }
  };
  const report = importing.result;
  const diff = comparing.result;
  return html`<${Page} title="Export and import">
    <section class="card" aria-labelledby="export-title">
      <h2 id="export-title">Export</h2>
      <p>The app's metadata as one JSON document (entities, relations, rules, state machines, workflows, permissions, webhooks, UI configs).</p>
      <button type="button" class="primary" onClick=${exportSchema}>Download the schema</button>
      <${Notice}>${notice}<//>
    </section>
    <section class="card" aria-labelledby="import-title">
      <h2 id="import-title">Import</h2>
      <p>All or nothing: a document with a problem changes nothing. Items that already exist are skipped.</p>
      <${Field} label="Schema document to import" render=${(a) => html`<input ...${a} type="file" accept="application/json,.json" onChange=${importing.onChange} disabled=${importing.running} />`} />
      ${importing.running ? html`<p role="status"><progress aria-label="Importing"></progress> Importing…</p>` : null}
      <${ErrorBox} error=${importing.error} title="Not imported" />
      ${report
        ? html`<div class="notice ok" role="status" aria-label="Import report">
            <p><strong>${report.message}</strong></p>
            <table class="report"><tbody>${Object.entries(report.summary).map(([k, v]) => html`<tr><th scope="row">${k}</th><td>${v}</td></tr>`)}</tbody></table>
            ${report.skipped && Object.keys(report.skipped).length ? html`<p>Skipped (already there):</p><ul>${Object.entries(report.skipped).map(([k, v]) => html`<li>${k}: ${v.join(', ')}</li>`)}</ul>` : null}
            ${report.ignored && report.ignored.length ? html`<p>Ignored:</p><ul>${report.ignored.map((i) => html`<li>${i}</li>`)}</ul>` : null}
            ${report.meta.migration && report.meta.migration.length ? html`<p>Migration notes:</p><ul>${report.meta.migration.map((n) => html`<li>${n}</li>`)}</ul>` : null}
          </div>`
        : null}
    </section>
    <section class="card" aria-labelledby="compare-title">
      <h2 id="compare-title">Compare with a file</h2>
      <p>What importing a schema document would change in this app, item by item: what it adds, what differs (an import leaves existing items as they are, except UI configs) and what only the app has. Nothing is written.</p>
      <${Field} label="Schema document to compare" render=${(a) => html`<input ...${a} type="file" accept="application/json,.json" onChange=${comparing.onChange} disabled=${comparing.running} />`} />
      ${comparing.running ? html`<p role="status"><progress aria-label="Comparing"></progress> Comparing…</p>` : null}
      <${ErrorBox} error=${comparing.error} title="Not compared" />
      ${diff ? html`<${DiffResult} diff=${diff.data} file=${diff.file} />` : null}
    </section>
  <//>`;
}
