import { html } from '../lib/html.js';
import { Page } from '../lib/ui.js';

export function NotFoundPage() {
  return html`<${Page} title="Page not found">
    <p>There is no admin page at <code>${location.pathname}</code>. <a href="/admin">Go to the apps</a>.</p>
  <//>`;
}
