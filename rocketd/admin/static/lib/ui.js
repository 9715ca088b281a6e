// Components every page uses: page frame, fields with their errors, error and notice boxes,
// loading data, confirmations, JSON editing.
import { html, useCallback, useEffect, useLayoutEffect, useRef, useState } from './html.js';
import { ApiError } from './api.js';

// A page: its heading takes the focus when the page opens, so keyboard and screen-reader users
// start at the new content after every navigation.
export function Page({ title, actions, children, wide }) {
  const heading = useRef(null);
  useEffect(() => {
    document.title = `${title} · rocketd admin`;
    if (heading.current) heading.current.focus({ preventScroll: true });
  }, [title]);
  return html`<section class=${wide ? 'page wide' : 'page'} aria-labelledby="page-title">
    <div class="page-head">
      <h1 id="page-title" tabindex="-1" ref=${heading}>${title}</h1>
      ${actions ? html`<div class="actions">${actions}</div>` : null}
    </div>
    ${children}
  </section>`;
}

// Loads data for a page; `reload()` fetches again. Errors are kept for an ErrorBox.
export function useLoad(load, deps) {
  const [state, setState] = useState({ loading: true, data: null, error: null });
  const generation = useRef(0);
  const reload = useCallback(() => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, loading: true }));
    Promise.resolve()
      .then(load)
      .then(
        (data) => mine === generation.current && setState({ loading: false, data, error: null }),
        (error) => mine === generation.current && setState({ loading: false, data: null, error }),
      );
  }, deps);
  useEffect(reload, [reload]);
  return { ...state, reload };
}

// `reload` every `ms` while `active` and the tab is visible (a hidden tab asks nothing).
export function usePolling(active, reload, ms) {
  useEffect(() => {
    if (!active) return undefined;
    const timer = setInterval(() => {
      if (!document.hidden) reload();
    }, ms);
    return () => clearInterval(timer);
  }, [active, reload, ms]);
}

export function ErrorBox({ error, title }) {
  if (!error) return null;
  const api = error instanceof ApiError;
  const loose = api ? error.details.filter((d) => !d.field) : [];
  const fielded = api ? error.details.filter((d) => d.field) : [];
  return html`<div class="error-box" role="alert">
    <p><strong>${title || 'Error'}:</strong> ${error.message}${api ? html` <code>${error.code}</code>` : null}</p>
    ${loose.length ? html`<ul>${loose.map((d) => html`<li>${d.message}</li>`)}</ul>` : null}
    ${fielded.length
      ? html`<ul>${fielded.map((d) => html`<li><code>${d.field}</code>: ${d.message}</li>`)}</ul>`
      : null}
    ${api && error.traceId ? html`<p class="muted">Trace ${error.traceId}</p>` : null}
  </div>`;
}

export function Notice({ children, kind }) {
  if (!children || (Array.isArray(children) && !children.length)) return null;
  return html`<div class=${`notice ${kind || ''}`} role="status">${children}</div>`;
}

let fieldIds = 0;
export function useId(prefix) {
  const ref = useRef(null);
  if (ref.current === null) ref.current = `${prefix || 'f'}-${++fieldIds}`;
  return ref.current;
}

// A labelled control with its error messages: `render(id, describedBy, invalid)` gives the input.
export function Field({ label, errors, hint, render, inline }) {
  const id = useId('field');
  const list = (errors || []).filter(Boolean);
  const described = [hint ? `${id}-hint` : '', list.length ? `${id}-err` : ''].filter(Boolean).join(' ');
  return html`<div class=${inline ? 'field inline' : 'field'}>
    <label for=${id}>${label}</label>
    ${render({ id, 'aria-describedby': described || undefined, 'aria-invalid': list.length ? 'true' : undefined })}
    ${hint ? html`<small id=${`${id}-hint`} class="hint">${hint}</small>` : null}
    ${list.length ? html`<small id=${`${id}-err`} class="field-error">${list.join('; ')}</small>` : null}
  </div>`;
}

