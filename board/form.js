// The upload form's pure logic: field checks, the key/value rows model, and the
// submission (seed 6.1's UploadImage payload plus the file). No DOM here, so that
// `node --test` covers every rule the page applies before it sends anything.

/** The environments a post can be published to (seed 6.1 `environment` post meta). */
export const ENVIRONMENTS = ['Development', 'Testing', 'Staging', 'Production'];

/** The seed's image version format, with the server's limit of six digits a part. */
const VERSION_RE = /^v\d+-\d+-\d+$/;
const VERSION_PREFIX_RE = /^(v(\d+(-(\d+(-\d*)?)?)?)?)?$/;
const MAX_VERSION_DIGITS = 6;

/**
 * Where a typed version stands: `empty`, `valid`, `incomplete` (a start that can still
 * become valid, such as `v0-0-`) or `invalid`. While typing, an incomplete version is a
 * hint, not an error; on leaving the field or submitting it becomes one.
 */
export function versionState(text) {
  const s = text.trim();
  if (s === '') return 'empty';
  const tooLong = s.slice(1).split('-').some((part) => part.length > MAX_VERSION_DIGITS);
  if (tooLong) return 'invalid';
  if (VERSION_RE.test(s)) return 'valid';
  return VERSION_PREFIX_RE.test(s) ? 'incomplete' : 'invalid';
}

/** The message for a version, or null when it is fine. `typing` spares incomplete input. */
export function checkVersion(text, { typing = false } = {}) {
  switch (versionState(text)) {
    case 'valid':
      return null;
    case 'empty':
      return typing ? null : 'Enter a version, like v0-0-01.';
    case 'incomplete':
      return typing ? null : 'Finish the version: a v and three numbers joined by dashes, like v0-0-01.';
    default:
      return text.trim().slice(1).split('-').some((p) => p.length > MAX_VERSION_DIGITS)
        ? 'Each number of the version has at most 6 digits.'
        : 'Write the version as v0-0-01: a v, then three numbers joined by dashes.';
  }
}

/** A port is optional; when given it is a whole number from 1 to 65535. */
export function checkPort(text) {
  const s = String(text ?? '').trim();
  if (s === '') return null;
  if (!/^\d+$/.test(s)) return 'The port is a whole number from 1 to 65535.';
  const n = Number(s);
  return n >= 1 && n <= 65535 ? null : 'The port is a whole number from 1 to 65535.';
}

// ---- key/value rows (environment variables, volumes, labels) ----

/** The three row lists of imageMetadata, with the seed's field names. */
export const ROW_KINDS = {
  envVars: { label: 'Environment variables', keyLabel: 'Name', valueLabel: 'Value' },
  volumes: { label: 'Volumes', keyLabel: 'Host path', valueLabel: 'Container path' },
  imageLabels: { label: 'Labels', keyLabel: 'Key', valueLabel: 'Value' },
};

/** An empty list of rows. Ids are stable so the page can keep focus on the right row. */
export function emptyRows() {
  return { nextId: 1, rows: [] };
}

export function addRow(model, key = '', value = '') {
  return {
    nextId: model.nextId + 1,
    rows: [...model.rows, { id: model.nextId, key, value }],
  };
}

export function removeRow(model, id) {
  return { ...model, rows: model.rows.filter((r) => r.id !== id) };
}

export function updateRow(model, id, field, value) {
  if (field !== 'key' && field !== 'value') throw new Error(`unknown row field ${field}`);
  return {
    ...model,
    rows: model.rows.map((r) => (r.id === id ? { ...r, [field]: value } : r)),
  };
}

/** The `[{key, value}]` list the seed sends; rows left fully blank are dropped. */
export function rowsToPairs(model) {
  return model.rows
    .map((r) => ({ key: r.key.trim(), value: r.value.trim() }))
    .filter((r) => r.key !== '' || r.value !== '');
}

/** Labels the kustomize stage sets itself on every resource. */
const RESERVED_LABELS = ['app', 'release'];
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LABEL_NAME_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function labelKeyProblem(key) {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : null;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== null && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN_RE.test(prefix))) {
    return 'the prefix before / must be a DNS name such as example.com';
  }
  if (name.length === 0 || name.length > 63 || !LABEL_NAME_RE.test(name)) {
    return 'a label key is 1 to 63 letters, digits, -, _ or ., starting and ending with a letter or digit';
  }
  return null;
}

function labelValueProblem(value) {
  if (value === '') return null;
  if (value.length > 63 || !LABEL_NAME_RE.test(value)) {
    return 'a label value is at most 63 letters, digits, -, _ or ., starting and ending with a letter or digit';
  }
  return null;
}

/**
 * The problems of one row list, as `[{id, field, message}]`: what Kubernetes and the
 * intake API would refuse (env var names, absolute volume paths, label syntax).
 */
