import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  nextPollDelay, jobFingerprint, isFinal, stageView, stageLine, duration, postLink, safeHref,
  manifestBlocks, otherOutputs, rejectionReasons, errorText, fieldErrors, fieldFor, listFrom,
  criteriaFrom, usersFrom, tokenClaims, newestFirst, jobTitle, dlqEntry, dlqEntries, redrivenCount, statusWords, POLL,
} from '../jobs.js';

test('polling: 250 ms growing to 2 s, back to 250 ms on a change, stopped when final', () => {
  const schedule = [];
  let d = null;
  for (let i = 0; i < 6; i++) {
    d = nextPollDelay(d, 'validating', false);
    schedule.push(d);
  }
  assert.deepEqual(schedule, [250, 500, 1000, 2000, 2000, 2000]);
  assert.equal(nextPollDelay(2000, 'persisting', true), 250, 'a change polls soon again');
  assert.equal(nextPollDelay(500, 'published', true), null);
  assert.equal(nextPollDelay(500, 'rejected', false), null);
  assert.equal(nextPollDelay(250, 'dead-lettered', true), POLL.deadLettered, 'dead letters are polled slowly');
  assert.ok(POLL.deadLettered > POLL.max);
  assert.ok(isFinal('published') && isFinal('rejected') && !isFinal('dead-lettered') && !isFinal('retrying'));
});

test('a job fingerprint changes with status, stage, attempt and history', () => {
  const job = { status: 'validating', stage: 'validate', attempt: 1, history: [{}, {}] };
  const fp = jobFingerprint(job);
  assert.equal(jobFingerprint({ ...job }), fp);
  for (const change of [{ status: 'retrying' }, { stage: 'kustomize' }, { attempt: 2 }, { history: [{}, {}, {}] }])
    assert.notEqual(jobFingerprint({ ...job, ...change }), fp, JSON.stringify(change));
});

const at = (s) => `2025-02-18T08:49:${String(s).padStart(2, '0')}.000Z`;
const h = (stage, status, s, extra = {}) => ({ stage, status, PID: 'p', at: at(s), error: null, ...extra });

test('stages: a queued job', () => {
  const v = stageView({ status: 'queued', stage: 'validate', history: [h('validate', 'queued', 0)] });
  assert.deepEqual(v.map((s) => s.state), ['queued', 'pending', 'pending', 'pending']);
  assert.equal(v[0].at, at(0));
  assert.equal(v[1].at, null);
});

test('stages: a job half way, with a retry on the current stage', () => {
  const job = {
    status: 'retrying', stage: 'persist-metadata', attempt: 2, error: 'throttled',
    history: [
      h('validate', 'queued', 0), h('validate', 'validating', 1),
      h('persist-metadata', 'persisting', 3, { attempt: 1 }),
      h('persist-metadata', 'retrying', 4, { attempt: 1, error: 'throttled (retry in 1000 ms)' }),
      h('persist-metadata', 'persisting', 6, { attempt: 2 }),
      h('persist-metadata', 'retrying', 7, { attempt: 2, error: 'throttled (retry in 2000 ms)' }),
    ],
  };
  const v = stageView(job);
  assert.deepEqual(v.map((s) => s.state), ['done', 'retrying', 'pending', 'pending']);
  assert.equal(v[0].at, at(1), 'a stage starts when it first ran');
  assert.equal(v[0].endedAt, at(3), 'and ends when the next stage began');
  assert.equal(v[1].at, at(3));
  assert.equal(v[1].error, 'throttled (retry in 2000 ms)');
  assert.equal(v[1].attempt, 2);
  assert.match(stageLine(v[1]), /^retrying · at \d\d:\d\d:\d\d · attempt 2$/);
  assert.match(stageLine(v[0]), /^done · at \d\d:\d\d:\d\d · took 2\.0 s$/);
  assert.equal(stageLine(v[3]), 'not started');
});

test('stages: published shows every stage done with its time', () => {
  const job = {
    status: 'published', stage: 'publish',
    history: [
      h('validate', 'queued', 0), h('validate', 'validating', 1), h('persist-metadata', 'persisting', 2),
      h('kustomize', 'kustomizing', 3), h('publish', 'publishing', 4), h('publish', 'published', 6),
    ],
  };
  const v = stageView(job);
  assert.deepEqual(v.map((s) => s.state), ['done', 'done', 'done', 'done']);
  assert.deepEqual(v.map((s) => s.at), [at(1), at(2), at(3), at(4)]);
  assert.equal(v[3].endedAt, at(6));
  assert.ok(v.every((s) => s.error === null));
});

