// The UI's one way to the server: the public REST API, with the session's bearer tokens.
// An expired access token is refreshed once (through the route of the login it came from) and
// the call repeated; a refresh that fails ends that login.
import { session } from './session.js';

export class ApiError extends Error {
  constructor(status, error, traceId) {
    super((error && error.message) || `Request failed (HTTP ${status})`);
    this.status = status;
    this.code = (error && error.code) || 'HTTP_ERROR';
    this.details = (error && error.details) || [];
    this.traceId = traceId;
  }

  // Messages of the details about one field path (e.g. `fields[1].type`), or one record field.
  fieldMessages(field) {
    return this.details.filter((d) => d.field === field).map((d) => d.message);
  }
}

function urlOf(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.append(key, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

function send(method, url, token, opts) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (opts.form) body = opts.form;
  else if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  return fetch(url, { method, headers, body, cache: 'no-store', credentials: 'omit' });
}

async function decode(response) {
  const traceId = response.headers.get('X-Trace-ID');
  const text = await response.text();
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) throw new ApiError(response.status, body && body.error, traceId);
  return { ...(body || {}), traceId, status: response.status };
}

const refreshing = new Map();

function refreshPath(scope) {
  return scope === 'platform' ? '/api/_platform/auth/refresh' : `/api/${scope}/auth/refresh`;
}

// One refresh at a time per login: parallel calls that all got a 401 wait for the same one.
function refresh(credential) {
  const { scope } = credential;
  if (!refreshing.has(scope)) {
    const attempt = (async () => {
      const response = await send('POST', refreshPath(scope), null, {
        body: { refresh_token: credential.refresh_token },
      });
      if (!response.ok) {
        session.update(scope, null);
        return null;
      }
      const { data } = await response.json();
      session.update(scope, data);
      return data;
    })().finally(() => refreshing.delete(scope));
    refreshing.set(scope, attempt);
  }
  return refreshing.get(scope);
}

async function call(method, path, opts = {}) {
  const scope = opts.scope || 'platform';
  const credential = opts.anonymous ? null : session.credential(scope);
  const url = urlOf(path, opts.query);
  let response = await send(method, url, credential && credential.access_token, opts);
  if (response.status === 401 && credential && credential.refresh_token) {
    const tokens = await refresh(credential);
    if (tokens) response = await send(method, url, tokens.access_token, opts);
  }
  if (opts.raw && response.ok) return response;
  return decode(response);
}

export const api = {
  get: (path, opts) => call('GET', path, opts),
  post: (path, body, opts = {}) => call('POST', path, { ...opts, body }),
  put: (path, body, opts = {}) => call('PUT', path, { ...opts, body }),
  del: (path, opts) => call('DELETE', path, opts),
  upload: (path, form, opts = {}) => call('POST', path, { ...opts, form }),
  raw: (path, opts = {}) => call('GET', path, { ...opts, raw: true }),
};

// Shorthand for the routes of one app: `appApi('shop').get('/_admin/entities')`.
export function appApi(app) {
  const base = `/api/${app}`;
  const scope = { scope: app };
  return {
    get: (path, opts = {}) => api.get(base + path, { ...scope, ...opts }),
    post: (path, body, opts = {}) => api.post(base + path, body, { ...scope, ...opts }),
    put: (path, body, opts = {}) => api.put(base + path, body, { ...scope, ...opts }),
    del: (path, opts = {}) => api.del(base + path, { ...scope, ...opts }),
    upload: (path, form, opts = {}) => api.upload(base + path, form, { ...scope, ...opts }),
    raw: (path, opts = {}) => api.raw(base + path, { ...scope, ...opts }),
  };
}

// Log out everywhere this tab is logged in: each refresh token is revoked on the server.
export async function logOutAll() {
  const calls = [];
  const platform = session.platform;
  if (platform) calls.push(send('POST', '/api/_platform/auth/logout', null, { body: { refresh_token: platform.refresh_token } }));
  for (const name of session.appNames()) {
    const credential = session.app(name);
    calls.push(send('POST', `/api/${name}/auth/logout`, null, { body: { refresh_token: credential.refresh_token } }));
  }
  await Promise.allSettled(calls);
  session.clear();
}
