// The Upload Board in a real browser against the real API: sign in, load the static
// data, fill the form, upload a generated PNG and follow it to "published" with its
// post link and manifests; then upload a truncated PNG and see the rejection with its
// reasons; then the job list and sign-out. Screenshots go to BOARD_ARTIFACTS.
//
//   BOARD_URL=http://127.0.0.1:8080 BOARD_TOKEN=… BOARD_ARTIFACTS=test-artifacts/board \
//     node board/e2e/board.e2e.mjs
//
// Optional: BOARD_CHROMIUM (default /usr/bin/chromium), BOARD_TIMEOUT_MS (default
// 120000: how long a job may take to reach its end state), BOARD_ICAO (default 1947).
// Exits 0 when every step passed, 1 on a failed step, 2 when it cannot start.

import { mkdir, mkdtemp, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { makePng, makeBrokenPng } from './png.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.BOARD_URL ?? '').replace(/\/+$/, '');
const TOKEN = process.env.BOARD_TOKEN ?? '';
const ARTIFACTS = path.resolve(process.env.BOARD_ARTIFACTS ?? path.join(here, '..', '..', 'test-artifacts', 'board'));
const CHROMIUM = process.env.BOARD_CHROMIUM ?? '/usr/bin/chromium';
const JOB_TIMEOUT = Number(process.env.BOARD_TIMEOUT_MS ?? 120000);
const ICAO = process.env.BOARD_ICAO ?? '1947';
const UI_TIMEOUT = 15000;

const results = { passed: 0, failed: 0 };
const log = (...a) => console.log('[board e2e]', ...a);

class StepFailure extends Error {}

function check(cond, message) {
  if (!cond) throw new StepFailure(message);
}

let currentPage = null;

/** What the page itself says is wrong (field errors, failed loads), to explain a failure. */
async function pageSays() {
  if (!currentPage) return [];
  return currentPage
    .evaluate(() => [...document.querySelectorAll('.error, .status[data-kind="bad"]')]
      .filter((n) => n.textContent.trim() && n.offsetParent !== null)
      .map((n) => `#${n.id || n.className}: ${n.textContent.trim()}`))
    .catch(() => []);
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    const out = await fn();
    results.passed += 1;
    log(`ok   ${name} (${Date.now() - t0} ms)`);
    return out;
  } catch (e) {
    results.failed += 1;
    const first = e instanceof StepFailure ? e.message : String(e.message ?? e).split('\n')[0];
    const said = await pageSays();
    const why = `${first}${said.length ? ` — the page says: ${said.join(' | ')}` : ''}`;
    log(`FAIL ${name}: ${why}`);
    throw new StepFailure(`${name}: ${why}`);
  }
}

