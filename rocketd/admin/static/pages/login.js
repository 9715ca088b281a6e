// Login: the platform account (manages apps, counts as admin in every app) or one app's account.
import { html, useEffect, useState } from '../lib/html.js';
import { api } from '../lib/api.js';
import { navigate, useLocation } from '../lib/router.js';
import { session } from '../lib/session.js';
import { ErrorBox, TextField } from '../lib/ui.js';

function safeNext(next) {
  return next && next.startsWith('/admin') && !next.startsWith('/admin/login') ? next : null;
}

export function LoginPage() {
  const { query } = useLocation();
  const next = safeNext(query.get('next'));
  const [kind, setKind] = useState(query.get('app') ? 'app' : 'platform');
  const [app, setApp] = useState(query.get('app') || '');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  // Someone already signed in (back button, a bookmark) goes on, unless they asked for an app login.
  useEffect(() => {
    if (session.signedIn() && !query.get('app')) navigate(next || '/admin', { replace: true });
  }, []);

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (kind === 'platform') {
        const { data } = await api.post('/api/_platform/auth/login', { email, password }, { anonymous: true });
        session.setPlatform({ ...data, email });
        navigate(next || '/admin/apps', { replace: true });
      } else {
        const name = app.trim();
        const { data } = await api.post(`/api/${encodeURIComponent(name)}/auth/login`, { email, password }, { anonymous: true });
        session.setApp(name, { ...data, email });
        navigate(next && next.startsWith(`/admin/apps/${name}`) ? next : `/admin/apps/${name}`, { replace: true });
      }
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return html`<section class="login" aria-labelledby="login-title">
    <h1 id="login-title">rocketd admin</h1>
    <form onSubmit=${submit}>
      <fieldset>
        <legend>Sign in with</legend>
        <div class="field check">
          <input type="radio" id="kind-platform" name="kind" value="platform" checked=${kind === 'platform'} onChange=${() => setKind('platform')} />
          <label for="kind-platform">The platform account</label>
        </div>
        <div class="field check">
          <input type="radio" id="kind-app" name="kind" value="app" checked=${kind === 'app'} onChange=${() => setKind('app')} />
          <label for="kind-app">An app's account</label>
        </div>
      </fieldset>
      ${kind === 'app' ? html`<${TextField} label="App" name="app" value=${app} onInput=${setApp} required autocomplete="off" />` : null}
      <${TextField} label="Email" name="email" type="email" value=${email} onInput=${setEmail} required autocomplete="username" />
      <${TextField} label="Password" name="password" type="password" value=${password} onInput=${setPassword} required autocomplete="current-password" />
      <button type="submit" class="primary" disabled=${busy}>Log in</button>
      <${ErrorBox} error=${error} title="Login failed" />
    </form>
  </section>`;
}
