// The Upload Board's page wiring: sign-in, the upload form, following a job, the job
// list and the admin's dead-letter view. Rules and shapes live in form.js and jobs.js;
// this file only moves data between them, the API and the DOM. Every text that came
// from a person or the server goes in through textContent, never as HTML.

import { createApi, ApiError } from './api.js';
import {
  ENVIRONMENTS, ROW_KINDS, emptyRows, addRow, removeRow, updateRow, rowProblems,
  checkVersion, checkPort, validateForm, buildSubmission, fileKind, formatSize,
} from './form.js';
import {
  stageView, stageLine, statusWords, nextPollDelay, jobFingerprint, isFinal, postLink,
  manifestBlocks, otherOutputs, rejectionReasons, errorText, fieldErrors, fieldFor, listFrom,
  criteriaFrom, usersFrom, tokenClaims, newestFirst, jobTitle, jobTime, dateTime, dlqEntries, redrivenCount, POLL,
} from './jobs.js';

const TOKEN_KEY = 'k8or.board.token';
const $ = (id) => document.getElementById(id);

const state = {
  rows: { envVars: emptyRows(), volumes: emptyRows(), imageLabels: emptyRows() },
  staticLoaded: false,
  staticIcao: null,
  staticRequest: 0,
  usersLoaded: false,
  users: [],
  uploading: false,
  previewUrl: null,
  watch: null,
  jobsCursor: null,
  /** Bumped on sign-out, so answers to an earlier session's requests are dropped. */
  session: 0,
};

const api = createApi({
  token: () => sessionStorage.getItem(TOKEN_KEY),
  onUnauthorized: () => signOut('The API refused this token (it may have expired). Sign in again.'),
});

// ---- small DOM helpers (text only) ----