async function preflight() {
  const missing = [['BOARD_URL', BASE], ['BOARD_TOKEN', TOKEN]].filter(([, v]) => !v).map(([k]) => k);
  if (missing.length) throw new Error(`set ${missing.join(' and ')} (the API base URL and a user token)`);
  try {
    await access(CHROMIUM);
  } catch {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set BOARD_CHROMIUM`);
  }
  let res;
  try {
    res = await fetch(`${BASE}/`);
  } catch (e) {
    throw new Error(`the API does not answer at ${BASE}/: ${e.cause?.message ?? e.message}`);
  }
  if (!res.ok) throw new Error(`GET ${BASE}/ answered ${res.status}; the Upload Board page should be there`);
  await mkdir(ARTIFACTS, { recursive: true });
}

/** The states of the four stages as the page shows them, and the job's status. */
function readJob(page) {
  return page.evaluate(() => ({
    id: document.getElementById('job-id')?.textContent ?? '',
    status: document.getElementById('job-status')?.dataset.status ?? '',
    words: document.getElementById('job-status')?.textContent ?? '',
    stages: [...document.querySelectorAll('#stages [data-stage]')].map((li) => ({
      stage: li.dataset.stage,
      state: li.dataset.state,
      line: li.querySelector('.stage-line')?.textContent ?? '',
    })),
  }));
}

/** Follows the job panel until job `notId` is replaced by a job in an end state; logs what passes. */
async function followJob(page, notId, endStates) {
  const seen = [];
  const deadline = Date.now() + JOB_TIMEOUT;
  let last = '';
  for (;;) {
    const job = await readJob(page);
    const fp = `${job.id} ${job.status} ${job.stages.map((s) => `${s.stage}:${s.state}`).join(' ')}`;
    if (job.id && job.id !== notId && fp !== last) {
      last = fp;
      seen.push(fp);
      log(`  ${job.status.padEnd(13)} ${job.stages.map((s) => `${s.stage}=${s.state}`).join(', ')}`);
    }
    if (job.id && job.id !== notId && endStates.includes(job.status)) return { job, seen };
    if (Date.now() > deadline) {
      throw new StepFailure(`the job did not reach ${endStates.join(' or ')} within ${JOB_TIMEOUT} ms; last seen: ${last || 'no job shown'}`);
    }
    await page.waitForTimeout(100);
  }
}

async function shot(page, name) {
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file, fullPage: true });
  log(`  screenshot ${file}`);
}

async function fillForm(page, { name, version, file }) {
  await page.fill('#imageName', name);
  await page.fill('#imageVersion', version);
  await page.setInputFiles('#file', file);
}

async function run(page) {
  const pageErrors = [];
  const cspReports = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content.Security.Policy/i.test(m.text())) cspReports.push(m.text());
  });
  const runTag = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
  const imageName = `Board E2E ${runTag}`;

  await step('the page loads with its Content-Security-Policy', async () => {
    const res = await page.goto(`${BASE}/`, { waitUntil: 'load' });
    check(res && res.ok(), `GET / answered ${res?.status()}`);
    const csp = res.headers()['content-security-policy'] ?? '';
    check(/script-src 'self'/.test(csp) && /default-src 'self'/.test(csp), `GET / must carry a Content-Security-Policy with default-src and script-src 'self'; got ${JSON.stringify(csp)}`);
    await page.waitForSelector('#signin:not([hidden])', { timeout: UI_TIMEOUT });
    await shot(page, '01-sign-in.png');
  });

  await step('signs in with a pasted token, kept out of the URL', async () => {
    await page.fill('#token', TOKEN);
    await page.click('#sign-in');
    await page.waitForSelector('#board:not([hidden])', { timeout: UI_TIMEOUT });
    check(!page.url().includes(TOKEN), 'the token appeared in the URL');
    const stored = await page.evaluate(() => sessionStorage.getItem('k8or.board.token'));
    check(stored === TOKEN, 'the token is not in sessionStorage');
    check(await page.isDisabled('#submit'), 'the form could be submitted before the static data loaded');
  });

  await step(`loads the static data for ICAO ${ICAO} and the users`, async () => {
    await page.fill('#icao', ICAO);
    await page.click('#icao-load');
    await page.waitForSelector('#imageCategory:not([disabled])', { timeout: UI_TIMEOUT });
    await page.waitForSelector('#submit:not([disabled])', { timeout: UI_TIMEOUT });
    const counts = await page.evaluate(() => ['tail', 'part', 'imageCategory', 'postAuthor'].map((id) => document.getElementById(id).options.length));
    check(counts[0] > 0 && counts[1] > 0 && counts[2] > 1, `dropdowns not filled: tail ${counts[0]}, part ${counts[1]}, category ${counts[2]}`);
    check(counts[3] > 1, 'the users list did not load');
    log(`  options: ${counts[0]} tails, ${counts[1]} parts, ${counts[2] - 1} categories, ${counts[3] - 1} users`);
  });

  await step('checks the version while typing', async () => {
    await page.fill('#imageVersion', '');
    await page.locator('#imageVersion').pressSequentially('v0-0-', { delay: 10 });
    check((await page.textContent('#imageVersion-error')) === '', 'an incomplete version was flagged while typing');
    await page.locator('#imageVersion').pressSequentially('x');
    const err = await page.textContent('#imageVersion-error');
    check(/v0-0-01/.test(err), `no live error for v0-0-x (got ${JSON.stringify(err)})`);
    check((await page.getAttribute('#imageVersion', 'aria-invalid')) === 'true', 'the version field is not marked invalid');
    await page.fill('#imageVersion', 'v0-0-01');
    check((await page.textContent('#imageVersion-error')) === '', 'the error stayed after a valid version');
  });

  await step('fills the form: metadata, rows added and removed, a PNG with a preview', async () => {
    await page.selectOption('#imageCategory', { index: 1 });
    await page.selectOption('#tail', { index: 0 });
    await page.selectOption('#part', { index: 0 });
    await page.fill('#description', 'Uploaded by the Upload Board browser test.');
    await page.fill('#port', '8080');
    await page.selectOption('#environment', 'Testing');
    await page.fill('#commandOverride', '/app/run.sh');
    await page.fill('#entrypointOverride', '/app/entrypoint.sh');
    await page.fill('#workingDir', '/app');
    await page.click('#envVars-add');
    await page.keyboard.type('APP_MODE');
    await page.fill('#envVars input.v >> nth=0', 'e2e');
    await page.click('#envVars-add');
    check((await page.locator('#envVars .kv').count()) === 2, 'a second env var row did not appear');
    await page.click('#envVars .remove >> nth=1');
    check((await page.locator('#envVars .kv').count()) === 1, 'the removed row is still there');
    await page.click('#volumes-add');
    await page.fill('#volumes input.k >> nth=0', '/srv/data');
    await page.fill('#volumes input.v >> nth=0', '/data');
    await page.click('#imageLabels-add');
    await page.fill('#imageLabels input.k >> nth=0', 'team');
    await page.fill('#imageLabels input.v >> nth=0', 'board-e2e');
    await page.selectOption('#postAuthor', { index: 1 });
    await fillForm(page, { name: imageName, version: 'v0-0-01', file: { name: 'board-e2e.png', mimeType: 'image/png', buffer: makePng(64, 48) } });
    await page.waitForSelector('#preview-img:not([hidden])', { timeout: UI_TIMEOUT });
    await page.waitForFunction(() => document.getElementById('preview-img').naturalWidth === 64, null, { timeout: UI_TIMEOUT });
    await shot(page, '02-form.png');
  });

  const published = await step('uploads, follows the stages and sees "published" with the post link and manifests', async () => {
    await page.click('#submit');
    await page.waitForSelector('#job:not([hidden])', { timeout: JOB_TIMEOUT });
    check(Number(await page.getAttribute('#upload-progress', 'value')) === 100, 'the progress bar did not reach 100%');
    const { job } = await followJob(page, '', ['published', 'rejected', 'dead-lettered']);
    if (job.status !== 'published') {
      const reasons = await page.locator('#job-reasons-list li').allTextContents();
      const error = await page.textContent('#job-error');
      throw new StepFailure(`the PNG job ended ${job.status}: ${[...reasons, error].filter(Boolean).join('; ')}`);
    }
    for (const s of job.stages) {
      check(s.state === 'done', `stage ${s.stage} shows ${s.state} on a published job`);
      check(/\d\d:\d\d:\d\d/.test(s.line), `stage ${s.stage} shows no time (${JSON.stringify(s.line)})`);
    }
    await page.waitForSelector('#job-post:not([hidden])', { timeout: UI_TIMEOUT });
    const href = await page.getAttribute('#job-post-link', 'href');
    check(href && /^https?:\/\//.test(href), `the post link is not an http(s) link: ${href}`);
    check(await page.isVisible('#job-manifests'), 'no manifests are shown');
    const manifests = (await page.locator('#job-manifests pre').allTextContents()).join('\n');
    check(manifests.trim().length > 0, 'the manifests are empty');
    log(`  post ${href}; ${await page.locator('#job-manifests pre').count()} manifest block(s)`);
    await page.locator('#job-manifests details >> nth=0').evaluate((d) => { d.open = true; });
    await shot(page, '03-published.png');
    return { id: job.id, href };
  });

  const rejected = await step('uploads a truncated PNG and sees the rejection with its reasons', async () => {
    await fillForm(page, { name: imageName, version: 'v0-0-02', file: { name: 'broken.png', mimeType: 'image/png', buffer: makeBrokenPng(64, 48) } });
    await page.waitForSelector('#submit:not([disabled])', { timeout: UI_TIMEOUT });
    await page.click('#submit');
    const { job } = await followJob(page, published.id, ['published', 'rejected', 'dead-lettered']);
    check(job.status === 'rejected', `the truncated PNG ended ${job.status}, not rejected`);
    await page.waitForSelector('#job-reasons:not([hidden])', { timeout: UI_TIMEOUT });
    const reasons = await page.locator('#job-reasons-list li').allTextContents();
    check(reasons.length > 0 && reasons.every((r) => r.trim()), 'the rejection shows no reasons');
    check(job.stages.some((s) => s.state === 'rejected'), 'no stage shows the rejection');
    log(`  reasons: ${reasons.join(' | ')}`);
    await shot(page, '04-rejected.png');
    return { id: job.id };
  });

  await step('lists my jobs newest first and opens one', async () => {
    await page.click('#jobs-refresh');
    await page.waitForFunction(
      (ids) => ids.every((id) => document.querySelector(`#jobs-body tr[data-job="${id}"]`)),
      [published.id, rejected.id],
      { timeout: UI_TIMEOUT },
    );
    const order = await page.locator('#jobs-body tr').evaluateAll((rows) => rows.map((r) => r.dataset.job));
    check(order.indexOf(rejected.id) < order.indexOf(published.id), 'the newer job is not listed first');
    await page.click(`#jobs-body tr[data-job="${published.id}"] button`);
    await page.waitForFunction((id) => document.getElementById('job-id').textContent === id
      && document.getElementById('job-status').dataset.status === 'published', published.id, { timeout: UI_TIMEOUT });
    await shot(page, '05-jobs.png');
  });

  await step('shows the admin view only when the API lets this token read the dead letters', async () => {
    const res = await fetch(`${BASE}/api/v1/dlq`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    const visible = await page.isVisible('#admin');
    check(visible === (res.status === 200), `GET /api/v1/dlq answers ${res.status} but the admin view is ${visible ? 'shown' : 'hidden'}`);
  });

  await step('ran without script errors or CSP violations', async () => {
    check(pageErrors.length === 0, `script errors: ${pageErrors.join(' | ')}`);
    check(cspReports.length === 0, `CSP violations: ${cspReports.join(' | ')}`);
  });

  await step('signs out and forgets the token', async () => {
    await page.click('#sign-out');
    await page.waitForSelector('#signin:not([hidden])', { timeout: UI_TIMEOUT });
    const stored = await page.evaluate(() => sessionStorage.getItem('k8or.board.token'));
    check(stored === null, 'the token is still in sessionStorage after sign-out');
  });
}

async function main() {
  try {
    await preflight();
  } catch (e) {
    console.error(`[board e2e] cannot start: ${e.message}`);
    return 2;
  }
  // A fresh profile each run, removed afterwards: no cache, storage or service worker
  // from an earlier run can make the page pass.
  const profile = await mkdtemp(path.join(tmpdir(), 'board-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1360, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  currentPage = page;
  let code = 0;
  try {
    await run(page);
  } catch (e) {
    code = 1;
    await page.screenshot({ path: path.join(ARTIFACTS, 'failure.png'), fullPage: true }).catch(() => {});
    console.error(`[board e2e] FAILED: ${e.message ?? e} (screenshot: ${path.join(ARTIFACTS, 'failure.png')})`);
  } finally {
    await context.close().catch(() => {});
    await rm(profile, { recursive: true, force: true }).catch(() => {});
  }
  console.log(`board e2e: ${results.passed} passed, ${results.failed} failed`);
  return code;
}

process.exitCode = await main();
