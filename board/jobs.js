// A job as the board shows it: the stage list, the polling schedule, the outputs of a
// published job, and the API's error bodies, all as plain data (no DOM), so that
// `node --test` checks what the page will render.

/** The pipeline's stages, in order, with the words the board shows. */
export const STAGES = [
  { stage: 'validate', label: 'Validate', running: 'validating' },
  { stage: 'persist-metadata', label: 'Save metadata', running: 'persisting' },
  { stage: 'kustomize', label: 'Kustomize', running: 'kustomizing' },
  { stage: 'publish', label: 'Publish', running: 'publishing' },
];

/** Every status, in plain words for people. */
export const STATUS_WORDS = {
  queued: 'Queued: waiting for a worker',
  validating: 'Checking the image',
  persisting: 'Saving the metadata',
  kustomizing: 'Writing the Kubernetes manifests',
  publishing: 'Publishing the ViewPort post',
  retrying: 'A step failed for a passing reason; retrying',
  published: 'Published',
  rejected: 'Rejected',
  'dead-lettered': 'Stopped after repeated failures; waiting for an operator to re-drive it',
};

export function statusWords(status) {
  return STATUS_WORDS[status] ?? String(status ?? 'unknown');
}

/** Published and rejected end a job; dead-lettered may still move after a re-drive. */
export function isFinal(status) {
  return status === 'published' || status === 'rejected';
}

// ---- polling back-off ----

export const POLL = { min: 250, max: 2000, factor: 2, deadLettered: 10000 };

/**
 * The wait before the next status poll, or null to stop. A change of the job (new
 * status or history entry) starts again at `min`, so passing stages show at once; while
 * nothing changes the wait doubles up to `max`; a dead-lettered job is polled slowly,
 * since only a re-drive can move it.
 */
export function nextPollDelay(previous, status, changed, policy = POLL) {
  if (isFinal(status)) return null;
  if (status === 'dead-lettered') return policy.deadLettered;
  if (changed || previous == null) return policy.min;
  return Math.min(policy.max, Math.max(policy.min, previous * policy.factor));
}

/** What the board compares to tell that a polled job changed. */
export function jobFingerprint(job) {
  return `${job?.status}|${job?.stage}|${job?.attempt}|${job?.history?.length ?? 0}`;
}

// ---- stages of one job ----

function time(at) {
  const t = Date.parse(at ?? '');
  return Number.isNaN(t) ? null : t;
}

/**
 * The four stages of a job for display: `{stage, label, state, at, endedAt, error,
 * attempt}`, where state is `pending`, `queued`, `running`, `retrying`, `done`,
 * `rejected` or `dead-lettered`; `at` is when the stage first started (or was queued)
 * and `endedAt` when the job moved past it.
 */
export function stageView(job) {
  const history = Array.isArray(job?.history) ? job.history : [];
  const status = job?.status;
  const current = STAGES.findIndex((s) => s.stage === job?.stage);
  return STAGES.map((s, i) => {
    const own = history.filter((h) => h.stage === s.stage);
    const started = own.find((h) => h.status === s.running) ?? own[0];
    const later = history.find((h) => STAGES.findIndex((x) => x.stage === h.stage) > i);
    const last = own[own.length - 1];
    let state = 'pending';
    if (status === 'published' || (current >= 0 && i < current)) state = 'done';
    else if (i === current) {
      state = {
        queued: 'queued',
        retrying: 'retrying',
        rejected: 'rejected',
        'dead-lettered': 'dead-lettered',
      }[status] ?? (status === s.running ? 'running' : 'queued');
    }
    const published = history.find((h) => h.status === 'published');
    const ended = state === 'done' ? (later ?? (s.stage === 'publish' ? published : null)) : null;
    const endedOnFailure = state === 'rejected' || state === 'dead-lettered' ? last : null;
    return {
      stage: s.stage,
      label: s.label,
      state,
      at: started?.at ?? null,
      endedAt: (ended ?? endedOnFailure)?.at ?? null,
      error: state === 'done' || state === 'pending' ? null : (last?.error ?? (i === current ? job?.error : null) ?? null),
      attempt: last?.attempt ?? (i === current ? job?.attempt : null) ?? null,
    };
  });
}

