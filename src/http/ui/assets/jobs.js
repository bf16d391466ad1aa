// The Jobs page: the launcher's Jobs, newest first, a page at a time from the server, kept live
// by one `/v1/events` stream with the page's filter.
import { api, query, openStream } from '/ui/assets/api.js';
import {
  h, fill, stateBadge, age, duration, exitCodes, jobPath, STATES, problemBox, throttle, isTerminal,
} from '/ui/assets/dom.js';

const PAGE_SIZE = 50;

/** The filter in the page's address: template, state, label (k=v, commas), requestedBy. */
function filterOf(params) {
  return {
    template: params.get('template') || '',
    state: params.get('state') || '',
    label: params.get('label') || '',
    requestedBy: params.get('requestedBy') || '',
  };
}

const COLUMNS = ['Name', 'Template', 'State', 'Queue', 'Caller', 'Age', 'Duration', 'Exit codes', 'Result'];

export function jobsPage(main, _param, ctx) {
  document.title = 'Jobs · kube-job-launcher';
  const filter = filterOf(ctx.params);
  const rows = new Map(); // name -> { view, tr, cells }
  let tokens = ['']; // the `continue` token of each page shown so far
  let page = 0;
  let next = null;
  let loaded = false;
  let buffered = [];
  let newer = 0;
  let controller = new AbortController();

  // Filters.
  const templateSelect = h('select', { id: 'filter-template', name: 'template' }, h('option', { value: '' }, 'any'));
  if (filter.template) templateSelect.append(h('option', { value: filter.template, selected: true }, filter.template));
  const stateSelect = h(
    'select',
    { id: 'filter-state', name: 'state' },
    h('option', { value: '' }, 'any'),
    STATES.map((s) => h('option', { value: s, selected: s === filter.state }, s)),
  );
  const labelInput = h('input', {
    id: 'filter-label', name: 'label', value: filter.label, placeholder: 'key=value, …', 'aria-describedby': 'filter-label-help',
  });
  const callerInput = h('input', { id: 'filter-caller', name: 'requestedBy', value: filter.requestedBy });
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter the Jobs' },
    h('div', { class: 'field' }, h('label', { for: 'filter-template' }, 'Template'), templateSelect),
    h('div', { class: 'field' }, h('label', { for: 'filter-state' }, 'State'), stateSelect),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'filter-label' }, 'Label'),
      labelInput,
    ),
    h('span', { id: 'filter-label-help', class: 'visually-hidden' }, 'key=value; separate several with commas'),
    h('div', { class: 'field' }, h('label', { for: 'filter-caller' }, 'Caller'), callerInput),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'submit' }, 'Apply'),
      h('button', { type: 'button', class: 'quiet', onclick: () => ctx.navigate('/ui/jobs') }, 'Clear'),
    ),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const q = query({
      template: templateSelect.value,
      state: stateSelect.value,
      label: labelInput.value.trim(),
      requestedBy: callerInput.value.trim(),
    });
    ctx.navigate(`/ui/jobs${q}`);
  });
  api('GET', '/v1/templates', { signal: controller.signal })
    .then((templates) => {
      for (const t of templates) {
        if (t.name !== filter.template) templateSelect.append(h('option', { value: t.name }, t.name));
      }
    })
    .catch(() => {});

  // The table.
  const tbody = h('tbody', { id: 'jobs-body' });
  const table = h(
    'table',
    { class: 'jobs responsive', id: 'jobs-table' },
    h('caption', { class: 'visually-hidden' }, 'Jobs, newest first'),
    h('thead', null, h('tr', null, COLUMNS.map((c) => h('th', { scope: 'col' }, c)))),
    tbody,
  );
  const empty = h('p', { class: 'muted', id: 'jobs-empty', hidden: true }, 'No Jobs match.');
  const errorBox = h('div', { id: 'jobs-error' });
  const live = h('span', { class: 'live', id: 'live-status' }, 'connecting…');
  const newerNote = h('button', { type: 'button', class: 'link', hidden: true, onclick: () => show(0) });
  const prev = h('button', { type: 'button', id: 'page-newer', class: 'quiet', onclick: () => show(page - 1) }, '← Newer');
  const nextButton = h('button', { type: 'button', id: 'page-older', class: 'quiet', onclick: () => show(page + 1) }, 'Older →');
  const pageLabel = h('span', { class: 'muted' });

  fill(
    main,
    h('div', { class: 'page-head' }, h('h1', null, 'Jobs'), live),
    form,
    errorBox,
    newerNote,
    h('div', { class: 'table-wrap' }, table),
    empty,
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, pageLabel, nextButton),
  );

  /** Whether a Job belongs on this page's list (the stream already filters template and labels). */
  const matches = (view) =>
    (!filter.state || view.state === filter.state) &&
    (!filter.requestedBy || view.requestedBy === filter.requestedBy) &&
    (!filter.template || view.template === filter.template);

  function cell(label, ...content) {
    return h('td', { 'data-label': label }, ...content);
  }

  function renderRow(entry) {
    const v = entry.view;
    const cells = {
      state: cell('State', stateBadge(v.state)),
      queue: cell('Queue', v.state === 'queued' && v.queuePosition !== undefined && v.queuePosition !== null ? `#${v.queuePosition + 1}` : ''),
      age: cell('Age', age(v.createdAt)),
      duration: cell('Duration', duration(v)),
    };
    const result = v.result || (v.message && v.state === 'failed' ? v.message : '');
    const tr = h(
      'tr',
      { 'data-job': v.name, 'data-state': v.state },
      cell('Name', h('a', { href: jobPath(v.name) }, v.name)),
      cell('Template', v.template),
      cells.state,
      cells.queue,
      cell('Caller', v.requestedBy || ''),
      cells.age,
      cells.duration,
      cell('Exit codes', exitCodes(v)),
      cell('Result', result ? h('span', { class: 'result', title: result }, result) : ''),
    );
    if (entry.tr) entry.tr.replaceWith(tr);
    entry.tr = tr;
    entry.cells = cells;
    return tr;
  }

  function upsert(view, { insert }) {
    const known = rows.get(view.name);
    if (known) {
      if (!matches(view)) {
        known.tr.remove();
        rows.delete(view.name);
      } else {
        // A stream view carries no queue position: keep the one known until the next refresh.
        if (view.queuePosition === undefined && view.state === 'queued') view.queuePosition = known.view.queuePosition;
        known.view = view;
        renderRow(known);
      }
    } else if (matches(view)) {
      if (!insert) {
        newer += 1;
        newerNote.hidden = false;
        fill(newerNote, `${newer} newer Job${newer === 1 ? '' : 's'}: show the newest`);
        return;
      }
      const entry = { view };
      rows.set(view.name, entry);
      const tr = renderRow(entry);
      // Newest first: before the first row created earlier.
      const created = Date.parse(view.createdAt || '') || Date.now();
      const before = [...tbody.children].find((other) => {
        const e = rows.get(other.dataset.job);
        return e && e !== entry && (Date.parse(e.view.createdAt || '') || 0) <= created;
      });
      if (before) tbody.insertBefore(tr, before);
      else tbody.append(tr);
    }
    empty.hidden = rows.size > 0;
  }

  async function load() {
    const q = query({
      template: filter.template,
      state: filter.state,
      label: filter.label,
      requestedBy: filter.requestedBy,
      limit: PAGE_SIZE,
      continue: tokens[page],
    });
    try {
      const list = await api('GET', `/v1/jobs${q}`, { signal: controller.signal });
      fill(errorBox);
      rows.clear();
      tbody.replaceChildren();
      for (const view of list.items) {
        const entry = { view };
        rows.set(view.name, entry);
        tbody.append(renderRow(entry));
      }
      next = list.continue || null;
      tokens = tokens.slice(0, page + 1);
      if (next) tokens[page + 1] = next;
      prev.disabled = page === 0;
      nextButton.disabled = !next;
      fill(pageLabel, `Page ${page + 1}`);
      empty.hidden = rows.size > 0;
      loaded = true;
      const pending = buffered;
      buffered = [];
      for (const view of pending) upsert(view, { insert: page === 0 });
    } catch (error) {
      if (error.name === 'AbortError') return;
      fill(errorBox, problemBox(error));
      throw error;
    }
  }

  function show(n) {
    page = Math.max(0, n);
    if (page === 0) {
      newer = 0;
      newerNote.hidden = true;
    }
    loaded = false;
    load().catch(() => {});
  }

  // Queue positions move as Jobs ahead are admitted: one list of the queued Jobs refreshes them.
  const refreshPositions = throttle(async () => {
    if (![...rows.values()].some((e) => e.view.state === 'queued')) return;
    try {
      const queued = await api('GET', `/v1/jobs${query({ state: 'queued', template: filter.template, limit: 1000 })}`, {
        signal: controller.signal,
      });
      const positions = new Map(queued.items.map((v) => [v.name, v.queuePosition]));
      for (const entry of rows.values()) {
        if (entry.view.state === 'queued' && positions.has(entry.view.name)) {
          entry.view.queuePosition = positions.get(entry.view.name);
          fill(entry.cells.queue, `#${entry.view.queuePosition + 1}`);
        }
      }
    } catch {
      // The next queue event tries again.
    }
  }, 1000);

  // One stream for the page. State and caller are filtered here, so that a Job leaving the
  // filtered state leaves the list too (the stream's own state filter passes only changes into it).
  const stream = openStream(`/v1/events${query({ template: filter.template, label: filter.label })}`, {
    job(view) {
      if (!loaded) buffered.push(view);
      else upsert(view, { insert: page === 0 });
    },
    queue() {
      refreshPositions();
    },
    status(s) {
      fill(live, s === 'live' ? '● live' : 'reconnecting…');
      live.dataset.status = s;
    },
    // After a cut, what happened meanwhile is in the list.
    resync: () => load(),
  });

  // Ages and durations move on.
  const ticker = setInterval(() => {
    for (const entry of rows.values()) {
      fill(entry.cells.age, age(entry.view.createdAt));
      if (!isTerminal(entry.view.state)) fill(entry.cells.duration, duration(entry.view));
    }
  }, 1000);

  show(0);

  return () => {
    stream.close();
    controller.abort();
    controller = null;
    clearInterval(ticker);
    refreshPositions.cancel();
  };
}