test('stages: rejected and dead-lettered stop on their stage', () => {
  const rejected = stageView({
    status: 'rejected', stage: 'validate', error: 'a; b', reasons: ['a', 'b'],
    history: [h('validate', 'queued', 0), h('validate', 'validating', 1), h('validate', 'rejected', 2, { error: 'a; b' })],
  });
  assert.deepEqual(rejected.map((s) => s.state), ['rejected', 'pending', 'pending', 'pending']);
  assert.equal(rejected[0].endedAt, at(2));
  assert.equal(rejected[0].error, 'a; b');

  const dead = stageView({
    status: 'dead-lettered', stage: 'kustomize', attempt: 5,
    history: [h('validate', 'validating', 0), h('persist-metadata', 'persisting', 1), h('kustomize', 'kustomizing', 2),
      h('kustomize', 'dead-lettered', 9, { error: 'bucket unreachable', attempt: 5 })],
  });
  assert.deepEqual(dead.map((s) => s.state), ['done', 'done', 'dead-lettered', 'pending']);
  assert.equal(dead[2].error, 'bucket unreachable');
  assert.equal(dead[2].attempt, 5);
});

test('stages: a re-driven job waits queued on its stage', () => {
  const v = stageView({
    status: 'queued', stage: 'kustomize',
    history: [h('validate', 'validating', 0), h('persist-metadata', 'persisting', 1), h('kustomize', 'kustomizing', 2),
      h('kustomize', 'dead-lettered', 3, { error: 'x' }), h('kustomize', 'queued', 4)],
  });
  assert.deepEqual(v.map((s) => s.state), ['done', 'done', 'queued', 'pending']);
  assert.equal(v[2].error, null, 'the old error is gone once re-driven');
});

test('stages: an empty or odd job renders four pending stages', () => {
  assert.deepEqual(stageView({}).map((s) => s.state), ['pending', 'pending', 'pending', 'pending']);
  assert.deepEqual(stageView(null).map((s) => s.stage), ['validate', 'persist-metadata', 'kustomize', 'publish']);
});

test('durations in words', () => {
  assert.equal(duration(at(1), at(1)), '0 ms');
  assert.equal(duration('2025-02-18T08:49:01.000Z', '2025-02-18T08:49:01.340Z'), '340 ms');
  assert.equal(duration(at(1), at(3)), '2.0 s');
  assert.equal(duration('2025-02-18T08:00:00Z', '2025-02-18T08:03:05Z'), '3 min 5 s');
  assert.equal(duration(at(3), at(1)), '');
  assert.equal(duration(null, at(1)), '');
});

test('post link: only http(s), from whichever field the API fills', () => {
  const base = 'http://127.0.0.1:8080/';
  assert.deepEqual(postLink({ post: { id: 7, url: 'http://vp.example/trolls', slug: 'trolls' } }, base),
    { href: 'http://vp.example/trolls', id: 7, slug: 'trolls' });
  assert.equal(postLink({ post: { ID: 7, guid: '/?p=7' } }, base).href, 'http://127.0.0.1:8080/?p=7');
  assert.equal(postLink({ postUrl: 'https://vp.example/x' }, base).href, 'https://vp.example/x');
  assert.deepEqual(postLink({ post: { id: 9, url: 'javascript:alert(1)' } }, base), { href: null, id: 9, slug: null });
  assert.equal(postLink({}, base), null);
  assert.equal(safeHref('data:text/html,x', base), null);
  assert.equal(safeHref('', base), null);
  assert.equal(safeHref(42, base), null);
});

test('manifests: text, file maps, resource lists and kustomization objects', () => {
  assert.deepEqual(manifestBlocks({ kustomization: 'resources: []' }), [{ title: 'kustomization', text: 'resources: []' }]);
  assert.deepEqual(manifestBlocks({ manifests: { 'deployment.yaml': 'kind: Deployment' } }),
    [{ title: 'deployment.yaml', text: 'kind: Deployment' }]);
  const list = manifestBlocks({ manifests: [{ kind: 'Service', metadata: { name: 'svc' } }, { name: 'cm.yaml', content: 'kind: ConfigMap' }] });
  assert.equal(list[0].title, 'Service svc');
  assert.match(list[0].text, /"kind": "Service"/);
  assert.deepEqual(list[1], { title: 'cm.yaml', text: 'kind: ConfigMap' });
  const k = manifestBlocks({ kustomization: { prefix: 'k/abc/', files: { 'kustomization.yaml': 'resources: []' } } });
  assert.deepEqual(k, [{ title: 'kustomization.yaml', text: 'resources: []' }]);
  assert.deepEqual(manifestBlocks({ kustomization: { bucket: 'b', current: true } }), [{ title: 'kustomization', text: '{\n  "bucket": "b",\n  "current": true\n}' }]);
  assert.deepEqual(manifestBlocks({ post: {} }), []);
  assert.deepEqual(otherOutputs({ manifests: 'x', post: {}, stored: 'a/b.png', size: 3 }),
    [{ name: 'stored', text: 'a/b.png' }, { name: 'size', text: '3' }]);
});

