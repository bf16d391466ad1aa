// Templates: each one's validity, error, source, parameters and warnings; and, for one template,
// a launch form generated from its declared parameters, with a preview of the manifest.
import { api, ApiError } from '/ui/assets/api.js';
import { h, fill, facts, problemBox, templatePath, jobPath } from '/ui/assets/dom.js';

function validity(t) {
  return h(
    'span',
    { class: `badge ${t.status === 'valid' ? 'ok' : 'bad'}` },
    t.status === 'valid' ? 'valid' : 'invalid',
  );
}

function parametersTable(parameters) {
  if (!parameters.length) return h('p', { class: 'muted' }, 'No parameters.');
  const cols = ['Parameter', 'Required', 'Default', 'Pattern', 'Description'];
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'responsive params' },
      h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h(
        'tbody',
        null,
        parameters.map((p) =>
          h(
            'tr',
            null,
            h('td', { 'data-label': 'Parameter' }, h('code', null, p.name)),
            h('td', { 'data-label': 'Required' }, p.required ? 'yes' : 'no'),
            h('td', { 'data-label': 'Default' }, p.default ?? ''),
            h('td', { 'data-label': 'Pattern' }, p.pattern ? h('code', null, p.pattern) : ''),
            h('td', { 'data-label': 'Description', class: 'description' }, p.description || ''),
          ),
        ),
      ),
    ),
  );
}

function templateDetails(t) {
  const parts = [
    facts([
      ['Source', `ConfigMap ${t.source.configMap}, key ${t.source.key}`],
      ['Serving', t.serving ? 'yes' : 'no: launches of it are refused'],
      ['Env containers', (t.envContainers || []).join(', ')],
      ['Allowed env', t.allowedEnv ? h('code', null, t.allowedEnv) : ''],
      ['Settable env', (t.settableEnv || []).join(', ')],
      ['Max active', t.maxActive ?? ''],
    ]),
  ];
  if (t.error) {
    parts.push(
      h(
        'div',
        { class: 'problem template-error', role: 'note' },
        h('strong', null, t.serving ? 'The latest version is invalid (the last valid one still serves):' : 'Invalid:'),
        h('pre', null, t.error),
      ),
    );
  }
  if ((t.warnings || []).length) {
    parts.push(h('div', { class: 'warnings' }, h('strong', null, 'Warnings'), h('ul', null, t.warnings.map((w) => h('li', null, w)))));
  }
  parts.push(h('h3', null, 'Parameters'), parametersTable(t.parameters || []));
  return parts;
}

export function templatesPage(main) {
  document.title = 'Templates · kube-job-launcher';
  const controller = new AbortController();
  const list = h('div', { id: 'templates-list' }, h('p', { class: 'muted' }, 'Loading…'));
  fill(main, h('div', { class: 'page-head' }, h('h1', null, 'Templates')), list);
  api('GET', '/v1/templates', { signal: controller.signal })
    .then((templates) => {
      if (!templates.length) {
        fill(list, h('p', { class: 'muted' }, 'No templates: add a Job manifest to a template ConfigMap.'));
        return;
      }
      fill(
        list,
        templates.map((t) =>
          h(
            'article',
            { class: 'card template', 'data-template': t.name, 'aria-labelledby': `t-${t.name}` },
            h(
              'div',
              { class: 'section-head' },
              h('h2', { id: `t-${t.name}` }, t.name),
              validity(t),
              t.serving ? h('a', { class: 'button', href: templatePath(t.name) }, 'Launch…') : '',
            ),
            templateDetails(t),
          ),
        ),
      );
    })
    .catch((error) => {
      if (error.name !== 'AbortError') fill(list, problemBox(error));
    });
  return () => controller.abort();
}

/** A regular expression for a parameter's pattern, anchored as the server anchors it; null when
 *  the browser's dialect cannot read it (the server still checks). */
function patternRegExp(pattern) {
  if (!pattern) return null;
  try {
    return new RegExp(`^(?:${pattern})$`, 'u');
  } catch {
    return null;
  }
}

export function templatePage(main, name, ctx) {
  document.title = `${name} · Template · kube-job-launcher`;
  const controller = new AbortController();
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  fill(
    main,
    h('p', { class: 'crumbs' }, h('a', { href: '/ui/templates' }, 'Templates'), ' / '),
    h('div', { class: 'page-head' }, h('h1', null, name)),
    body,
  );
  api('GET', `/v1/templates/${encodeURIComponent(name)}`, { signal: controller.signal })
    .then((t) => fill(body, h('div', { class: 'card' }, validity(t), templateDetails(t)), launchForm(t, ctx, controller)))
    .catch((error) => {
      if (error.name !== 'AbortError') fill(body, problemBox(error));
    });
  return () => controller.abort();
}