/** A stage's state in words, for the line next to its name. */
export const STATE_WORDS = {
  pending: 'not started',
  queued: 'queued',
  running: 'running',
  retrying: 'retrying',
  done: 'done',
  rejected: 'rejected',
  'dead-lettered': 'dead-lettered',
};

/** `HH:MM:SS` in local time, or '' for a missing time. */
export function clockTime(at) {
  const t = time(at);
  if (t === null) return '';
  const d = new Date(t);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** How long from `from` to `to`, in words: `340 ms`, `2.4 s`, `3 min 5 s`. */
export function duration(from, to) {
  const a = time(from);
  const b = time(to);
  if (a === null || b === null || b < a) return '';
  const ms = b - a;
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** The line the board writes under a stage's name. */
export function stageLine(view) {
  const parts = [STATE_WORDS[view.state] ?? view.state];
  if (view.at) parts.push(`at ${clockTime(view.at)}`);
  const took = duration(view.at, view.endedAt);
  if (took && view.state === 'done') parts.push(`took ${took}`);
  if (view.attempt > 1) parts.push(`attempt ${view.attempt}`);
  return parts.join(' · ');
}

/** The time a job was made: `createdAt`, else its first history entry. */
export function jobTime(job) {
  return job?.createdAt ?? job?.history?.[0]?.at ?? null;
}

/** A user's jobs, newest first (ids are UUID v7, which sort by time too). */
export function newestFirst(jobs) {
  return [...jobs].sort((a, b) => {
    const ta = time(jobTime(a)) ?? 0;
    const tb = time(jobTime(b)) ?? 0;
    if (ta !== tb) return tb - ta;
    return String(b.jobId ?? '').localeCompare(String(a.jobId ?? ''));
  });
}

/** The image name and version a job carries, for lists. */
export function jobTitle(job) {
  const m = job?.request?.imageMetadata ?? job?.imageMetadata ?? {};
  const name = m.imageName ?? job?.imageName;
  const version = m.imageVersion ?? job?.imageVersion;
  if (name && version) return `${name} ${version}`;
  return name ?? job?.image?.fileName ?? job?.jobId ?? 'job';
}

// ---- what a published job produced ----

/** A link target only if it is http(s) (absolute, or relative to `base`). */
export function safeHref(url, base) {
  if (typeof url !== 'string' || url.trim() === '') return null;
  try {
    const u = new URL(url, base);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

/** The ViewPort post of a published job: `{href, id, slug}` or null. */
export function postLink(outputs, base) {
  const o = outputs ?? {};
  const post = o.post ?? o.viewport ?? o.viewPort ?? null;
  const candidates =
    typeof post === 'string'
      ? [post]
      : [post?.url, post?.link, post?.permalink, post?.guidUrl, post?.guid, o.postUrl, o.post_url, o.url];
  const href = candidates.map((c) => safeHref(c, base)).find(Boolean) ?? null;
  const id = post?.id ?? post?.ID ?? post?.postId ?? o.postId ?? null;
  const slug = post?.slug ?? post?.postName ?? post?.post_name ?? o.slug ?? null;
  if (!href && id == null) return null;
  return { href, id, slug };
}

function asText(value) {
  return typeof value === 'string' ? value : JSON.stringify(value, null, 2);
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function textMap(v) {
  return isPlainObject(v) && Object.values(v).length > 0 && Object.values(v).every((x) => typeof x === 'string');
}

function resourceBlocks(list, key) {
  return list.map((item, i) => {
    const title =
      item?.name ?? item?.path ?? item?.file ??
      (item?.kind ? `${item.kind}${item.metadata?.name ? ` ${item.metadata.name}` : ''}` : `${key} ${i + 1}`);
    const body = item?.content ?? item?.text ?? item?.yaml ?? item;
    return { title: String(title), text: asText(body) };
  });
}

/**
 * The generated manifests as `[{title, text}]`, from `outputs.kustomization` and
 * `outputs.manifests` in whichever form the API sends them: text, a map of file name to
 * YAML (`kustomization.yaml`, as the kustomize stage writes), a list of resources, or
 * an object that holds one of those.
 */
export function manifestBlocks(outputs) {
  const blocks = [];
  for (const key of ['kustomization', 'manifests']) {
    const v = outputs?.[key];
    if (v == null) continue;
    if (typeof v === 'string') blocks.push({ title: key, text: v });
    else if (Array.isArray(v)) blocks.push(...resourceBlocks(v, key));
    else if (textMap(v.yaml)) for (const [name, text] of Object.entries(v.yaml)) blocks.push({ title: name, text });
    else if (textMap(v.files)) for (const [name, text] of Object.entries(v.files)) blocks.push({ title: name, text });
    else if (Array.isArray(v.manifests)) blocks.push(...resourceBlocks(v.manifests, key));
    else if (textMap(v)) for (const [name, text] of Object.entries(v)) blocks.push({ title: name, text });
    else if (isPlainObject(v)) blocks.push({ title: key, text: asText(v) });
    else blocks.push({ title: key, text: String(v) });
  }
  // kustomization.yaml first: it is the entry point that names the other files.
  const entry = blocks.findIndex((b) => b.title === 'kustomization.yaml');
  if (entry > 0) blocks.unshift(...blocks.splice(entry, 1));
  return blocks;
}

/**
 * The other outputs (object keys, sizes, digests, what validation found) as
 * `[{name, text}]`, one level deep (`validation.format`), for a plain list. The manifests
 * and the post have their own places.
 */
export function otherOutputs(outputs) {
  const shown = new Set(['manifests', 'yaml', 'post', 'viewport', 'viewPort', 'postUrl', 'post_url']);
  const text = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
  const out = [];
  for (const [name, v] of Object.entries(outputs ?? {})) {
    if (shown.has(name) || v == null) continue;
    if (isPlainObject(v)) {
      for (const [k, x] of Object.entries(v)) {
        if (x == null || (name === 'kustomization' && shown.has(k))) continue;
        if (name === 'kustomization' && k === 'files' && textMap(x)) continue;
        out.push({ name: `${name}.${k}`, text: Array.isArray(x) && x.every((i) => typeof i === 'string') ? x.join('\n') : text(x) });
      }
    } else if (name !== 'kustomization') out.push({ name, text: text(v) });
  }
  return out;
}

/** Every failed check of a rejected job, in plain words. */
export function rejectionReasons(job) {
  if (Array.isArray(job?.reasons) && job.reasons.length) return job.reasons.map(String);
  return job?.error ? [String(job.error)] : [];
}

// ---- API answers ----

/** One line for an error body `{PID, status: "error", code, message}` or anything else. */
export function errorText(body, httpStatus) {
  if (body && typeof body === 'object' && (body.message || body.code)) {
    return body.code ? `${body.message ?? 'Request failed'} (${body.code})` : String(body.message);
  }
  if (typeof body === 'string' && body.trim()) return body.trim().slice(0, 300);
  if (httpStatus === 0) return 'The server could not be reached.';
  return `The server answered ${httpStatus}.`;
}

/** The field errors of a 422: `[{field, message}]`, whatever the list is called. */
export function fieldErrors(body) {
  const list = ['errors', 'fields', 'fieldErrors', 'details', 'violations']
    .map((k) => body?.[k])
    .find(Array.isArray);
  if (!list) return [];
  return list
    .map((e) =>
      typeof e === 'string'
        ? { field: '', message: e }
        : { field: String(e?.field ?? e?.path ?? e?.name ?? e?.pointer ?? ''), message: String(e?.message ?? e?.reason ?? e?.error ?? '') },
    )
    .filter((e) => e.message);
}

/** Which form field a server field path names (`imageMetadata.envVars[1].key` → `envVars`). */
const FIELD_NAMES = {
  icao: 'icao', tail: 'tail', part: 'part', Part: 'part',
  imageName: 'imageName', imageVersion: 'imageVersion', imageCategory: 'imageCategory',
  description: 'description', Description: 'description', port: 'port',
  envVars: 'envVars', volumes: 'volumes', imageLabels: 'imageLabels',
  commandOverride: 'commandOverride', entrypointOverride: 'entrypointOverride', workingDir: 'workingDir',
  environment: 'environment', username: 'username', firstName: 'firstName', lastName: 'lastName', email: 'email',
  post_author: 'postAuthor', image: 'file', imageData: 'file', file: 'file',
};

export function fieldFor(path) {
  const parts = String(path ?? '')
    .replace(/^\//, '')
    .split(/[./]|\[\d+\]/)
    .filter((p) => p && !/^\d+$/.test(p));
  for (const p of parts) {
    if (p === 'imageMetadata' || p === 'userMetadata' || p === 'postMetadata' || p === 'postData') continue;
    if (FIELD_NAMES[p]) return FIELD_NAMES[p];
  }
  if (parts.includes('environment') || parts.includes('post_meta')) return 'environment';
  return null;
}

/** The items of a list answer, whether bare or wrapped (`{jobs: […]}`, `{items: […]}`…). */
export function listFrom(body, keys = ['jobs', 'items', 'data', 'messages', 'entries']) {
  if (Array.isArray(body)) return body;
  for (const k of keys) if (Array.isArray(body?.[k])) return body[k];
  return [];
}

/** The filter criteria of a static-data answer (`{filter_criteria: …}` or bare). */
export function criteriaFrom(body) {
  const c = body?.filter_criteria ?? body?.filterCriteria ?? body ?? {};
  const list = (v) => (Array.isArray(v) ? v.map(String) : []);
  return {
    icao: c.ICAOCode ?? null,
    tails: list(c.aircraftTailNumber),
    categories: list(c.imageCategory),
    parts: list(c.partNumber),
  };
}

/** The users of a users answer (`{user_data: […]}` as the seed, or a bare list). */
export function usersFrom(body) {
  return listFrom(body, ['user_data', 'users', 'items'])
    .map((u) => ({ id: u?.ID ?? u?.id ?? null, name: String(u?.display_name ?? u?.displayName ?? u?.name ?? '') }))
    .filter((u) => u.id != null || u.name);
}

/** The username and role a signed token carries, read without checking it (display only). */
export function tokenClaims(token) {
  const part = String(token ?? '').split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''),
    );
    const claims = JSON.parse(json);
    return {
      username: claims.username ?? claims.user ?? claims.sub ?? null,
      role: claims.role ?? null,
      exp: typeof claims.exp === 'number' ? claims.exp : null,
    };
  } catch {
    return null;
  }
}

/** `YYYY-MM-DD HH:MM:SS` in local time, for lists; '' for a missing time. */
export function dateTime(at) {
  const t = time(at);
  if (t === null) return '';
  const d = new Date(t);
  const day = [d.getFullYear(), d.getMonth() + 1, d.getDate()].map((n) => String(n).padStart(2, '0')).join('-');
  return `${day} ${clockTime(at)}`;
}

/** One dead-letter entry as the admin view shows it, whatever the API nests it in. */
export function dlqEntry(item) {
  const job = item?.job ?? {};
  const env = item?.envelope ?? item?.message ?? {};
  return {
    jobId: String(item?.jobId ?? job.jobId ?? env.jobId ?? ''),
    messageId: item?.messageId ?? null,
    stage: item?.stage ?? env.stage ?? job.stage ?? null,
    receives: item?.receiveCount ?? item?.attempts ?? item?.attempt ?? job.attempt ?? null,
    error: item?.lastError ?? item?.error ?? job.error ?? null,
    title: jobTitle(Object.keys(job).length ? job : item),
  };
}

/**
 * Every dead letter of a `GET /api/v1/dlq` answer: `{stages: [{stage, jobs: […]}]}`
 * (each job takes its stage from the queue it waits in), or a flat list.
 */
export function dlqEntries(body) {
  if (Array.isArray(body?.stages)) {
    return body.stages.flatMap((s) => listFrom(s).map((j) => dlqEntry({ ...j, stage: j?.stage ?? s?.stage })));
  }
  return listFrom(body).map(dlqEntry);
}

/** How many dead letters a re-drive moved: a list of them, or a count. */
export function redrivenCount(answer) {
  const r = answer?.redriven ?? answer?.moved ?? answer?.count;
  if (Array.isArray(r)) return r.length;
  return Number.isFinite(r) ? r : null;
}
