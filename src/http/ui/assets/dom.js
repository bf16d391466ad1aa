// Building the page: every string from the API (names, labels, parameters, logs, errors) goes in
// as text, through Text nodes and textContent; never as markup. The page's Content-Security-Policy
// enforces it too (Trusted Types with no policy: no DOM sink takes a string as HTML).

/** An element: `attrs` are attributes (set as values, never parsed), `on*` functions become
 *  listeners, children are nodes or text. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children: nodes as they are, anything else as text. */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
export const STATES = ['queued', 'pending', 'running', 'succeeded', 'failed', 'cancelled'];
export const isTerminal = (state) => TERMINAL.has(state);

/** A Job's state as a badge. */
export function stateBadge(state) {
  return h('span', { class: `state state-${STATES.includes(state) ? state : 'unknown'}` }, state || 'unknown');
}

/** A span of time, short: `45s`, `3m 12s`, `2h 5m`, `4d 1h`. */
export function fmtSpan(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const hours = Math.floor(m / 60);
  if (hours < 24) return `${hours}h ${m % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

export const parseTime = (iso) => (iso ? Date.parse(iso) : NaN);

/** How long ago `iso` was. */
export const age = (iso) => fmtSpan(Date.now() - parseTime(iso));

/** How long a Job ran (or has been running). */
export function duration(view) {
  const start = parseTime(view.startedAt);
  if (!Number.isFinite(start)) return '';
  const end = parseTime(view.finishedAt);
  if (Number.isFinite(end)) return fmtSpan(end - start);
  return isTerminal(view.state) ? '' : fmtSpan(Date.now() - start);
}

/** A time as the reader's local date and time. */
export function fmtTime(iso) {
  const t = parseTime(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleString() : '';
}

/** A `<time>` element for an API timestamp. */
export const timeEl = (iso) => (iso ? h('time', { datetime: iso }, fmtTime(iso)) : '');

/** The exit codes of a Job's pods, in order. */
export const exitCodes = (view) =>
  (view.pods || []).map((p) => p.exitCode).filter((c) => c !== null && c !== undefined).join(', ');

/** A path under /ui/ for a Job or template name. */
export const jobPath = (name) => `/ui/jobs/${encodeURIComponent(name)}`;
export const templatePath = (name) => `/ui/templates/${encodeURIComponent(name)}`;

/** A definition list from [term, value] pairs, leaving out empty values. */
export function facts(pairs, attrs) {
  const dl = h('dl', attrs || { class: 'facts' });
  for (const [term, value] of pairs) {
    if (value === null || value === undefined || value === '') continue;
    dl.append(h('div', null, h('dt', null, term), h('dd', null, value)));
  }
  return dl;
}

/** A table of key/value pairs (labels, annotations), or a note when there are none. */
export function keyValues(map, caption, empty) {
  const entries = Object.entries(map || {});
  if (!entries.length) return h('p', { class: 'muted' }, empty);
  return h(
    'table',
    { class: 'kv' },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Value'))),
    h('tbody', null, entries.map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, v)))),
  );
}

/** A problem (API error) as an alert. */
export function problemBox(error) {
  const title = error.title || 'Error';
  const detail = error.detail || error.message || '';
  return h('div', { class: 'problem', role: 'alert' }, h('strong', null, title), detail ? h('p', null, detail) : null);
}

/** Calls `fn` at most once per `ms`, the last call winning. */
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  const run = () => {
    timer = null;
    last = Date.now();
    fn();
  };
  const call = () => {
    if (timer) return;
    timer = setTimeout(run, Math.max(0, last + ms - Date.now()));
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}