export function rowProblems(kind, model) {
  const problems = [];
  for (const r of model.rows) {
    const key = r.key.trim();
    const value = r.value.trim();
    if (key === '' && value === '') continue;
    const say = (field, message) => problems.push({ id: r.id, field, message });
    if (key === '') {
      say('key', `Row ${rowNumber(model, r.id)}: fill in the ${ROW_KINDS[kind].keyLabel.toLowerCase()} or remove the row.`);
      continue;
    }
    if (kind === 'envVars' && !ENV_NAME_RE.test(key)) {
      say('key', `${key}: a variable name is letters, digits and _, and does not start with a digit.`);
    }
    if (kind === 'volumes') {
      if (!key.startsWith('/')) say('key', `${key}: the host path must be absolute (start with /).`);
      if (!value.startsWith('/')) say('value', `Row ${rowNumber(model, r.id)}: the container path must be absolute (start with /).`);
    }
    if (kind === 'imageLabels') {
      if (RESERVED_LABELS.includes(key)) {
        say('key', `${key}: this label is set by the pipeline (it names the deployment); use another key.`);
        continue;
      }
      const k = labelKeyProblem(key);
      if (k) say('key', `${key}: ${k}.`);
      const v = labelValueProblem(value);
      if (v) say('value', `${key}: ${v}.`);
    }
  }
  return problems;
}

function rowNumber(model, id) {
  return model.rows.findIndex((r) => r.id === id) + 1;
}

// ---- the whole form ----

/**
 * Every problem of the form as `{fieldName: message}`; empty when it can be sent.
 * `form` is the plain object the page reads from its inputs (see `buildMetadata`).
 */
export function validateForm(form) {
  const errors = {};
  if (!form.icao?.trim()) errors.icao = 'Enter an ICAO code and load its options.';
  if (!form.imageName?.trim()) errors.imageName = 'Enter the image name.';
  else if (form.imageName.trim().length > 200) errors.imageName = 'The image name is at most 200 characters.';
  const version = checkVersion(form.imageVersion ?? '');
  if (version) errors.imageVersion = version;
  if (!form.imageCategory?.trim()) errors.imageCategory = 'Choose a category.';
  const port = checkPort(form.port);
  if (port) errors.port = port;
  if (!ENVIRONMENTS.includes(form.environment)) errors.environment = 'Choose an environment.';
  for (const kind of Object.keys(ROW_KINDS)) {
    const problems = rowProblems(kind, form[kind] ?? emptyRows());
    if (problems.length) errors[kind] = problems.map((p) => p.message).join(' ');
  }
  if (!form.file) errors.file = 'Choose the image file: a picture (PNG, JPEG, GIF, WebP) or an image archive (.tar).';
  else if (form.file.size === 0) errors.file = 'The chosen file is empty.';
  return errors;
}

function optional(text) {
  const s = String(text ?? '').trim();
  return s === '' ? undefined : s;
}

/** Drops keys whose value is undefined, so optional fields are absent rather than null. */
function compact(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

/**
 * The `metadata` part: the seed's UploadImage payload (6.1, with its spelling `part` and
 * `description`) without the image bytes.
 * The environment travels both as the seed's `environment` post meta and as
 * `postMetadata.environment`, which the API prefers.
 */
export function buildMetadata(form) {
  const imageName = form.imageName.trim();
  const imageVersion = form.imageVersion.trim();
  const description = optional(form.description);
  const port = optional(form.port);
  const imageMetadata = compact({
    icao: optional(form.icao),
    tail: optional(form.tail),
    part: optional(form.part),
    imageName,
    imageVersion,
    imageCategory: form.imageCategory.trim(),
    description,
    port: port === undefined ? undefined : Number(port),
    envVars: rowsToPairs(form.envVars ?? emptyRows()),
    volumes: rowsToPairs(form.volumes ?? emptyRows()),
    imageLabels: rowsToPairs(form.imageLabels ?? emptyRows()),
    commandOverride: optional(form.commandOverride),
    entrypointOverride: optional(form.entrypointOverride),
    workingDir: optional(form.workingDir),
  });
  const userMetadata = compact({
    username: optional(form.username),
    firstName: optional(form.firstName),
    lastName: optional(form.lastName),
    email: optional(form.email),
  });
  const author = optional(form.postAuthor);
  const postData = compact({
    post_title: imageName,
    post_content: description ?? imageName,
    post_excerpt: imageName,
    category_name: form.imageCategory.trim(),
    post_author: author !== undefined && /^\d+$/.test(author) ? Number(author) : undefined,
  });
  const meta = [
    ['environment', form.environment],
    ['version', imageVersion],
    ['tail', optional(form.tail)],
    ['part', optional(form.part)],
  ];
  const post_meta = meta
    .filter(([, v]) => v !== undefined)
    .map(([meta_key, meta_value]) => ({ meta_key, meta_value }));
  return {
    imageMetadata,
    userMetadata,
    postMetadata: { postData, post_meta, environment: form.environment },
  };
}

/**
 * The multipart body of `POST /api/v1/jobs`: `metadata` (JSON text) first, so the API
 * can check it before the file streams in, then `image`.
 */
export function buildSubmission(form, FormDataImpl = globalThis.FormData) {
  const body = new FormDataImpl();
  body.append('metadata', JSON.stringify(buildMetadata(form)));
  body.append('image', form.file, form.file.name || 'image');
  return body;
}

/** Whether a chosen file is a picture the page can preview (by type or extension). */
export function fileKind(file) {
  const type = (file?.type ?? '').toLowerCase();
  const name = (file?.name ?? '').toLowerCase();
  if (/^image\/(png|jpeg|gif|webp)$/.test(type) || /\.(png|jpe?g|gif|webp)$/.test(name)) return 'picture';
  return 'archive';
}

/** A byte count in plain words: `512 bytes`, `1.5 KiB`, `2.0 GiB`. */
export function formatSize(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1024) return `${bytes} byte${bytes === 1 ? '' : 's'}`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let n = bytes / 1024;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(1)} ${units[i]}`;
}
