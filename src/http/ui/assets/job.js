// One Job: its state and facts, pods, a timeline of its state changes, its log (followed live
// only while it is on screen), its labels and annotations, the Kubernetes Events of it and its
// pods, and cancel with a confirmation.
import { api, openStream, ApiError } from '/ui/assets/api.js';
import {
  h, fill, stateBadge, duration, exitCodes, timeEl, fmtTime, parseTime, facts, keyValues, problemBox, isTerminal,
  templatePath, jobPath, throttle,
} from '/ui/assets/dom.js';

/** The log of the Job's newest pod: fetched with follow=true while shown, stopped when not. */
class LogView {
  constructor(name, pre, status) {
    this.name = name;
    this.pre = pre;
    this.status = status;
    this.controller = null;
    this.complete = false; // the whole log of a finished pod was read
    this.shown = false;
    this.finished = false; // the Job has ended
    this.started = false; // a pod has left Pending: there is a log to read
  }

  say(text) {
    fill(this.status, text);
  }

  setShown(shown) {
    this.shown = shown;
    if (shown) this.start();
    else if (this.controller) {
      this.stop();
      this.say('Paused while the log is not on screen.');
    }
  }

  /** The Job changed: a log may exist now, or be complete. */
  jobChanged(view) {
    const wasFinished = this.finished;
    this.finished = isTerminal(view.state);
    this.started = (view.pods || []).some((p) => p.phase && p.phase !== 'Pending');
    // Ended while followed: the stream still delivers the last lines, then ends.
    if (this.controller && this.finished && !wasFinished) this.say('The Job has ended; reading its last lines…');
    if (this.shown && !this.controller && !this.complete) this.start();
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  async start() {
    if (this.controller || this.complete) return;
    if (!this.started) {
      this.say(this.finished ? 'No log: the Job ended before a pod ran.' : 'The log appears once a pod runs.');
      return;
    }
    const controller = new AbortController();
    this.controller = controller;
    const finishedAtStart = this.finished;
    this.say('Loading the log…');
    try {
      const response = await api('GET', `/v1/jobs/${encodeURIComponent(this.name)}/logs?follow=true`, {
        signal: controller.signal,
        raw: true,
      });
      this.pre.replaceChildren();
      this.pre.hidden = false;
      this.say(finishedAtStart ? 'The log:' : 'Following the log live.');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atBottom = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 4;
        this.pre.append(value); // text, never markup
        if (atBottom) this.pre.scrollTop = this.pre.scrollHeight;
      }
      if (!this.pre.textContent) this.pre.append('(empty)');
      this.complete = this.finished || finishedAtStart;
      this.say(this.complete ? 'End of the log.' : 'The log stream ended; it resumes with the next change.');
    } catch (error) {
      if (error.name === 'AbortError') return;
      if (error instanceof ApiError && error.status === 409) this.say('No pod yet: the log appears once the Job has one.');
      else this.say(`No log yet: ${error.detail || error.message}`);
    } finally {
      if (this.controller === controller) this.controller = null;
    }
  }
}