function el(tag, { text, className, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  for (const [k, v] of Object.entries(attrs ?? {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function say(id, text, kind = '') {
  const node = $(id);
  node.textContent = text ?? '';
  node.dataset.kind = kind;
}

function setError(name, message) {
  const err = $(`${name}-error`);
  if (!err) return false;
  err.textContent = message ?? '';
  const input = $(name);
  if (input) {
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  return true;
}

function fillSelect(select, options, placeholder) {
  select.replaceChildren();
  if (placeholder !== undefined) select.append(el('option', { text: placeholder, attrs: { value: '' } }));
  for (const o of options) {
    const opt = el('option', { text: o.label ?? o, attrs: { value: String(o.value ?? o) } });
    select.append(opt);
  }
}

// ---- sign-in ----

function showSignIn(message) {
  $('board').hidden = true;
  $('who').hidden = true;
  $('signin').hidden = false;
  setError('token', message ?? '');
  $('token').focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopWatching();
  resetBoard();
  showSignIn(message);
}

function resetBoard() {
  state.session += 1;
  $('upload-form').reset();
  $('environment').value = 'Development';
  for (const kind of Object.keys(ROW_KINDS)) {
    state.rows[kind] = emptyRows();
    renderRows(kind);
  }
  clearErrors();
  clearPreview();
  $('file-preview').hidden = true;
  $('progress-wrap').hidden = true;
  state.staticLoaded = false;
  state.staticIcao = null;
  state.usersLoaded = false;
  state.jobsCursor = null;
  for (const id of ['tail', 'part', 'imageCategory', 'postAuthor']) {
    fillSelect($(id), []);
    $(id).disabled = true;
  }
  $('jobs-body').replaceChildren();
  $('jobs-table').hidden = true;
  $('dlq-body').replaceChildren();
  $('admin').hidden = true;
  $('nav-admin').hidden = true;
  $('job').hidden = true;
  $('nav-job').hidden = true;
  say('static-status', '');
  say('users-status', '');
  say('form-status', '');
  updateSubmit();
}

function enterBoard() {
  const claims = tokenClaims(sessionStorage.getItem(TOKEN_KEY));
  $('signin').hidden = true;
  $('board').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = claims?.username ?? 'token holder';
  $('who-role').hidden = !claims?.role;
  $('who-role').textContent = claims?.role ?? '';
  if (claims?.username) $('username').value = claims.username;
  loadUsers();
  loadJobs();
  probeAdmin();
  const icao = $('icao').value.trim();
  if (icao) loadStaticData();
  else $('icao').focus();
}

$('signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const token = $('token').value.trim().replace(/^Bearer\s+/i, '');
  if (!token) {
    setError('token', 'Paste your access token first.');
    $('token').focus();
    return;
  }
  if (/\s/.test(token)) {
    setError('token', 'A token has no spaces or line breaks; check what was pasted.');
    return;
  }
  const claims = tokenClaims(token);
  if (claims?.exp && claims.exp * 1000 < Date.now()) {
    setError('token', `This token expired on ${dateTime(new Date(claims.exp * 1000).toISOString())}; ask for a new one.`);
    return;
  }
  setError('token', '');
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token').value = '';
  enterBoard();
});

$('sign-out').addEventListener('click', () => signOut('Signed out.'));

// ---- static data and users ----

async function loadStaticData() {
  const icao = $('icao').value.trim();
  if (!icao) {
    setError('icao', 'Enter an ICAO code, such as 1947.');
    return;
  }
  // A blur (change) and a click on "Load options" come together: load each code once,
  // and let only the newest request fill the dropdowns.
  if (icao === state.staticIcao) return;
  state.staticIcao = icao;
  const request = ++state.staticRequest;
  setError('icao', '');
  state.staticLoaded = false;
  updateSubmit();
  say('static-status', `Loading the options for ${icao}…`);
  for (const id of ['tail', 'part', 'imageCategory']) $(id).disabled = true;
  const session = state.session;
  try {
    const c = criteriaFrom(await api.get(`/api/v1/static-data/${encodeURIComponent(icao)}`));
    if (request !== state.staticRequest || session !== state.session) return;
    fillSelect($('tail'), c.tails, c.tails.length ? undefined : '(none)');
    fillSelect($('part'), c.parts, c.parts.length ? undefined : '(none)');
    fillSelect($('imageCategory'), c.categories, 'Choose a category');
    for (const id of ['tail', 'part', 'imageCategory']) $(id).disabled = false;
    state.staticLoaded = true;
    say('static-status', `Loaded for ${icao}: ${c.tails.length} tail numbers, ${c.categories.length} categories, ${c.parts.length} part numbers.`, 'ok');
  } catch (e) {
    if (request !== state.staticRequest || session !== state.session) return;
    state.staticIcao = null;
    const words = e instanceof ApiError && e.status === 404 ? `No options are known for ICAO code ${icao}.` : errorText(e.body, e.status);
    setError('icao', words);
    say('static-status', '');
  }
  updateSubmit();
}

$('icao-load').addEventListener('click', loadStaticData);
$('icao').addEventListener('keydown', (e) => {
  if (e.key === 'Enter') {
    e.preventDefault();
    loadStaticData();
  }
});
$('icao').addEventListener('change', () => {
  if ($('icao').value.trim()) loadStaticData();
});

async function loadUsers() {
  say('users-status', 'Loading the ViewPort users…');
  const session = state.session;
  try {
    const users = usersFrom(await api.get('/api/v1/users'));
    if (session !== state.session) return;
    state.users = users;
    fillSelect($('postAuthor'), state.users.map((u) => ({ value: u.id ?? '', label: u.name || `user ${u.id}` })), '(the API decides)');
    $('postAuthor').disabled = false;
    state.usersLoaded = true;
    say('users-status', `${state.users.length} ViewPort users loaded.`, 'ok');
  } catch (e) {
    if (session !== state.session) return;
    if (e.status !== 401) say('users-status', `The users could not be loaded: ${errorText(e.body, e.status)}`, 'bad');
  }
  updateSubmit();
}

$('postAuthor').addEventListener('change', () => {
  const user = state.users.find((u) => String(u.id) === $('postAuthor').value);
  if (!user?.name) return;
  const [first, ...rest] = user.name.split(' ');
  if (!$('firstName').value) $('firstName').value = first;
  if (!$('lastName').value) $('lastName').value = rest.join(' ');
});

function updateSubmit() {
  const ready = state.staticLoaded && state.usersLoaded;
  $('submit').disabled = !ready || state.uploading;
  if (!state.uploading) {
    const current = $('form-status').dataset.kind;
    if (!ready && current !== 'bad') say('form-status', 'Load the options for an ICAO code first; the form can be sent once they and the users have loaded.');
    else if (ready && current === '' && $('form-status').textContent.startsWith('Load the options')) say('form-status', '');
  }
}

// ---- environment select and live field checks ----

fillSelect($('environment'), ENVIRONMENTS);
$('environment').value = 'Development';

$('imageVersion').addEventListener('input', () => setError('imageVersion', checkVersion($('imageVersion').value, { typing: true })));
$('imageVersion').addEventListener('blur', () => {
  if ($('imageVersion').value) setError('imageVersion', checkVersion($('imageVersion').value));
});
$('port').addEventListener('input', () => setError('port', checkPort($('port').value)));
for (const id of ['imageName', 'imageCategory', 'environment', 'icao']) {
  $(id).addEventListener('input', () => setError(id, ''));
}

// ---- key/value rows ----

function renderRows(kind, focus) {
  const box = document.querySelector(`.rows[data-kind="${kind}"]`);
  const meta = ROW_KINDS[kind];
  const singular = meta.label.replace(/s$/, '').toLowerCase();
  const list = el('div', { className: 'kv-list' });
  state.rows[kind].rows.forEach((row, i) => {
    const keyId = `${kind}-${row.id}-key`;
    const valueId = `${kind}-${row.id}-value`;
    const key = el('input', { className: 'k', attrs: { id: keyId, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': `${kind}-error` } });
    key.value = row.key;
    key.addEventListener('input', () => {
      state.rows[kind] = updateRow(state.rows[kind], row.id, 'key', key.value);
      key.removeAttribute('aria-invalid');
      setError(kind, '');
    });
    const value = el('input', { className: 'v', attrs: { id: valueId, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': `${kind}-error` } });
    value.value = row.value;
    value.addEventListener('input', () => {
      state.rows[kind] = updateRow(state.rows[kind], row.id, 'value', value.value);
      value.removeAttribute('aria-invalid');
      setError(kind, '');
    });
    const remove = el('button', { text: 'Remove', className: 'quiet remove', attrs: { type: 'button', 'aria-label': `Remove ${singular} ${i + 1}` } });
    remove.addEventListener('click', () => {
      const at = state.rows[kind].rows.findIndex((r) => r.id === row.id);
      state.rows[kind] = removeRow(state.rows[kind], row.id);
      const next = state.rows[kind].rows[Math.min(at, state.rows[kind].rows.length - 1)];
      renderRows(kind, next ? `${kind}-${next.id}-key` : `${kind}-add`);
    });
    list.append(
      el('div', { className: 'kv' }, [
        el('div', { className: 'field' }, [el('label', { text: `${meta.keyLabel} ${i + 1}`, attrs: { for: keyId } }), key]),
        el('div', { className: 'field' }, [el('label', { text: `${meta.valueLabel} ${i + 1}`, attrs: { for: valueId } }), value]),
        remove,
      ]),
    );
  });
  const add = el('button', { text: `Add ${singular}`, className: 'secondary small', attrs: { type: 'button', id: `${kind}-add` } });
  add.addEventListener('click', () => {
    state.rows[kind] = addRow(state.rows[kind]);
    const last = state.rows[kind].rows.at(-1);
    renderRows(kind, `${kind}-${last.id}-key`);
  });
  const previousError = $(`${kind}-error`)?.textContent ?? '';
  const group = el('fieldset', { className: 'kv-group', attrs: { id: kind } }, [
    el('legend', { text: meta.label }),
    state.rows[kind].rows.length ? list : el('p', { text: 'None.', className: 'hint' }),
    add,
    el('p', { text: previousError, className: 'error', attrs: { id: `${kind}-error`, 'aria-live': 'polite' } }),
  ]);
  box.replaceChildren(group);
  if (focus) $(focus)?.focus();
}

for (const kind of Object.keys(ROW_KINDS)) renderRows(kind);

// ---- the file ----

function clearPreview() {
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  $('preview-img').hidden = true;
  $('preview-img').removeAttribute('src');
}

$('file').addEventListener('change', () => {
  const file = $('file').files[0];
  setError('file', '');
  clearPreview();
  if (!file) {
    $('file-preview').hidden = true;
    return;
  }
  $('file-preview').hidden = false;
  const kind = fileKind(file);
  $('file-info').textContent = `${file.name} · ${formatSize(file.size)}${kind === 'archive' ? ' · image archive' : ''}`;
  if (kind === 'picture') {
    state.previewUrl = URL.createObjectURL(file);
    $('preview-img').src = state.previewUrl;
    $('preview-img').hidden = false;
  }
});
$('preview-img').addEventListener('error', () => {
  $('preview-img').hidden = true;
  $('file-info').textContent += ' · this browser cannot show it (the server will check it)';
});

// ---- submitting ----

function readForm() {
  return {
    icao: $('icao').value,
    tail: $('tail').value,
    part: $('part').value,
    imageCategory: $('imageCategory').value,
    imageName: $('imageName').value,
    imageVersion: $('imageVersion').value,
    description: $('description').value,
    port: $('port').value,
    environment: $('environment').value,
    commandOverride: $('commandOverride').value,
    entrypointOverride: $('entrypointOverride').value,
    workingDir: $('workingDir').value,
    envVars: state.rows.envVars,
    volumes: state.rows.volumes,
    imageLabels: state.rows.imageLabels,
    username: $('username').value,
    firstName: $('firstName').value,
    lastName: $('lastName').value,
    email: $('email').value,
    postAuthor: $('postAuthor').value,
    file: $('file').files[0] ?? null,
  };
}

const FIELDS = ['icao', 'tail', 'part', 'imageCategory', 'imageName', 'imageVersion', 'description', 'file', 'environment',
  'port', 'commandOverride', 'entrypointOverride', 'workingDir', 'envVars', 'volumes', 'imageLabels', 'username',
  'postAuthor', 'firstName', 'lastName', 'email'];

function clearErrors() {
  for (const f of FIELDS) setError(f, '');
}

/** Marks the exact row inputs a row list's problems name, so focus lands on the first. */
function markRows() {
  for (const kind of Object.keys(ROW_KINDS)) {
    for (const input of document.querySelectorAll(`#${kind} input`)) input.removeAttribute('aria-invalid');
    for (const p of rowProblems(kind, state.rows[kind])) $(`${kind}-${p.id}-${p.field}`)?.setAttribute('aria-invalid', 'true');
  }
}

function focusField(name) {
  const target = ROW_KINDS[name] ? (document.querySelector(`#${name} input[aria-invalid], #${name} input`) ?? $(`${name}-add`)) : $(name);
  target?.focus();
}

function showFieldErrors(errors) {
  let first = null;
  const loose = [];
  for (const f of FIELDS) {
    if (errors[f]) {
      setError(f, errors[f]);
      first ??= f;
    }
  }
  for (const [f, m] of Object.entries(errors)) if (!FIELDS.includes(f)) loose.push(m);
  markRows();
  if (first) focusField(first);
  const count = Object.keys(errors).length;
  say('form-status', `${count === 1 ? 'One field needs' : `${count} fields need`} attention before sending.${loose.length ? ` ${loose.join(' ')}` : ''}`, 'bad');
}

$('upload-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!state.staticLoaded || !state.usersLoaded || state.uploading) return;
  clearErrors();
  const form = readForm();
  const errors = validateForm(form);
  if (Object.keys(errors).length) {
    showFieldErrors(errors);
    return;
  }
  state.uploading = true;
  updateSubmit();
  $('progress-wrap').hidden = false;
  $('upload-progress').value = 0;
  $('upload-text').textContent = '0%';
  say('form-status', `Uploading ${form.file.name}…`);
  const session = state.session;
  try {
    const job = await api.upload('/api/v1/jobs', buildSubmission(form), (sent, total) => {
      const pct = total ? Math.floor((sent / total) * 100) : 0;
      $('upload-progress').value = pct;
      $('upload-text').textContent = `${pct}% · ${formatSize(sent)} of ${formatSize(total)}`;
    });
    if (session !== state.session) return;
    $('upload-progress').value = 100;
    $('upload-text').textContent = `100% · ${formatSize(form.file.size)} sent`;
    say('form-status', 'Accepted. The job is on its way; its stages show on the right.', 'ok');
    showJob(job);
    watchJob(job);
    loadJobs();
  } catch (err) {
    if (session !== state.session) return;
    const body = err.body;
    if (err.status === 422 || err.status === 400) {
      const mapped = {};
      const loose = [];
      for (const fe of fieldErrors(body)) {
        const f = fieldFor(fe.field);
        if (f) mapped[f] = mapped[f] ? `${mapped[f]} ${fe.message}` : fe.message;
        else loose.push(fe.field ? `${fe.field} ${fe.message}` : fe.message);
      }
      if (Object.keys(mapped).length) showFieldErrors(mapped);
      say('form-status', `The API refused the upload: ${[errorText(body, err.status), ...loose].join(' · ')}`, 'bad');
    } else if (err.status === 403) {
      const message = body?.message ?? '';
      if (/post_author/.test(message)) setError('postAuthor', errorText(body, err.status));
      else if (/user/i.test(message)) setError('username', errorText(body, err.status));
      say('form-status', `The API refused the upload: ${errorText(body, err.status)}`, 'bad');
    } else if (err.status === 413) {
      setError('file', 'This file is larger than the server accepts.');
      say('form-status', errorText(body, err.status), 'bad');
    } else if (err.status !== 401) {
      say('form-status', `The upload failed: ${errorText(body, err.status)}`, 'bad');
    }
  } finally {
    state.uploading = false;
    updateSubmit();
  }
});

// ---- following one job ----

function statusUrlOf(job) {
  const url = job?.statusUrl;
  if (typeof url === 'string') {
    try {
      const u = new URL(url, location.href);
      if (u.origin === location.origin) return u.pathname + u.search;
    } catch {
      /* fall through to the job path */
    }
  }
  return `/api/v1/jobs/${encodeURIComponent(job.jobId)}`;
}

function showJob(job) {
  $('job').hidden = false;
  $('nav-job').hidden = false;
  $('job-id').textContent = job.jobId ?? '';
  $('job-title').textContent = `Job: ${jobTitle(job)}`;
  const status = job.status ?? 'queued';
  const badge = $('job-status');
  const words = statusWords(status);
  if (badge.textContent !== words) badge.textContent = words;
  badge.dataset.status = status;

  const reasons = status === 'rejected' ? rejectionReasons(job) : [];
  $('stages').replaceChildren(
    ...stageView(job).map((v) =>
      el('li', { className: `stage ${v.state}`, attrs: { 'data-stage': v.stage, 'data-state': v.state } }, [
        el('span', { className: 'dot', attrs: { 'aria-hidden': 'true' } }),
        el('div', {}, [
          el('span', { className: 'stage-name', text: v.label }),
          el('span', { className: 'stage-line', text: stageLine(v) }),
          ...(v.error && !(v.state === 'rejected' && reasons.length) ? [el('span', { className: 'stage-error', text: v.error })] : []),
        ]),
      ]),
    ),
  );

  $('job-reasons').hidden = reasons.length === 0;
  $('job-reasons-list').replaceChildren(...reasons.map((r) => el('li', { text: r })));
  $('job-error').hidden = true;
  $('job-error').textContent = '';
  updateJobRow(job);

  const outputs = job.outputs ?? {};
  const post = status === 'published' ? postLink(outputs, location.href) : null;
  $('job-post').hidden = !post;
  const link = $('job-post-link');
  if (post?.href) {
    link.href = post.href;
    link.textContent = post.slug ? `${post.slug}` : post.href;
  } else {
    link.removeAttribute('href');
    link.textContent = post ? `Post ${post.id}` : '';
  }

  const blocks = manifestBlocks(outputs);
  $('job-manifests').hidden = blocks.length === 0;
  $('job-manifests-list').replaceChildren(
    ...blocks.map((b) => el('details', { attrs: blocks.length === 1 ? { open: '' } : {} }, [
      el('summary', { text: b.title }),
      el('pre', { text: b.text, attrs: { tabindex: '0' } }),
    ])),
  );
  const others = otherOutputs(outputs);
  $('job-outputs').hidden = others.length === 0;
  $('job-outputs-summary').textContent = `Stored objects and checks (${others.length})`;
  $('job-outputs-list').replaceChildren(...others.flatMap((o) => [el('dt', { text: o.name }), el('dd', { text: o.text })]));
}

/** Keeps the job's row in "My jobs" in step with what polling sees. */
function updateJobRow(job) {
  const pill = document.querySelector(`#jobs-body tr[data-job="${CSS.escape(String(job.jobId ?? ''))}"] .pill`);
  if (pill && job.status) {
    pill.textContent = job.status;
    pill.dataset.status = job.status;
  }
}

function stopWatching() {
  if (state.watch?.timer) clearTimeout(state.watch.timer);
  state.watch = null;
}

function watchJob(job) {
  stopWatching();
  const watch = { url: statusUrlOf(job), delay: null, fingerprint: jobFingerprint(job), timer: null };
  state.watch = watch;
  const schedule = (status, changed) => {
    watch.delay = nextPollDelay(watch.delay, status, changed);
    if (watch.delay === null) {
      loadJobs();
      return;
    }
    watch.timer = setTimeout(tick, watch.delay);
  };
  const tick = async () => {
    if (state.watch !== watch) return;
    try {
      const next = await api.get(watch.url);
      if (state.watch !== watch) return;
      const fp = jobFingerprint(next);
      const changed = fp !== watch.fingerprint;
      watch.fingerprint = fp;
      if (changed) showJob(next);
      schedule(next.status, changed);
    } catch (e) {
      if (state.watch !== watch || e.status === 401) return;
      if (e.status === 404 || e.status === 403) {
        $('job-error').hidden = false;
        $('job-error').textContent = `This job can no longer be read: ${errorText(e.body, e.status)}`;
        return;
      }
      watch.delay = POLL.max;
      watch.timer = setTimeout(tick, POLL.max);
    }
  };
  schedule(job.status, true);
}

async function openJob(jobId) {
  try {
    const job = await api.get(`/api/v1/jobs/${encodeURIComponent(jobId)}`);
    showJob(job);
    $('job').focus();
    if (isFinal(job.status)) stopWatching();
    else watchJob(job);
  } catch (e) {
    if (e.status !== 401) say('jobs-status', `Job ${jobId} could not be opened: ${errorText(e.body, e.status)}`, 'bad');
  }
}

// ---- my jobs ----

async function loadJobs({ more = false } = {}) {
  if (!more) state.jobsCursor = null;
  say('jobs-status', 'Loading your jobs…');
  const session = state.session;
  try {
    const path = more && state.jobsCursor ? `/api/v1/jobs?cursor=${encodeURIComponent(state.jobsCursor)}` : '/api/v1/jobs';
    const body = await api.get(path);
    if (session !== state.session) return;
    const jobs = newestFirst(listFrom(body));
    const next = body?.next ?? body?.nextCursor ?? body?.cursor ?? null;
    state.jobsCursor = typeof next === 'string' && next ? next : null;
    $('jobs-more').hidden = !state.jobsCursor;
    const rows = jobs.map((job) => {
      const open = el('button', { text: 'Open', className: 'secondary small', attrs: { type: 'button', 'aria-label': `Open job ${jobTitle(job)}` } });
      open.addEventListener('click', () => openJob(job.jobId));
      return el('tr', { attrs: { 'data-job': String(job.jobId ?? '') } }, [
        el('td', { text: dateTime(jobTime(job)) }),
        el('td', { text: jobTitle(job) }),
        el('td', {}, [el('span', { className: 'pill', text: job.status ?? '', attrs: { 'data-status': job.status ?? '' } })]),
        el('td', {}, [open]),
      ]);
    });
    if (more) $('jobs-body').append(...rows);
    else $('jobs-body').replaceChildren(...rows);
    const total = $('jobs-body').children.length;
    $('jobs-table').hidden = total === 0;
    say('jobs-status', total ? '' : 'No jobs yet. Your uploads will show here.');
  } catch (e) {
    if (session !== state.session) return;
    if (e.status !== 401) say('jobs-status', `Your jobs could not be loaded: ${errorText(e.body, e.status)}`, 'bad');
  }
}

$('jobs-refresh').addEventListener('click', () => loadJobs());
$('jobs-more').addEventListener('click', () => loadJobs({ more: true }));

// ---- admin: dead letters ----

/** The admin view exists only if the API lets this token read the dead letters. */
async function probeAdmin() {
  let body;
  const session = state.session;
  try {
    body = await api.probe('/api/v1/dlq');
    if (session !== state.session) return;
  } catch {
    if (session !== state.session) return;
    $('admin').hidden = true;
    $('nav-admin').hidden = true;
    return;
  }
  $('admin').hidden = false;
  $('nav-admin').hidden = false;
  renderDlq(body);
}

function renderDlq(body) {
  const entries = dlqEntries(body);
  $('dlq-table').hidden = entries.length === 0;
  $('dlq-redrive-all').hidden = entries.length === 0;
  say('dlq-status', entries.length ? `${entries.length} dead-lettered job${entries.length === 1 ? '' : 's'}.` : 'No dead-lettered jobs.');
  $('dlq-body').replaceChildren(
    ...entries.map((d) => {
      // A dead letter that carries no job can only go back with its whole stage ("Re-drive all").
      const btn = d.jobId
        ? el('button', { text: 'Re-drive', className: 'secondary small', attrs: { type: 'button', 'aria-label': `Re-drive job ${d.jobId}` } })
        : el('span', { text: 'not a job', className: 'hint' });
      if (d.jobId) btn.addEventListener('click', () => redrive({ jobId: d.jobId, ...(d.stage ? { stage: d.stage } : {}) }, btn));
      return el('tr', { attrs: { 'data-job': d.jobId } }, [
        el('td', {}, [el('code', { text: d.jobId || d.messageId || '' })]),
        el('td', { text: d.stage ?? '' }),
        el('td', { text: d.receives ?? '' }),
        el('td', { text: d.error ?? '' }),
        el('td', {}, [btn]),
      ]);
    }),
  );
}

async function loadDlq() {
  try {
    renderDlq(await api.get('/api/v1/dlq'));
  } catch (e) {
    if (e.status !== 401) say('dlq-status', `The dead letters could not be loaded: ${errorText(e.body, e.status)}`, 'bad');
  }
}

async function redrive(body, button) {
  if (button) button.disabled = true;
  say('dlq-status', 'Re-driving…');
  try {
    const answer = await api.post('/api/v1/dlq/redrive', body);
    const n = redrivenCount(answer);
    await loadDlq();
    say('dlq-status', `Re-drive sent${body.jobId ? ` for job ${body.jobId}` : ''}${n !== null ? `: ${n === 1 ? '1 message is back on its queue' : `${n} messages are back on their queues`}` : ''}. ${$('dlq-status').textContent}`, 'ok');
    loadJobs();
    if (body.jobId && $('job-id').textContent === body.jobId) openJob(body.jobId);
  } catch (e) {
    if (e.status !== 401) say('dlq-status', `The re-drive failed: ${errorText(e.body, e.status)}`, 'bad');
    if (button) button.disabled = false;
  }
}

$('dlq-refresh').addEventListener('click', loadDlq);
$('dlq-redrive-all').addEventListener('click', () => redrive({}, $('dlq-redrive-all')));

// ---- start ----

if (sessionStorage.getItem(TOKEN_KEY)) enterBoard();
else showSignIn();