test('outputs as the pipeline writes them: kustomization files, YAML and resources, post, validation', () => {
  const outputs = {
    kustomization: {
      bucket: 'app-image-1206-bkt-k8d-aws', current: true, prefix: 'kustomize/UID/v0-0-01',
      files: ['kustomize/UID/v0-0-01/kustomization.yaml', 'kustomize/UID/v0-0-01/deployment.yaml'],
      manifests: [{ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'trolls-v0-0-01-deployment' } }],
      yaml: { 'deployment.yaml': 'kind: Deployment\n', 'kustomization.yaml': 'kind: Kustomization\n' },
    },
    post: { category: 'Games', guid: 'g', guidUrl: 'http://orbit.k8or.com/viewport/?guid=g', postId: 1,
      postName: 'trolls-v0-0-01-testing', url: 'http://orbit.k8or.com/viewport/trolls-v0-0-01-testing/' },
    validation: { kind: 'picture', format: 'png', width: 64, height: 48, archive: null },
  };
  assert.deepEqual(manifestBlocks(outputs), [
    { title: 'kustomization.yaml', text: 'kind: Kustomization\n' },
    { title: 'deployment.yaml', text: 'kind: Deployment\n' },
  ], 'the YAML files, kustomization.yaml first, not the same resources again as JSON');
  assert.deepEqual(postLink(outputs, 'http://127.0.0.1/'),
    { href: 'http://orbit.k8or.com/viewport/trolls-v0-0-01-testing/', id: 1, slug: 'trolls-v0-0-01-testing' });
  assert.deepEqual(otherOutputs(outputs).map((o) => o.name), [
    'kustomization.bucket', 'kustomization.current', 'kustomization.prefix', 'kustomization.files',
    'validation.kind', 'validation.format', 'validation.width', 'validation.height',
  ]);
  assert.equal(otherOutputs(outputs)[3].text, 'kustomize/UID/v0-0-01/kustomization.yaml\nkustomize/UID/v0-0-01/deployment.yaml');
  assert.deepEqual(manifestBlocks({ kustomization: { manifests: outputs.kustomization.manifests } }).map((b) => b.title),
    ['Deployment trolls-v0-0-01-deployment']);
});

test('rejection reasons: every failed check, else the error', () => {
  assert.deepEqual(rejectionReasons({ reasons: ['too wide', 'not a PNG'], error: 'too wide; not a PNG' }), ['too wide', 'not a PNG']);
  assert.deepEqual(rejectionReasons({ reasons: [], error: 'bad' }), ['bad']);
  assert.deepEqual(rejectionReasons({}), []);
});

test('API errors: the error shape, field errors and where they belong', () => {
  assert.equal(errorText({ PID: 'p', status: 'error', code: 'bad-version', message: 'bad version' }, 422), 'bad version (bad-version)');
  assert.equal(errorText(null, 0), 'The server could not be reached.');
  assert.equal(errorText(null, 503), 'The server answered 503.');
  assert.equal(errorText('<html>gateway</html>', 502), '<html>gateway</html>');
  assert.deepEqual(fieldErrors({ errors: [{ field: 'imageMetadata.port', message: 'out of range' }, 'loose', { field: 'x' }] }),
    [{ field: 'imageMetadata.port', message: 'out of range' }, { field: '', message: 'loose' }]);
  assert.deepEqual(fieldErrors({ fields: [{ path: '/imageMetadata/imageVersion', reason: 'r' }] }), [{ field: '/imageMetadata/imageVersion', message: 'r' }]);
  assert.deepEqual(fieldErrors({ message: 'x' }), []);
  const cases = {
    'imageMetadata.imageVersion': 'imageVersion', '/imageMetadata/imageVersion': 'imageVersion',
    'imageMetadata.envVars[1].key': 'envVars', 'imageMetadata.Part': 'part', 'userMetadata.username': 'username',
    'postMetadata.post_meta[0].meta_value': 'environment', 'postMetadata.environment': 'environment',
    image: 'file', 'postMetadata.postData.post_author': 'postAuthor', 'something.else': null, '': null,
  };
  for (const [path, field] of Object.entries(cases)) assert.equal(fieldFor(path), field, path);
});