export function jobPage(main, name, ctx) {
  document.title = `${name} · Job · kube-job-launcher`;
  let view = null;
  let stream = null;
  let closed = false;
  const controller = new AbortController();
  const observed = []; // state changes seen while the page is open: { at, state }

  const badge = h('span', { id: 'job-state' });
  const cancelButton = h('button', { type: 'button', id: 'cancel-job', class: 'danger', hidden: true }, 'Cancel Job…');
  const summary = h('div', { id: 'job-summary' });
  const message = h('div', { id: 'job-message' });
  const pods = h('div', { id: 'job-pods' });
  const timeline = h('ol', { id: 'job-timeline', class: 'timeline' });
  const logStatus = h('p', { id: 'log-status', class: 'muted', role: 'status' });
  const logPre = h('pre', { id: 'job-log', class: 'log', tabindex: '0', 'aria-label': `Log of ${name}`, hidden: true });
  const labels = h('div', { id: 'job-labels' });
  const annotations = h('div', { id: 'job-annotations' }, h('p', { class: 'muted' }, 'Loading…'));
  const events = h('div', { id: 'job-events' }, h('p', { class: 'muted' }, 'Loading…'));
  const refreshEvents = h('button', { type: 'button', class: 'quiet', id: 'refresh-events' }, 'Refresh');
  const log = new LogView(name, logPre, logStatus);
  const logSection = h('section', { 'aria-labelledby': 'h-log', id: 'log-section' }, h('h2', { id: 'h-log' }, 'Log'), logStatus, logPre);

  fill(
    main,
    h('p', { class: 'crumbs' }, h('a', { href: '/ui/jobs' }, 'Jobs'), ' / '),
    h('div', { class: 'page-head' }, h('h1', { class: 'job-name' }, name), badge, cancelButton),
    message,
    summary,
    logSection,
    h('section', { 'aria-labelledby': 'h-pods' }, h('h2', { id: 'h-pods' }, 'Pods'), pods),
    h('section', { 'aria-labelledby': 'h-timeline' }, h('h2', { id: 'h-timeline' }, 'Timeline'), timeline),
    h(
      'section',
      { 'aria-labelledby': 'h-events' },
      h('div', { class: 'section-head' }, h('h2', { id: 'h-events' }, 'Kubernetes Events'), refreshEvents),
      events,
    ),
    h('section', { 'aria-labelledby': 'h-labels' }, h('h2', { id: 'h-labels' }, 'Labels'), labels),
    h('section', { 'aria-labelledby': 'h-annotations' }, h('h2', { id: 'h-annotations' }, 'Annotations'), annotations),
  );

  function renderTimeline() {
    const entries = [];
    if (view.createdAt) entries.push({ at: parseTime(view.createdAt), iso: view.createdAt, text: 'Created' });
    if (view.startedAt) entries.push({ at: parseTime(view.startedAt), iso: view.startedAt, text: 'Started (admitted)' });
    if (view.finishedAt) entries.push({ at: parseTime(view.finishedAt), iso: view.finishedAt, text: `Finished: ${view.state}` });
    for (const o of observed) {
      entries.push({ at: o.at, iso: new Date(o.at).toISOString(), text: o.first ? `Seen ${o.state}` : `Became ${o.state}`, seen: true });
    }
    entries.sort((a, b) => a.at - b.at);
    fill(
      timeline,
      entries.map((e) =>
        h('li', { class: e.seen ? 'seen' : '' }, h('time', { datetime: e.iso }, fmtTime(e.iso)), ' ', e.text),
      ),
    );
  }

  function renderPods() {
    if (!(view.pods || []).length) {
      fill(pods, h('p', { class: 'muted' }, view.state === 'queued' ? 'Queued: no pod until it is admitted.' : 'No pods.'));
      return;
    }
    const cols = ['Pod', 'Node', 'Phase', 'Exit code', 'Reason', 'Termination message'];
    fill(
      pods,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'responsive' },
          h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            null,
            view.pods.map((p) =>
              h(
                'tr',
                null,
                h('td', { 'data-label': 'Pod' }, p.name),
                h('td', { 'data-label': 'Node' }, p.node || ''),
                h('td', { 'data-label': 'Phase' }, p.phase || ''),
                h('td', { 'data-label': 'Exit code' }, p.exitCode ?? ''),
                h('td', { 'data-label': 'Reason' }, p.reason || ''),
                h('td', { 'data-label': 'Termination message' }, p.terminationMessage ? h('span', { class: 'pre' }, p.terminationMessage) : ''),
              ),
            ),
          ),
        ),
      ),
    );
  }

  function renderView() {
    fill(badge, stateBadge(view.state));
    badge.dataset.state = view.state;
    cancelButton.hidden = isTerminal(view.state);
    const position = view.state === 'queued' && view.queuePosition !== undefined && view.queuePosition !== null
      ? `#${view.queuePosition + 1} (${view.queuePosition} ahead)` : '';
    fill(
      summary,
      facts([
        ['Template', h('a', { href: templatePath(view.template) }, view.template)],
        ['Queue position', position],
        ['Source', view.source],
        ['Requested by', view.requestedBy || ''],
        ['Priority', String(view.priority ?? 0)],
        ['Idempotency key', view.idempotencyKey || ''],
        ['Created', timeEl(view.createdAt)],
        ['Started', timeEl(view.startedAt)],
        ['Finished', timeEl(view.finishedAt)],
        ['Duration', duration(view)],
        ['Exit codes', exitCodes(view)],
        ['Result', view.result ? h('span', { class: 'pre', id: 'job-result' }, view.result) : ''],
        ['Namespace', view.namespace],
      ]),
    );
    fill(message, view.message ? h('p', { class: view.state === 'failed' ? 'problem' : 'note' }, view.message) : '');
    fill(labels, keyValues(view.labels, 'Labels', 'No labels.'));
    renderPods();
    renderTimeline();
    log.jobChanged(view);
  }

  async function loadKubeEvents() {
    try {
      const answer = await api('GET', `/v1/jobs/${encodeURIComponent(name)}/k8s-events`, { signal: controller.signal });
      fill(annotations, keyValues(answer.annotations, 'Annotations', 'No annotations.'));
      if (!answer.events.length) {
        fill(events, h('p', { class: 'muted' }, 'No Events (Kubernetes keeps them for an hour).'));
        return;
      }
      const cols = ['Last seen', 'Object', 'Type', 'Reason', 'Message', 'Count', 'From'];
      fill(
        events,
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'responsive events' },
            h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, c)))),
            h(
              'tbody',
              null,
              answer.events.map((e) =>
                h(
                  'tr',
                  { class: e.type === 'Warning' ? 'warning' : '' },
                  h('td', { 'data-label': 'Last seen' }, timeEl(e.lastSeen)),
                  h('td', { 'data-label': 'Object' }, `${e.kind}/${e.object}`),
                  h('td', { 'data-label': 'Type' }, e.type || ''),
                  h('td', { 'data-label': 'Reason' }, e.reason || ''),
                  h('td', { 'data-label': 'Message' }, e.message || ''),
                  h('td', { 'data-label': 'Count' }, String(e.count)),
                  h('td', { 'data-label': 'From' }, e.source || ''),
                ),
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      if (error.name === 'AbortError') return;
      const gone = error.status === 404;
      fill(events, gone ? h('p', { class: 'muted' }, 'The Job is gone from Kubernetes: no Events to show.') : problemBox(error));
      if (gone) fill(annotations, h('p', { class: 'muted' }, 'The Job is gone from Kubernetes.'));
    }
  }
  const kubeEventsSoon = throttle(loadKubeEvents, 2000);
  refreshEvents.addEventListener('click', loadKubeEvents);

  function update(next) {
    const changed = !view || view.state !== next.state;
    if (view && next.queuePosition === undefined && next.state === 'queued') next.queuePosition = view.queuePosition;
    if (changed) observed.push({ at: Date.now(), state: next.state, first: !view });
    if (view && changed) ctx.announce(`Job ${name} is ${next.state}`);
    view = next;
    renderView();
    if (changed) kubeEventsSoon();
    if (isTerminal(view.state) && stream) {
      // A stream of one Job ends with its final state; the browser would reconnect otherwise.
      stream.close();
      stream = null;
    }
  }

  // Cancel, after a confirmation in a modal dialog (keyboard: Escape keeps the Job).
  const keep = h('button', { type: 'button', class: 'quiet', autofocus: true }, 'Keep it');
  const confirmCancel = h('button', { type: 'button', class: 'danger', id: 'confirm-cancel' }, 'Cancel the Job');
  const dialogError = h('div');
  const dialog = h(
    'dialog',
    { id: 'cancel-dialog', 'aria-labelledby': 'cancel-title' },
    h('h2', { id: 'cancel-title' }, 'Cancel this Job?'),
    h('p', null, 'The Job ', h('strong', null, name), ' and its pods are deleted; a queued Job leaves the queue. This cannot be undone.'),
    dialogError,
    h('div', { class: 'actions' }, keep, confirmCancel),
  );
  main.append(dialog);
  keep.addEventListener('click', () => dialog.close());
  cancelButton.addEventListener('click', () => {
    fill(dialogError);
    dialog.showModal();
    keep.focus();
  });
  confirmCancel.addEventListener('click', async () => {
    confirmCancel.disabled = true;
    try {
      const last = await api('DELETE', `/v1/jobs/${encodeURIComponent(name)}`, { signal: controller.signal });
      dialog.close();
      ctx.announce(`Cancelling ${name}`);
      cancelButton.hidden = true;
      // The stream brings the cancelled state; without one (it ended), show it now.
      if (!stream) update({ ...last, state: 'cancelled' });
    } catch (error) {
      if (error.name !== 'AbortError') fill(dialogError, problemBox(error));
    } finally {
      confirmCancel.disabled = false;
    }
  });

  // The log follows only while it is on screen and the tab is visible.
  let onScreen = false;
  const visibility = () => log.setShown(onScreen && document.visibilityState === 'visible');
  const observer = new IntersectionObserver((entries) => {
    onScreen = entries.some((e) => e.isIntersecting);
    visibility();
  });
  observer.observe(logSection);
  document.addEventListener('visibilitychange', visibility);

  (async () => {
    try {
      update(await api('GET', `/v1/jobs/${encodeURIComponent(name)}`, { signal: controller.signal }));
    } catch (error) {
      if (error.name === 'AbortError') return;
      fill(
        main,
        h('p', { class: 'crumbs' }, h('a', { href: '/ui/jobs' }, 'Jobs'), ' / '),
        h('h1', { class: 'job-name' }, name),
        problemBox(error),
        error.status === 404 ? h('p', null, 'A cancelled Job, or one cleaned up after its TTL, is gone. ', h('a', { href: jobPath(name) }, 'Look again')) : '',
      );
      return;
    }
    loadKubeEvents();
    if (closed || isTerminal(view.state)) return;
    stream = openStream(`/v1/jobs/${encodeURIComponent(name)}/events`, {
      job: (next) => {
        if (next.name === name) update(next);
      },
      resync: async () => update(await api('GET', `/v1/jobs/${encodeURIComponent(name)}`, { signal: controller.signal })),
    });
  })();

  return () => {
    closed = true;
    if (stream) stream.close();
    controller.abort();
    log.stop();
    observer.disconnect();
    document.removeEventListener('visibilitychange', visibility);
    kubeEventsSoon.cancel();
    if (dialog.open) dialog.close();
  };
}
