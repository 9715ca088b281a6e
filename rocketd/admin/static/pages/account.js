// The platform account: who is signed in (GET /api/_platform/auth/me), change the password or
// the email (each needs the current password).
import { html, useState } from '../lib/html.js';
import { api } from '../lib/api.js';
import { session } from '../lib/session.js';
import { ErrorBox, Notice, Page, TextField, useLoad } from '../lib/ui.js';

function PasswordForm() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [repeat, setRepeat] = useState('');
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState('');
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    setNotice('');
    if (next !== repeat) {
      setError(new Error('The new password and its repetition differ.'));
      return;
    }
    try {
      const answer = await api.put('/api/_platform/auth/password', { current_password: current, new_password: next });
      setNotice(`${answer.message}. Other sessions of this account were signed out.`);
      setCurrent('');
      setNext('');
      setRepeat('');
    } catch (err) {
      setError(err);
    }
  };
  const at = (key) => (error && error.fieldMessages ? error.fieldMessages(key) : []);
  return html`<form class="card" onSubmit=${submit} aria-labelledby="password-title">
    <h2 id="password-title">Change the password</h2>
    <${TextField} label="Current password" type="password" value=${current} onInput=${setCurrent} autocomplete="current-password" errors=${at('current_password')} />
    <${TextField} label="New password" type="password" value=${next} onInput=${setNext} autocomplete="new-password" errors=${at('new_password')} />
    <${TextField} label="New password, again" type="password" value=${repeat} onInput=${setRepeat} autocomplete="new-password" />
    <button type="submit" class="primary">Change the password</button>
    <${ErrorBox} error=${error} title="Not changed" />
    <${Notice} kind="ok">${notice}<//>
  </form>`;
}

function EmailForm({ onChanged }) {
  const [current, setCurrent] = useState('');
  const [email, setEmail] = useState('');
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      const { data } = await api.put('/api/_platform/auth/email', { current_password: current, email });
      session.setPlatform({ ...session.platform, email: data.email });
      setCurrent('');
      setEmail('');
      onChanged(data.email);
    } catch (err) {
      setError(err);
    }
  };
  const at = (key) => (error && error.fieldMessages ? error.fieldMessages(key) : []);
  return html`<form class="card" onSubmit=${submit} aria-labelledby="email-title">
    <h2 id="email-title">Change the email</h2>
    <${TextField} label="New email" type="email" value=${email} onInput=${setEmail} autocomplete="email" errors=${at('email')} />
    <${TextField} label="Current password (to confirm)" type="password" value=${current} onInput=${setCurrent} autocomplete="current-password" errors=${at('current_password')} />
    <button type="submit" class="primary">Change the email</button>
    <${ErrorBox} error=${error} title="Not changed" />
  </form>`;
}

export function AccountPage() {
  const me = useLoad(() => api.get('/api/_platform/auth/me').then((r) => r.data), []);
  const [notice, setNotice] = useState('');
  const changed = (email) => {
    setNotice(`The account's email is now ${email}.`);
    me.reload();
  };
  return html`<${Page} title="Platform account">
    <${ErrorBox} error=${me.error} />
    ${me.data ? html`<dl class="facts"><dt>Email</dt><dd>${me.data.email}</dd><dt>Id</dt><dd><code>${me.data.id}</code></dd></dl>` : null}
    <${Notice} kind="ok">${notice}<//>
    <${PasswordForm} />
    <${EmailForm} onChanged=${changed} />
  <//>`;
}