test('answers: lists, static data, users', () => {
  assert.deepEqual(listFrom([1]), [1]);
  assert.deepEqual(listFrom({ jobs: [2], next: 'c' }), [2]);
  assert.deepEqual(listFrom({ items: [3] }), [3]);
  assert.deepEqual(listFrom(null), []);
  const seed = { PID: 'c8fms03-c8bms06-e10', filter_criteria: { ICAOCode: '1947', aircraftTailNumber: ['41-38116'], imageCategory: ['Games', 'Movies'], partNumber: ['21117-1'] } };
  assert.deepEqual(criteriaFrom(seed), { icao: '1947', tails: ['41-38116'], categories: ['Games', 'Movies'], parts: ['21117-1'] });
  assert.deepEqual(criteriaFrom(seed.filter_criteria), criteriaFrom(seed));
  assert.deepEqual(criteriaFrom({}), { icao: null, tails: [], categories: [], parts: [] });
  assert.deepEqual(usersFrom({ user_data: [{ ID: 2, display_name: 'James Bond' }] }), [{ id: 2, name: 'James Bond' }]);
  assert.deepEqual(usersFrom([{ id: 3, displayName: 'Madame Coco' }, {}]), [{ id: 3, name: 'Madame Coco' }]);
});

test('token claims are read for display only, and junk is no claim', () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const token = `${b64({ alg: 'HS256' })}.${b64({ sub: 'jamesbond', role: 'user', exp: 2000000000, note: 'Zoë' })}.sig`;
  assert.deepEqual(tokenClaims(token), { username: 'jamesbond', role: 'user', exp: 2000000000 });
  assert.equal(tokenClaims(`x.${b64({ username: 'madamecoco' })}.y`).username, 'madamecoco');
  for (const junk of ['', 'abc', 'a.!!!.c', null, 'a.bm90IGpzb24.c']) assert.equal(tokenClaims(junk), null, String(junk));
});

test('job lists: newest first, titles, dead-letter entries', () => {
  const jobs = [
    { jobId: 'a', createdAt: '2025-02-18T08:00:00Z' },
    { jobId: 'c', history: [{ at: '2025-02-18T10:00:00Z' }] },
    { jobId: 'b', createdAt: '2025-02-18T09:00:00Z' },
  ];
  assert.deepEqual(newestFirst(jobs).map((j) => j.jobId), ['c', 'b', 'a']);
  assert.equal(jobTitle({ request: { imageMetadata: { imageName: 'Trolls', imageVersion: 'v0-0-01' } } }), 'Trolls v0-0-01');
  assert.equal(jobTitle({ jobId: 'j1' }), 'j1');
  assert.equal(jobTitle({ jobId: 'j1', image: { fileName: 'trolls.png' } }), 'trolls.png');
  assert.equal(jobTitle({ imageName: 'Trolls', imageVersion: 'v0-0-02' }), 'Trolls v0-0-02');
  assert.deepEqual(dlqEntry({ jobId: 'j', stage: 'publish', receiveCount: 5, lastError: 'down' }),
    { jobId: 'j', messageId: null, stage: 'publish', receives: 5, error: 'down', title: 'j' });
  assert.equal(dlqEntry({ job: { jobId: 'k', stage: 'kustomize', attempt: 3, error: 'e' } }).stage, 'kustomize');
  assert.equal(statusWords('dead-lettered').includes('re-drive'), true);
  assert.equal(statusWords('odd'), 'odd');
});

test('dead letters: per-stage answers flatten with their stage; re-drive counts', () => {
  const body = {
    stages: [
      { stage: 'validate', deadLetterQueue: 'q-dlq', depth: 0, jobs: [] },
      { stage: 'kustomize', deadLetterQueue: 'k-dlq', depth: 2, jobs: [
        { messageId: 'm1', jobId: 'j1', imageUID: 'u', username: 'jamesbond', receiveCount: 5, sentAtMs: 1, status: 'dead-lettered', error: 'bucket down' },
        { messageId: 'm2', jobId: null, receiveCount: 5, error: null },
      ] },
    ],
  };
  const entries = dlqEntries(body);
  assert.deepEqual(entries.map((e) => [e.jobId, e.messageId, e.stage, e.receives, e.error]),
    [['j1', 'm1', 'kustomize', 5, 'bucket down'], ['', 'm2', 'kustomize', 5, null]]);
  assert.deepEqual(dlqEntries({ items: [{ jobId: 'x', stage: 'publish' }] }).map((e) => e.stage), ['publish']);
  assert.deepEqual(dlqEntries(null), []);
  assert.equal(redrivenCount({ dryRun: false, redriven: [{}, {}], skipped: 0 }), 2);
  assert.equal(redrivenCount({ redriven: 3 }), 3);
  assert.equal(redrivenCount({}), null);
});
