// Files: every uploaded file of the app (admin list), upload, download, delete.
import { html, useState } from '../lib/html.js';
import { appApi } from '../lib/api.js';
import { downloadFile, uploadFile } from '../lib/files.js';
import { ErrorBox, Field, Notice, Page, formatTime, useLoad } from '../lib/ui.js';

export function FilesPage({ app }) {
  const client = appApi(app);
  const files = useLoad(() => client.get('/_files').then((r) => r.data), [app]);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState('');
  const [busy, setBusy] = useState(false);
  const upload = async (event) => {
    const chosen = event.currentTarget.files[0];
    if (!chosen) return;
    setBusy(true);
    setError(null);
    try {
      const stored = await uploadFile(app, chosen);
      setNotice(`Uploaded ${stored.filename} (${stored.size} bytes).`);
      files.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const remove = async (file) => {
    setError(null);
    try {
      await client.del(`/_files/${file.id}`);
      setNotice(`Deleted ${file.filename}.`);
      files.reload();
    } catch (err) {
      setError(err);
    }
  };
  return html`<${Page} title="Files">
    <${Notice}>${notice}<//>
    <${ErrorBox} error=${error || files.error} />
    <${Field} label="Upload a file" render=${(a) => html`<input ...${a} type="file" onChange=${upload} disabled=${busy} />`} />
    ${files.data
      ? files.data.length
        ? html`<div class="table-wrap"><table>
            <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Size</th><th scope="col">Uploaded</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>${files.data.map((f) => html`<tr key=${f.id}>
              <th scope="row">${f.filename}</th><td>${f.mime_type}</td><td>${f.size}</td><td>${formatTime(f.created_at)}</td>
              <td class="actions"><button type="button" onClick=${() => downloadFile(app, f.id, f.filename).catch(setError)}>Download ${f.filename}</button>
                <button type="button" class="danger" onClick=${() => remove(f)}>Delete ${f.filename}</button></td>
            </tr>`)}</tbody></table></div>`
        : html`<p>No files yet.</p>`
      : null}
  <//>`;
}
