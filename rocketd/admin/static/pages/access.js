// Users, invites (single, bulk, copy the link), permissions, and the page where an invitee sets
// a password (the invite link points there).
import { html, useState } from '../lib/html.js';
import { api, appApi } from '../lib/api.js';
import { KindPage } from '../lib/kind.js';
import { navigate, useLocation } from '../lib/router.js';
import { session } from '../lib/session.js';
import { CheckField, ErrorBox, Field, JsonField, Notice, Page, SelectField, TextField, copyText, formatTime, useLoad } from '../lib/ui.js';

const roleList = (text) => text.split(',').map((r) => r.trim()).filter(Boolean);

function UserFields({ draft, setDraft, at, isNew }) {
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  return html`<div class="row">
    <${TextField} label="Email" type="email" value=${draft.email} onInput=${set('email')} errors=${at('email')} />
    <${TextField} label=${isNew ? 'Password' : 'New password (empty: unchanged)'} type="password" value=${draft.password || ''} onInput=${set('password')} errors=${at('password')} autocomplete="new-password" />
    <${TextField} label="Roles (comma separated)" value=${draft.rolesText} onInput=${set('rolesText')} errors=${at('roles')} />
    <${CheckField} label="Active" checked=${draft.active} onChange=${set('active')} errors=${at('active')} />
  </div>`;
}

const USERS = {
  title: 'Users',
  noun: 'user',
  path: '/_admin/users',
  label: (row) => row.email,
  columns: [
    { label: 'Email', cell: (r) => r.email },
    { label: 'Roles', cell: (r) => r.roles.join(', ') },
    { label: 'Active', cell: (r) => (r.active ? 'yes' : 'no') },
    { label: 'Created', cell: (r) => formatTime(r.created_at) },
  ],
  blank: () => ({ email: '', password: '', rolesText: '', active: true }),
  fromRow: (row) => ({ ...row, password: '', rolesText: row.roles.join(', ') }),
  toBody: (d) => {
    const body = { email: d.email, roles: roleList(d.rolesText), active: Boolean(d.active) };
    if (d.password) body.password = d.password;
    return body;
  },
  Fields: UserFields,
};

export function UsersPage({ app }) {
  return html`<${KindPage} app=${app} kind=${USERS} />`;
}

function inviteLink(app, token) {
  return `${location.origin}/admin/apps/${app}/accept-invite?token=${encodeURIComponent(token)}`;
}

function CreatedInvites({ app, invites }) {
  const [copied, setCopied] = useState('');
  if (!invites.length) return null;
  const copy = async (invite) => {
    const ok = await copyText(inviteLink(app, invite.token));
    setCopied(ok ? `Link for ${invite.email} copied.` : 'The browser refused the clipboard: select the link and copy it.');
  };
  return html`<section class="card" aria-labelledby="new-invites">
    <h2 id="new-invites">New invite links</h2>
    <p class="muted">A link is shown only now: the API never returns an invite's token again.</p>
    <ul>${invites.map((i) => html`<li><strong>${i.email}</strong>: <code class="invite-link">${inviteLink(app, i.token)}</code>
      <button type="button" onClick=${() => copy(i)}>Copy link for ${i.email}</button></li>`)}</ul>
    <p role="status">${copied}</p>
  </section>`;
}