function launchForm(t, ctx, controller) {
  if (!t.serving) return h('p', { class: 'problem' }, 'This template is not served: it cannot launch until a valid version exists.');
  const checks = []; // () => error text or ''
  const fields = [];

  // One input per declared parameter.
  const paramInputs = (t.parameters || []).map((p, i) => {
    const id = `param-${i}`;
    const input = h('input', {
      id,
      name: p.name,
      'data-param': p.name,
      required: p.required,
      'aria-required': p.required ? 'true' : null,
      placeholder: p.default != null ? `default: ${p.default}` : null,
      'aria-describedby': `${id}-hint ${id}-error`,
      autocomplete: 'off',
    });
    const error = h('span', { id: `${id}-error`, class: 'field-error', 'aria-live': 'polite' });
    const re = patternRegExp(p.pattern);
    const check = () => {
      const value = input.value;
      let message = '';
      if (!value && p.required) message = `${p.name} is required.`;
      else if (value && re && !re.test(value)) message = `${p.name} must match ${p.pattern}.`;
      input.setCustomValidity(message);
      input.setAttribute('aria-invalid', message ? 'true' : 'false');
      error.textContent = message;
      return message;
    };
    input.addEventListener('input', check);
    checks.push(check);
    fields.push(input);
    const hint = [];
    if (p.description) hint.push(h('span', { class: 'description' }, p.description));
    if (p.default != null) hint.push(h('span', null, `Default: ${p.default}.`));
    if (p.pattern) hint.push(h('span', null, 'Pattern: ', h('code', null, p.pattern)));
    return {
      p,
      input,
      el: h(
        'div',
        { class: 'field' },
        h('label', { for: id }, p.name, p.required ? h('span', { class: 'required' }, ' (required)') : ''),
        input,
        h('span', { id: `${id}-hint`, class: 'hint' }, hint),
        error,
      ),
    };
  });

  // Env: the names the template lets a request set (those its containers declare, as far as
  // its allowed-env pattern admits them; the server has the last word).
  const allowed = patternRegExp(t.allowedEnv);
  const settable = (t.settableEnv || []).filter((n) => !allowed || allowed.test(n));
  const envInputs = settable.map((envName, i) => {
    const id = `env-${i}`;
    const input = h('input', { id, 'data-env': envName, autocomplete: 'off', placeholder: 'unchanged' });
    return { name: () => envName, input, el: h('div', { class: 'field' }, h('label', { for: id }, h('code', null, envName)), input) };
  });
  const extraEnv = h('div', { class: 'extra-env' });
  let extraCount = 0;
  const addEnvRow = () => {
    const i = extraCount++;
    const nameInput = h('input', { id: `env-name-${i}`, autocomplete: 'off', 'aria-describedby': `env-error-${i}` });
    const valueInput = h('input', { id: `env-value-${i}`, autocomplete: 'off' });
    const error = h('span', { id: `env-error-${i}`, class: 'field-error', 'aria-live': 'polite' });
    const check = () => {
      const n = nameInput.value.trim();
      const message = n && allowed && !allowed.test(n) ? `${n} is not allowed: names must match ${t.allowedEnv}.` : '';
      nameInput.setCustomValidity(message);
      error.textContent = message;
      return message;
    };
    nameInput.addEventListener('input', check);
    checks.push(check);
    fields.push(nameInput);
    envInputs.push({ name: () => nameInput.value.trim(), input: valueInput });
    const row = h(
      'div',
      { class: 'env-row' },
      h('div', { class: 'field' }, h('label', { for: `env-name-${i}` }, 'Variable'), nameInput),
      h('div', { class: 'field' }, h('label', { for: `env-value-${i}` }, 'Value'), valueInput),
      error,
    );
    extraEnv.append(row);
    nameInput.focus();
  };

  const labelsInput = h('textarea', { id: 'launch-labels', rows: '2', 'aria-describedby': 'launch-labels-hint' });
  const priorityInput = h('input', { id: 'launch-priority', type: 'number', step: '1', value: '0', inputmode: 'numeric' });
  const keyInput = h('input', { id: 'launch-key', autocomplete: 'off', 'aria-describedby': 'launch-key-hint' });
  const labelsError = h('span', { class: 'field-error', 'aria-live': 'polite' });
  checks.push(() => {
    const bad = labelsInput.value.split(/[\n,]/).map((l) => l.trim()).filter((l) => l && !l.includes('='));
    const message = bad.length ? `Labels are key=value: ${bad[0]}` : '';
    labelsInput.setCustomValidity(message);
    labelsError.textContent = message;
    return message;
  });

  const problem = h('div', { id: 'launch-problem' });
  const preview = h('pre', { id: 'manifest-preview', class: 'manifest', hidden: true, tabindex: '0', 'aria-label': 'Manifest preview' });
  const previewButton = h('button', { type: 'button', class: 'quiet', id: 'preview' }, 'Preview manifest');
  const launchButton = h('button', { type: 'submit', id: 'launch' }, 'Launch');

  const request = () => {
    const params = {};
    for (const { p, input } of paramInputs) if (input.value !== '') params[p.name] = input.value;
    const env = {};
    for (const e of envInputs) if (e.name() && e.input.value !== '') env[e.name()] = e.input.value;
    const labels = {};
    for (const line of labelsInput.value.split(/[\n,]/)) {
      const [k, ...rest] = line.split('=');
      if (k.trim() && rest.length) labels[k.trim()] = rest.join('=').trim();
    }
    const body = { params, env, labels, priority: Number.parseInt(priorityInput.value || '0', 10) || 0 };
    if (keyInput.value.trim()) body.idempotencyKey = keyInput.value.trim();
    return body;
  };

  /** Checks every field; focuses the first that fails. */
  const valid = () => {
    const failures = checks.map((c) => c()).filter(Boolean);
    if (failures.length) {
      const first = fields.find((f) => !f.checkValidity()) || labelsInput;
      first.focus();
      fill(problem, h('div', { class: 'problem', role: 'alert' }, h('strong', null, 'Check the form: '), failures.join(' ')));
      return false;
    }
    fill(problem);
    return true;
  };

  /** A server's refusal, shown next to the form (the server checks the same rules, and more). */
  const refused = (error) => {
    if (error.name === 'AbortError') return;
    fill(problem, problemBox(error instanceof ApiError ? error : { title: 'Error', detail: error.message }));
  };

  previewButton.addEventListener('click', async () => {
    if (!valid()) return;
    previewButton.disabled = true;
    try {
      const manifest = await api('POST', `/v1/templates/${encodeURIComponent(t.name)}/render`, {
        json: request(),
        signal: controller.signal,
      });
      preview.hidden = false;
      preview.textContent = JSON.stringify(manifest, null, 2);
      fill(problem);
    } catch (error) {
      refused(error);
    } finally {
      previewButton.disabled = false;
    }
  });

  const form = h(
    'form',
    { id: 'launch-form', class: 'card launch', novalidate: true, 'aria-labelledby': 'launch-title' },
    h('h2', { id: 'launch-title' }, `Launch ${t.name}`),
    paramInputs.length ? h('fieldset', null, h('legend', null, 'Parameters'), paramInputs.map((f) => f.el)) : '',
    envInputs.length || t.allowedEnv
      ? h(
          'fieldset',
          null,
          h('legend', null, 'Environment'),
          envInputs.map((f) => f.el),
          t.allowedEnv
            ? [
                h('p', { class: 'hint' }, 'Other variables whose names match ', h('code', null, t.allowedEnv), '.'),
                extraEnv,
                h('button', { type: 'button', class: 'quiet', onclick: addEnvRow }, 'Add a variable'),
              ]
            : '',
        )
      : '',
    h(
      'fieldset',
      null,
      h('legend', null, 'Options'),
      h('div', { class: 'field' }, h('label', { for: 'launch-priority' }, 'Priority'), priorityInput, h('span', { class: 'hint' }, 'Higher is admitted first.')),
      h(
        'div',
        { class: 'field' },
        h('label', { for: 'launch-key' }, 'Idempotency key'),
        keyInput,
        h('span', { id: 'launch-key-hint', class: 'hint' }, 'The same key launches once: a retry finds the first Job.'),
      ),
      h(
        'div',
        { class: 'field' },
        h('label', { for: 'launch-labels' }, 'Labels'),
        labelsInput,
        h('span', { id: 'launch-labels-hint', class: 'hint' }, 'key=value, one per line'),
        labelsError,
      ),
    ),
    problem,
    h('div', { class: 'actions' }, previewButton, launchButton),
    preview,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!valid()) return;
    launchButton.disabled = true;
    try {
      const job = await api('POST', '/v1/jobs', { json: { template: t.name, ...request() }, signal: controller.signal });
      ctx.announce(`Launched ${job.name}`);
      ctx.navigate(jobPath(job.name));
    } catch (error) {
      refused(error);
    } finally {
      launchButton.disabled = false;
    }
  });
  return form;
}
