// Export and import: download the app's schema document, upload one, see the import report.
import { html, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { ErrorBox, Field, Notice, Page } from '../lib/ui.js';

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

export function SchemaPage({ app }) {
  const client = appApi(app);
  const [error, setError] = useState(null);
  const [report, setReport] = useState(null);
  const [running, setRunning] = useState(false);
  const [notice, setNotice] = useState('');
  const exportSchema = async () => {
    setError(null);
    try {
      const { data } = await client.get('/_admin/export');
      saveJson(`${app}-schema.json`, data);
      setNotice(`Exported ${data.entities.length} entities and ${data.relations.length} relations.`);
    } catch (err) {
      setError(err);
    }
  };
  const importSchema = async (event) => {
    const file = event.currentTarget.files[0];
    if (!file) return;
    setError(null);
    setReport(null);
    setRunning(true);
    try {
      let document;
      try {
        document = JSON.parse(await file.text());
      } catch (err) {
        throw new Error(`${file.name} is not JSON: ${err.message}`);
      }
      const answer = await client.post('/_admin/import', document);
      setReport({ ...answer.data, meta: answer.meta || {} });
    } catch (err) {
      setError(err);
    } finally {
      setRunning(false);
      event.target.value = '';
    }
  };
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
      <${Field} label="Schema document to import" render=${(a) => html`<input ...${a} type="file" accept="application/json,.json" onChange=${importSchema} disabled=${running} />`} />
      ${running ? html`<p role="status"><progress aria-label="Importing"></progress> Importing…</p>` : null}
      <${ErrorBox} error=${error} title="Not imported" />
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
  <//>`;
}
