// The queue: caps, active and queued Jobs per template, the queued Jobs in admission order, and
// whether this replica leads admission. Live through one `/v1/events` stream (its queue events).
import { api, query, openStream } from '/ui/assets/api.js';
import { h, fill, facts, age, jobPath, problemBox, throttle } from '/ui/assets/dom.js';

export function queuePage(main) {
  document.title = 'Queue · kube-job-launcher';
  const controller = new AbortController();
  const live = h('span', { class: 'live', id: 'live-status' }, 'connecting…');
  const summary = h('div', { id: 'queue-summary' });
  const perTemplate = h('div', { id: 'queue-templates' });
  const order = h('div', { id: 'queue-order' }, h('p', { class: 'muted' }, 'Loading…'));
  const errorBox = h('div');
  fill(
    main,
    h('div', { class: 'page-head' }, h('h1', null, 'Queue'), live),
    errorBox,
    summary,
    h('section', { 'aria-labelledby': 'h-per-template' }, h('h2', { id: 'h-per-template' }, 'Per template'), perTemplate),
    h('section', { 'aria-labelledby': 'h-order' }, h('h2', { id: 'h-order' }, 'Queued Jobs, in admission order'), order),
  );

  const cap = (n) => (n === null || n === undefined ? 'no cap' : String(n));

  function renderQueue(q) {
    fill(
      summary,
      facts(
        [
          ['Active', `${q.active} (cap: ${cap(q.maxActive)})`],
          ['Queued', `${q.queued} (cap: ${cap(q.maxQueued)})`],
          ['This replica', q.replica || ''],
          [
            'Admission',
            q.leader
              ? h('span', { class: 'badge ok', id: 'leader' }, 'this replica leads')
              : h('span', { class: 'badge', id: 'leader' }, 'another replica leads (or none yet)'),
          ],
        ],
        { class: 'facts wide', id: 'queue-facts' },
      ),
    );
    if (!q.templates.length) {
      fill(perTemplate, h('p', { class: 'muted' }, 'Nothing active or queued.'));
      return;
    }
    const cols = ['Template', 'Active', 'Queued', 'Cap'];
    fill(
      perTemplate,
      h(
        'table',
        { class: 'responsive' },
        h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          null,
          q.templates.map((t) =>
            h(
              'tr',
              { 'data-template': t.template },
              h('td', { 'data-label': 'Template' }, t.template),
              h('td', { 'data-label': 'Active' }, String(t.active)),
              h('td', { 'data-label': 'Queued' }, String(t.queued)),
              h('td', { 'data-label': 'Cap' }, cap(t.maxActive)),
            ),
          ),
        ),
      ),
    );
  }

  async function loadOrder() {
    const list = await api('GET', `/v1/jobs${query({ state: 'queued', limit: 1000 })}`, { signal: controller.signal });
    const queued = list.items
      .filter((v) => v.state === 'queued')
      .sort((a, b) => (a.queuePosition ?? Infinity) - (b.queuePosition ?? Infinity));
    if (!queued.length) {
      fill(order, h('p', { class: 'muted', id: 'queue-empty' }, 'The queue is empty.'));
      return;
    }
    const cols = ['#', 'Job', 'Template', 'Priority', 'Caller', 'Waiting'];
    fill(
      order,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'responsive', id: 'queue-table' },
          h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            null,
            queued.map((v) =>
              h(
                'tr',
                { 'data-job': v.name },
                h('td', { 'data-label': '#' }, v.queuePosition != null ? String(v.queuePosition + 1) : ''),
                h('td', { 'data-label': 'Job' }, h('a', { href: jobPath(v.name) }, v.name)),
                h('td', { 'data-label': 'Template' }, v.template),
                h('td', { 'data-label': 'Priority' }, String(v.priority)),
                h('td', { 'data-label': 'Caller' }, v.requestedBy || ''),
                h('td', { 'data-label': 'Waiting' }, age(v.createdAt)),
              ),
            ),
          ),
        ),
      ),
      list.continue ? h('p', { class: 'muted' }, 'The first 1000 queued Jobs.') : '',
    );
  }

  async function load() {
    try {
      renderQueue(await api('GET', '/v1/queue', { signal: controller.signal }));
      await loadOrder();
      fill(errorBox);
    } catch (error) {
      if (error.name === 'AbortError') return;
      fill(errorBox, problemBox(error));
      throw error;
    }
  }
  const orderSoon = throttle(() => loadOrder().catch(() => {}), 1000);

  // Queue events come whatever the filter; the state filter keeps other Jobs' changes away.
  const stream = openStream('/v1/events?state=queued', {
    queue(q) {
      renderQueue(q);
      orderSoon();
    },
    status(s) {
      fill(live, s === 'live' ? '● live' : 'reconnecting…');
      live.dataset.status = s;
    },
    resync: () => load(),
  });
  load().catch(() => {});

  return () => {
    stream.close();
    controller.abort();
    orderSoon.cancel();
  };
}
