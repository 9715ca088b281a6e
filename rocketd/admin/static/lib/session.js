// The session: the tokens of the platform login and of app logins, in memory and in
// sessionStorage (one tab, gone when it closes; never localStorage, which every tab and every
// later visit would share).
const KEY = 'rocketd-admin-session';
const listeners = new Set();

function empty() {
  return { platform: null, apps: {} };
}

function load() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(KEY));
    return stored && typeof stored === 'object' ? { ...empty(), ...stored } : empty();
  } catch {
    return empty();
  }
}

let state = load();

function save() {
  sessionStorage.setItem(KEY, JSON.stringify(state));
  for (const listener of listeners) listener();
}

export const session = {
  get platform() {
    return state.platform;
  },
  appNames() {
    return Object.keys(state.apps);
  },
  app(name) {
    return state.apps[name] || null;
  },
  signedIn() {
    return Boolean(state.platform) || Object.keys(state.apps).length > 0;
  },
  setPlatform(credential) {
    state.platform = credential;
    save();
  },
  setApp(name, credential) {
    if (credential) state.apps[name] = credential;
    else delete state.apps[name];
    save();
  },
  // The credential that calls go out with: an app's own login when there is one, else the
  // platform login (platform admins count as admins of every app).
  credential(scope) {
    if (scope !== 'platform' && state.apps[scope]) return { scope, ...state.apps[scope] };
    return state.platform ? { scope: 'platform', ...state.platform } : null;
  },
  update(scope, tokens) {
    if (scope === 'platform') state.platform = tokens && { ...state.platform, ...tokens };
    else if (tokens) state.apps[scope] = { ...state.apps[scope], ...tokens };
    else delete state.apps[scope];
    save();
  },
  clear() {
    state = empty();
    save();
  },
  subscribe(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};