export function TextField({ label, value, onInput, errors, hint, type, required, autocomplete, placeholder, name, readOnly }) {
  return html`<${Field} label=${label} errors=${errors} hint=${hint}
    render=${(a) => html`<input ...${a} name=${name} type=${type || 'text'} value=${value ?? ''}
      required=${required} autocomplete=${autocomplete} placeholder=${placeholder} readOnly=${readOnly}
      onInput=${(e) => onInput(e.currentTarget.value)} />`} />`;
}

export function SelectField({ label, value, options, onChange, errors, hint, name }) {
  return html`<${Field} label=${label} errors=${errors} hint=${hint}
    render=${(a) => html`<select ...${a} name=${name} value=${value ?? ''} onChange=${(e) => onChange(e.currentTarget.value)}>
      ${options.map((o) => (typeof o === 'string' ? html`<option value=${o}>${o || '—'}</option>` : html`<option value=${o.value}>${o.label}</option>`))}
    </select>`} />`;
}

export function CheckField({ label, checked, onChange, errors, name }) {
  const id = useId('check');
  return html`<div class="field check">
    <input id=${id} name=${name} type="checkbox" checked=${Boolean(checked)} onChange=${(e) => onChange(e.currentTarget.checked)} />
    <label for=${id}>${label}</label>
    ${errors && errors.length ? html`<small class="field-error">${errors.join('; ')}</small>` : null}
  </div>`;
}

// A JSON value edited as text: the parsed value goes up only when the text parses.
export function JsonField({ label, value, onChange, errors, rows, hint }) {
  const [text, setText] = useState(() => JSON.stringify(value ?? null, null, 2));
  const [problem, setProblem] = useState('');
  const last = useRef(value);
  useEffect(() => {
    if (value !== last.current) {
      last.current = value;
      setText(JSON.stringify(value ?? null, null, 2));
    }
  }, [value]);
  const edit = (next) => {
    setText(next);
    try {
      const parsed = JSON.parse(next);
      setProblem('');
      last.current = parsed;
      onChange(parsed);
    } catch (err) {
      setProblem(`Not valid JSON: ${err.message}`);
    }
  };
  return html`<${Field} label=${label} hint=${hint} errors=${[problem, ...(errors || [])]}
    render=${(a) => html`<textarea ...${a} class="code" rows=${rows || 8} spellcheck=${false} value=${text}
      onInput=${(e) => edit(e.currentTarget.value)}></textarea>`} />`;
}

// Deleting something with a name: the button opens a small form where the name must be typed.
export function ConfirmDelete({ name, what, onConfirm, label }) {
  const [open, setOpen] = useState(false);
  const [typed, setTyped] = useState('');
  const [error, setError] = useState(null);
  const input = useRef(null);
  // A layout effect: the focus moves in the same task as the render, before the next key press.
  useLayoutEffect(() => {
    if (open && input.current) input.current.focus();
  }, [open]);
  if (!open) {
    return html`<button type="button" class="danger" onClick=${() => setOpen(true)}>${label || 'Delete'}…</button>`;
  }
  const submit = async (event) => {
    event.preventDefault();
    try {
      await onConfirm();
      setOpen(false);
    } catch (err) {
      setError(err);
    }
  };
  const id = `confirm-${name}`;
  return html`<form class="confirm" onSubmit=${submit}>
    <label for=${id}>Type <strong>${name}</strong> to delete this ${what}</label>
    <input id=${id} ref=${input} value=${typed} autocomplete="off" onInput=${(e) => setTyped(e.currentTarget.value)} />
    <button type="submit" class="danger" disabled=${typed !== name}>Delete ${what}</button>
    <button type="button" onClick=${() => { setOpen(false); setTyped(''); }}>Cancel</button>
    <${ErrorBox} error=${error} />
  </form>`;
}

export function formatTime(value) {
  if (!value) return '';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

export function preview(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

// Copies text to the clipboard, with a fallback for pages where the Clipboard API is refused.
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
