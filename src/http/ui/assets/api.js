// The /v1 API, from this origin only. The session cookie (HttpOnly, set by the login) goes along
// with every request and stream; the page never sees the token.

/** An answer that is not a success: its status and RFC 9457 problem. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title || `HTTP ${status}`;
    this.detail = problem.detail || '';
  }
}

let unauthorized = () => {};
/** What to do when an answer says the session is not (or no longer) valid. */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

async function problemOf(response) {
  const type = response.headers.get('content-type') || '';
  try {
    if (type.includes('json')) return await response.json();
    return { title: response.statusText, detail: (await response.text()).slice(0, 500) };
  } catch {
    return { title: response.statusText };
  }
}

/** Sends a request to the API; resolves with its JSON (or text), rejects with an ApiError. */
export async function api(method, path, { json, signal, raw } = {}) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin', signal };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, { title: 'No answer', detail: `the launcher did not answer (${error.message})` });
  }
  if (response.status === 401) unauthorized();
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (raw) return response;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

/** A query string from an object, leaving out empty values; arrays repeat the key. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of [value].flat()) {
      if (v !== undefined && v !== null && v !== '') q.append(key, String(v));
    }
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * One Server-Sent Events stream (`/v1/events` or one Job's), with handlers for its `job`,
 * `queue` and `end` events. When the server cuts it (`end`) or it breaks for good, `resync` runs
 * (say, to list again what may have been missed) and it reconnects, backing off.
 */
export function openStream(url, handlers) {
  let source = null;
  let closed = false;
  let timer = null;
  let delay = 1000;
  const status = (s) => handlers.status && handlers.status(s);
  const again = () => {
    if (closed) return;
    source && source.close();
    status('reconnecting');
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (closed) return;
      try {
        if (handlers.resync) await handlers.resync();
      } catch (error) {
        if (error.status === 401) return; // the login takes over
      }
      connect();
    }, delay);
    delay = Math.min(delay * 2, 30000);
  };
  const connect = () => {
    if (closed) return;
    source = new EventSource(url, { withCredentials: false });
    source.addEventListener('open', () => {
      delay = 1000;
      status('live');
    });
    source.addEventListener('job', (e) => {
      try {
        handlers.job && handlers.job(JSON.parse(e.data));
      } catch (error) {
        console.error('job event', error);
      }
    });
    source.addEventListener('queue', (e) => {
      try {
        handlers.queue && handlers.queue(JSON.parse(e.data));
      } catch (error) {
        console.error('queue event', error);
      }
    });
    source.addEventListener('end', () => again());
    source.addEventListener('error', () => {
      // CONNECTING: the browser retries by itself. CLOSED: it gave up (a 401, a 503): we retry.
      if (source.readyState === EventSource.CLOSED) again();
      else status('reconnecting');
    });
  };
  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      source && source.close();
    },
  };
}
