// The intake API as the board calls it: bearer token on every call, JSON in and out,
// and the upload through XMLHttpRequest, the one browser API that reports upload
// progress. Same origin only (the page's CSP allows `connect-src 'self'`).

import { errorText } from './jobs.js';

/** An API answer that was not a success: its HTTP status and its parsed body. */
export class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

function parse(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function describe(status, body) {
  return errorText(body, status);
}

/**
 * A client bound to a token source. `onUnauthorized` runs on any 401, so the page can
 * drop an expired token and ask for a new one.
 */
export function createApi({ token, onUnauthorized = () => {} }) {
  async function request(method, path, body, { notify = true } = {}) {
    const headers = { Accept: 'application/json' };
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, null, describe(0, null));
    }
    const parsed = parse(await res.text());
    if (res.status === 401 && notify) onUnauthorized();
    if (!res.ok) throw new ApiError(res.status, parsed, describe(res.status, parsed));
    return parsed;
  }

  return {
    get: (path) => request('GET', path),
    post: (path, body) => request('POST', path, body ?? {}),

    /**
     * GET whose refusal is an answer, not a sign-out: used to learn whether this token may
     * see the admin view (a user token gets 401 or 403 there).
     */
    probe: (path) => request('GET', path, undefined, { notify: false }),

    /**
     * Sends a job as multipart/form-data; `onProgress(sent, total)` follows the bytes.
     * Resolves with the job (202) or rejects with an ApiError.
     */
    upload(path, formData, onProgress = () => {}) {
      return new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open('POST', path);
        xhr.setRequestHeader('Accept', 'application/json');
        const t = token();
        if (t) xhr.setRequestHeader('Authorization', `Bearer ${t}`);
        xhr.upload.addEventListener('progress', (e) => {
          if (e.lengthComputable) onProgress(e.loaded, e.total);
        });
        xhr.addEventListener('load', () => {
          const body = parse(xhr.responseText);
          if (xhr.status === 401) onUnauthorized();
          if (xhr.status >= 200 && xhr.status < 300) resolve(body);
          else reject(new ApiError(xhr.status, body, describe(xhr.status, body)));
        });
        xhr.addEventListener('error', () => reject(new ApiError(0, null, describe(0, null))));
        xhr.addEventListener('abort', () => reject(new ApiError(0, null, 'The upload was cancelled.')));
        xhr.send(formData);
      });
    },
  };
}
