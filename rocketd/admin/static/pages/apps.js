// Apps: list, create, delete (confirmed by typing the name). Platform account only.
import { html, useState } from '../lib/html.js';
import { api, appApi } from '../lib/api.js';
import { navigate } from '../lib/router.js';
import { session } from '../lib/session.js';
import { ConfirmDelete, ErrorBox, Notice, Page, TextField, useLoad } from '../lib/ui.js';

function CreateApp({ onCreated }) {
  const [name, setName] = useState('');
  const [display, setDisplay] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = { name: name.trim() };
      if (display.trim()) body.display_name = display.trim();
      const { data } = await api.post('/api/_platform/apps', body);
      setName('');
      setDisplay('');
      onCreated(data);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="card" onSubmit=${submit} aria-labelledby="create-app">
    <h2 id="create-app">Create an app</h2>
    <div class="row">
      <${TextField} label="Name" name="name" value=${name} onInput=${setName} required
        hint="Lowercase letters, digits and _; the app's URL is /api/<name>" />
      <${TextField} label="Display name" name="display_name" value=${display} onInput=${setDisplay} />
    </div>
    <button type="submit" class="primary" disabled=${busy}>${busy ? 'Creating…' : 'Create app'}</button>
    <${ErrorBox} error=${error} title="Could not create the app" />
  </form>`;
}

export function AppsPage() {
  return session.platform ? html`<${AppList} />` : html`<${AppLinks} />`;
}

function AppLinks() {
  {
    const names = session.appNames();
    return html`<${Page} title="Apps">
      <p>You are signed in to ${names.length === 1 ? 'one app' : 'apps'} only:</p>
      <ul>${names.map((n) => html`<li><a href=${`/admin/apps/${n}`}>${n}</a></li>`)}</ul>
    <//>`;
  }
}

function AppList() {
  const apps = useLoad(() => api.get('/api/_platform/apps').then((r) => r.data), []);
  const [notice, setNotice] = useState('');
  const created = (app) => {
    setNotice(`App ${app.name} created (database ${app.db_name}).`);
    apps.reload();
  };
  const remove = async (name) => {
    await api.del(`/api/_platform/apps/${name}`);
    setNotice(`App ${name} deleted.`);
    apps.reload();
  };
  return html`<${Page} title="Apps">
    <${Notice}>${notice}<//>
    <${ErrorBox} error=${apps.error} />
    ${apps.data
      ? apps.data.length
        ? html`<div class="table-wrap"><table>
            <caption class="sr-only">Apps</caption>
            <thead><tr><th scope="col">Name</th><th scope="col">Display name</th><th scope="col">Database</th><th scope="col">Status</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>${apps.data.map((a) => html`<tr key=${a.name}>
              <th scope="row"><a href=${`/admin/apps/${a.name}`}>${a.name}</a></th>
              <td>${a.display_name}</td><td><code>${a.db_name}</code></td><td>${a.status}</td>
              <td><${ConfirmDelete} name=${a.name} what="app" onConfirm=${() => remove(a.name)} /></td>
            </tr>`)}</tbody>
          </table></div>`
        : html`<p>No apps yet.</p>`
      : apps.loading ? html`<p aria-busy="true">Loading…</p>` : null}
    <${CreateApp} onCreated=${created} />
  <//>`;
}

// An app's start page: what is defined in it, with links to each section.
export function AppHome({ app }) {
  const client = appApi(app);
  const overview = useLoad(async () => {
    const [entities, relations, pending] = await Promise.all([
      client.get('/_admin/entities'),
      client.get('/_admin/relations'),
      client.get('/_workflows/pending'),
    ]);
    return { entities: entities.data, relations: relations.data, pending: pending.data };
  }, [app]);
  const signedInHere = session.app(app);
  return html`<${Page} title=${`App ${app}`}>
    ${signedInHere ? html`<p class="muted">Signed in to this app as ${signedInHere.email}.</p>` : null}
    <${ErrorBox} error=${overview.error} />
    ${overview.error && overview.error.status === 401
      ? html`<p><a href=${`/admin/login?app=${app}&next=${encodeURIComponent(location.pathname)}`}>Log in to ${app}</a></p>`
      : null}
    ${overview.data
      ? html`<ul class="stats">
          <li><a href=${`/admin/apps/${app}/entities`}><strong>${overview.data.entities.length}</strong> entities</a></li>
          <li><a href=${`/admin/apps/${app}/relations`}><strong>${overview.data.relations.length}</strong> relations</a></li>
          <li><a href=${`/admin/apps/${app}/approvals`}><strong>${overview.data.pending.length}</strong> pending approvals</a></li>
        </ul>`
      : null}
    <p><button type="button" onClick=${() => navigate(`/admin/apps/${app}/entities/new`)}>Define an entity</button></p>
  <//>`;
}
