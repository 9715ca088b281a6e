// The admin UI's entry point: the route table, the frame around every page (header, app
// navigation), and the redirect to the login page when nobody is signed in.
import { html, render, useEffect, useState } from './lib/html.js';
import { match, navigate, useLocation } from './lib/router.js';
import { session } from './lib/session.js';
import { logOutAll } from './lib/api.js';
import { LoginPage } from './pages/login.js';
import { AppsPage, AppHome } from './pages/apps.js';
import { EntitiesPage, EntityEditor } from './pages/entities.js';
import { IndexGuidancePage } from './pages/indexes.js';
import { RelationsPage } from './pages/relations.js';
import { DataPage, RecordPage } from './pages/data.js';
import { RulesPage } from './pages/rules.js';
import { StateMachinesPage } from './pages/state-machines.js';
import { WorkflowsPage, WorkflowInstancesPage, ApprovalsPage, InstancePage } from './pages/workflows.js';
import { UsersPage, InvitesPage, PermissionsPage, AcceptInvitePage } from './pages/access.js';
import { WebhooksPage, WebhookLogsPage } from './pages/webhooks.js';
import { FilesPage } from './pages/files.js';
import { UiConfigsPage } from './pages/ui-configs.js';
import { SchemaPage } from './pages/schema.js';
import { EventsPage, StatsPage, TracePage } from './pages/events.js';
import { AccountPage } from './pages/account.js';
import { NotFoundPage } from './pages/not-found.js';

// Pages inside an app, in the order of the app navigation.
export const APP_SECTIONS = [
  { path: 'entities', label: 'Entities' },
  { path: 'index-guidance', label: 'Index guidance' },
  { path: 'relations', label: 'Relations' },
  { path: 'data', label: 'Data' },
  { path: 'rules', label: 'Rules' },
  { path: 'state-machines', label: 'State machines' },
  { path: 'workflows', label: 'Workflows' },
  { path: 'approvals', label: 'Approvals' },
  { path: 'users', label: 'Users' },
  { path: 'invites', label: 'Invites' },
  { path: 'permissions', label: 'Permissions' },
  { path: 'webhooks', label: 'Webhooks' },
  { path: 'files', label: 'Files' },
  { path: 'ui-configs', label: 'UI configs' },
  { path: 'schema', label: 'Export / import' },
  { path: 'events', label: 'Events' },
];

const ROUTES = [
  ['/admin/login', LoginPage, { bare: true }],
  ['/admin', AppsPage],
  ['/admin/apps', AppsPage],
  ['/admin/account', AccountPage],
  ['/admin/apps/:app', AppHome],
  ['/admin/apps/:app/entities', EntitiesPage],
  ['/admin/apps/:app/entities/:name', EntityEditor],
  ['/admin/apps/:app/index-guidance', IndexGuidancePage],
  ['/admin/apps/:app/relations', RelationsPage],
  ['/admin/apps/:app/data', DataPage],
  ['/admin/apps/:app/data/:entity', DataPage],
  ['/admin/apps/:app/data/:entity/:id', RecordPage],
  ['/admin/apps/:app/rules', RulesPage],
  ['/admin/apps/:app/state-machines', StateMachinesPage],
  ['/admin/apps/:app/workflows', WorkflowsPage],
  ['/admin/apps/:app/workflows/:id/instances', WorkflowInstancesPage],
  ['/admin/apps/:app/approvals', ApprovalsPage],
  ['/admin/apps/:app/instances/:id', InstancePage],
  ['/admin/apps/:app/users', UsersPage],
  ['/admin/apps/:app/invites', InvitesPage],
  ['/admin/apps/:app/accept-invite', AcceptInvitePage, { bare: true }],
  ['/admin/apps/:app/permissions', PermissionsPage],
  ['/admin/apps/:app/webhooks', WebhooksPage],
  ['/admin/apps/:app/webhook-logs', WebhookLogsPage],
  ['/admin/apps/:app/files', FilesPage],
  ['/admin/apps/:app/ui-configs', UiConfigsPage],
  ['/admin/apps/:app/schema', SchemaPage],
  ['/admin/apps/:app/events', EventsPage],
  ['/admin/apps/:app/events/stats', StatsPage],
  ['/admin/apps/:app/events/trace/:traceId', TracePage],
];

function resolve(path) {
  for (const [pattern, component, options] of ROUTES) {
    const params = match(pattern, path);
    if (params) return { component, params, options: options || {} };
  }
  return { component: NotFoundPage, params: {}, options: {} };
}

function AppNav({ app, path }) {
  return html`<nav class="app-nav" aria-label=${`App ${app}`}>
    <p class="app-name"><a href=${`/admin/apps/${app}`}>${app}</a></p>
    <ul>
      ${APP_SECTIONS.map((s) => {
        const href = `/admin/apps/${app}/${s.path}`;
        const current = path === href || path.startsWith(`${href}/`);
        return html`<li><a href=${href} aria-current=${current ? 'page' : undefined}>${s.label}</a></li>`;
      })}
    </ul>
  </nav>`;
}

function Header() {
  const platform = session.platform;
  const who = platform ? platform.email : session.appNames().map((n) => `${session.app(n).email} (${n})`).join(', ');
  const logOut = async () => {
    await logOutAll();
    navigate('/admin/login');
  };
  return html`<header class="top">
    <a class="brand" href="/admin">rocketd admin</a>
    <nav aria-label="Main">
      ${platform ? html`<a href="/admin/apps">Apps</a><a href="/admin/account">Account</a>` : null}
    </nav>
    <div class="who">
      <span class="muted">${who}</span>
      <button type="button" onClick=${logOut}>Log out</button>
    </div>
  </header>`;
}

function Shell() {
  const { path } = useLocation();
  const [, setTick] = useState(0);
  useEffect(() => session.subscribe(() => setTick((n) => n + 1)), []);
  const route = resolve(path);
  const signedIn = session.signedIn();
  useEffect(() => {
    if (!route.options.bare && !signedIn) {
      const next = encodeURIComponent(location.pathname + location.search);
      navigate(`/admin/login?next=${next}`, { replace: true });
    }
  }, [signedIn, route.options.bare, path]);
  if (route.options.bare) return html`<main id="main"><${route.component} ...${route.params} /></main>`;
  if (!signedIn) return null;
  const Page = route.component;
  return html`<a class="skip" href="#main">Skip to content</a>
    <${Header} />
    <div class=${route.params.app ? 'layout with-nav' : 'layout'}>
      ${route.params.app ? html`<${AppNav} app=${route.params.app} path=${path} />` : null}
      <main id="main"><${Page} key=${path} ...${route.params} /></main>
    </div>`;
}

const root = document.getElementById('root');
root.textContent = ''; // the boot message
render(html`<${Shell} />`, root);
