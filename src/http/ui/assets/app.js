// The dashboard: a small router over four pages (Jobs, a Job, Templates with their launch form,
// Queue) and the login. Plain ES modules, no build step, nothing from another origin.
import { api, onUnauthorized } from '/ui/assets/api.js';
import { h, fill } from '/ui/assets/dom.js';
import { jobsPage } from '/ui/assets/jobs.js';
import { jobPage } from '/ui/assets/job.js';
import { templatesPage, templatePage } from '/ui/assets/templates.js';
import { queuePage } from '/ui/assets/queue.js';

const main = document.getElementById('main');
const sessionBox = document.getElementById('session');
const sessionUser = document.getElementById('session-user');
const announcer = document.getElementById('announce');

let session = { auth: 'none' };
let cleanup = null;
let firstRender = true;

const routes = [
  { path: /^\/ui\/?$/, nav: 'jobs', page: jobsPage },
  { path: /^\/ui\/jobs\/?$/, nav: 'jobs', page: jobsPage },
  { path: /^\/ui\/jobs\/([^/]+)\/?$/, nav: 'jobs', page: jobPage },
  { path: /^\/ui\/templates\/?$/, nav: 'templates', page: templatesPage },
  { path: /^\/ui\/templates\/([^/]+)\/?$/, nav: 'templates', page: templatePage },
  { path: /^\/ui\/queue\/?$/, nav: 'queue', page: queuePage },
];

/** Says something to screen readers (and keeps it for a test to read). */
function announce(text) {
  announcer.textContent = '';
  setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

/** Goes to a page of the dashboard without reloading. */
function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

function stopPage() {
  if (cleanup) {
    try {
      cleanup();
    } catch (error) {
      console.error(error);
    }
  }
  cleanup = null;
}

function setNav(current) {
  for (const link of document.querySelectorAll('nav a[data-nav]')) {
    if (link.dataset.nav === current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function render() {
  stopPage();
  if (session.auth !== 'none' && !session.user) {
    showLogin();
    return;
  }
  const path = location.pathname;
  const route = routes.find((r) => r.path.test(path));
  main.replaceChildren();
  if (!route) {
    setNav(null);
    document.title = 'Not found · kube-job-launcher';
    fill(main, h('h1', null, 'No such page'), h('p', null, h('a', { href: '/ui/jobs' }, 'Go to the Jobs')));
    return;
  }
  setNav(route.nav);
  const match = path.match(route.path);
  let param = null;
  if (match[1] !== undefined) {
    try {
      param = decodeURIComponent(match[1]);
    } catch {
      param = match[1];
    }
  }
  const ctx = { navigate, announce, params: new URLSearchParams(location.search) };
  cleanup = route.page(main, param, ctx) || null;
  if (!firstRender) main.focus({ preventScroll: false });
  firstRender = false;
}

function showSession() {
  if (session.auth === 'none') {
    sessionBox.hidden = false;
    fill(sessionUser, 'No auth (loopback only)');
    document.getElementById('logout').hidden = true;
  } else if (session.user) {
    sessionBox.hidden = false;
    fill(sessionUser, 'Signed in as ', h('strong', null, session.user));
    document.getElementById('logout').hidden = false;
  } else {
    sessionBox.hidden = true;
  }
}

function showLogin(message) {
  stopPage();
  setNav(null);
  showSession();
  document.title = 'Log in · kube-job-launcher';
  const input = h('input', {
    id: 'login-token',
    name: 'token',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
    'aria-describedby': 'login-help',
  });
  const error = h('p', { id: 'login-error', class: 'field-error', role: 'alert' });
  if (message) error.textContent = message;
  const button = h('button', { type: 'submit', id: 'login-submit' }, 'Log in');
  const form = h(
    'form',
    { id: 'login-form', class: 'login card', novalidate: true },
    h('h1', null, 'Log in'),
    h(
      'p',
      { id: 'login-help' },
      session.auth === 'kubernetes'
        ? 'This launcher checks Kubernetes tokens: paste a token the cluster accepts (for example from `kubectl create token`).'
        : 'This launcher takes bearer tokens from its token file: paste yours.',
    ),
    h('div', { class: 'field' }, h('label', { for: 'login-token' }, 'Token'), input),
    error,
    h('div', { class: 'actions' }, button),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      error.textContent = 'Enter a token.';
      input.focus();
      return;
    }
    button.disabled = true;
    error.textContent = '';
    try {
      const response = await fetch('/ui/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body: new URLSearchParams({ token }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        error.textContent = body.detail ? `Not logged in: ${body.detail}.` : `Not logged in (HTTP ${response.status}).`;
        input.select();
        return;
      }
      input.value = '';
      session = body;
      showSession();
      announce(`Signed in as ${session.user}`);
      firstRender = true;
      render();
    } catch (e) {
      error.textContent = `The launcher did not answer (${e.message}).`;
    } finally {
      button.disabled = false;
    }
  });
  fill(main, form);
  input.focus();
}

async function logout() {
  try {
    const response = await fetch('/ui/logout', { method: 'POST', credentials: 'same-origin' });
    session = await response.json();
  } catch {
    session = { ...session, user: null };
  }
  announce('Signed out');
  showLogin();
}

onUnauthorized(() => {
  if (session.auth === 'none' || !session.user) return;
  session = { ...session, user: null };
  showLogin('Your session has ended: log in again.');
});

document.addEventListener('click', (event) => {
  const link = event.target.closest && event.target.closest('a[href]');
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui/') || url.pathname.startsWith('/ui/assets/')) {
    return;
  }
  event.preventDefault();
  if (url.pathname + url.search !== location.pathname + location.search) navigate(url.pathname + url.search);
});
window.addEventListener('popstate', render);
document.getElementById('logout').addEventListener('click', logout);

async function start() {
  try {
    session = await api('GET', '/ui/session');
  } catch (error) {
    fill(main, h('h1', null, 'The launcher did not answer'), h('p', null, error.message));
    return;
  }
  showSession();
  render();
}

start();