export function InvitesPage({ app }) {
  const client = appApi(app);
  const invites = useLoad(() => client.get('/_admin/invites').then((r) => r.data), [app]);
  const [emails, setEmails] = useState('');
  const [roles, setRoles] = useState('');
  const [error, setError] = useState(null);
  const [created, setCreated] = useState([]);
  const [report, setReport] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    setReport(null);
    const list = emails.split(/[\s,;]+/).map((e) => e.trim()).filter(Boolean);
    try {
      if (list.length === 1) {
        const { data } = await client.post('/_admin/invites', { email: list[0], roles: roleList(roles) });
        setCreated([data]);
      } else {
        const { data } = await client.post('/_admin/invites/bulk', { emails: list, roles: roleList(roles) });
        setCreated(data.created);
        setReport(data);
      }
      setEmails('');
      invites.reload();
    } catch (err) {
      setError(err);
    }
  };
  const remove = async (invite) => {
    await client.del(`/_admin/invites/${invite.id}`);
    invites.reload();
  };
  return html`<${Page} title="Invites">
    <form class="card" onSubmit=${submit} aria-labelledby="invite-form">
      <h2 id="invite-form">Invite people</h2>
      <${Field} label="Emails (one, or several separated by commas or new lines)" errors=${error && error.fieldMessages ? error.fieldMessages('emails').concat(error.fieldMessages('email')) : []}
        render=${(a) => html`<textarea ...${a} rows="3" value=${emails} onInput=${(e) => setEmails(e.currentTarget.value)}></textarea>`} />
      <${TextField} label="Roles (comma separated)" value=${roles} onInput=${setRoles} />
      <button type="submit" class="primary">Invite</button>
      <${ErrorBox} error=${error} title="Not invited" />
    </form>
    ${report ? html`<${Notice}>${report.summary.created} of ${report.summary.total} invited.${report.skipped.length ? html` Skipped: <ul>${report.skipped.map((s) => html`<li>${s.email}: ${s.reason}</li>`)}</ul>` : null}<//>` : null}
    <${CreatedInvites} app=${app} invites=${created} />
    <${ErrorBox} error=${invites.error} />
    ${invites.data
      ? invites.data.length
        ? html`<div class="table-wrap"><table>
            <thead><tr><th scope="col">Email</th><th scope="col">Roles</th><th scope="col">Expires</th><th scope="col">Accepted</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>${invites.data.map((i) => html`<tr key=${i.id}><td>${i.email}</td><td>${i.roles.join(', ')}</td><td>${formatTime(i.expires_at)}</td><td>${i.accepted_at ? formatTime(i.accepted_at) : 'no'}</td>
              <td><button type="button" class="danger" onClick=${() => remove(i)}>Revoke invite for ${i.email}</button></td></tr>`)}</tbody></table></div>`
        : html`<p>No invites yet.</p>`
      : null}
  <//>`;
}

// The invitee's page: public (no login), reached through the invite link.
export function AcceptInvitePage({ app }) {
  const { query } = useLocation();
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      const { data } = await api.post(`/api/${app}/auth/accept-invite`, { token: query.get('token') || '', password }, { anonymous: true });
      session.setApp(app, { access_token: data.access_token, refresh_token: data.refresh_token, email: data.user.email });
      navigate(`/admin/apps/${app}`, { replace: true });
    } catch (err) {
      setError(err);
    }
  };
  return html`<section class="login" aria-labelledby="accept-title">
    <h1 id="accept-title">Join ${app}</h1>
    <form onSubmit=${submit}>
      <${TextField} label="Choose a password" type="password" value=${password} onInput=${setPassword} autocomplete="new-password" errors=${error && error.fieldMessages ? error.fieldMessages('password') : []} />
      <button type="submit" class="primary">Accept the invite</button>
      <${ErrorBox} error=${error} title="Not accepted" />
    </form>
  </section>`;
}

const ACTIONS = ['read', 'create', 'update', 'delete'];

function PermissionFields({ draft, setDraft, at, under, entities }) {
  const set = (key) => (value) => setDraft({ ...draft, [key]: value });
  return html`<div class="row">
      <${SelectField} label="Entity" value=${draft.entity} options=${['', ...entities.map((e) => e.name)]} onChange=${set('entity')} errors=${at('entity')} />
      <${SelectField} label="Action" value=${draft.action} options=${ACTIONS} onChange=${set('action')} errors=${at('action')} />
      <${TextField} label="Roles (comma separated)" value=${draft.rolesText} onInput=${set('rolesText')} errors=${at('roles')} />
    </div>
    <${JsonField} label="Conditions" value=${draft.conditions} onChange=${set('conditions')} rows=${5} errors=${under('conditions')}
      hint='[{"field": "owner_id", "operator": "eq", "value": "$user.id"}] — empty: no condition' />`;
}

const PERMISSIONS = {
  title: 'Permissions',
  noun: 'permission',
  path: '/_admin/permissions',
  label: (row) => `${row.entity} ${row.action} ${row.roles.join('/')}`.trim(),
  columns: [
    { label: 'Entity', cell: (r) => r.entity },
    { label: 'Action', cell: (r) => r.action },
    { label: 'Roles', cell: (r) => r.roles.join(', ') },
    { label: 'Conditions', cell: (r) => html`<code>${JSON.stringify(r.conditions)}</code>` },
  ],
  blank: (entities) => ({ entity: entities[0] ? entities[0].name : '', action: 'read', rolesText: '', conditions: [] }),
  fromRow: (row) => ({ ...row, rolesText: row.roles.join(', ') }),
  toBody: (d) => ({ entity: d.entity, action: d.action, roles: roleList(d.rolesText), conditions: d.conditions || [] }),
  Fields: PermissionFields,
};

export function PermissionsPage({ app }) {
  return html`<${KindPage} app=${app} kind=${PERMISSIONS} />`;
}
