import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  versionState, checkVersion, checkPort, emptyRows, addRow, removeRow, updateRow, rowsToPairs,
  rowProblems, validateForm, buildMetadata, buildSubmission, fileKind, formatSize, ENVIRONMENTS,
} from '../form.js';

test('version: the seed format v0-0-01 and what typing passes through', () => {
  for (const v of ['v0-0-01', 'v1-2-3', 'v10-20-300', ' v0-0-01 ']) assert.equal(versionState(v), 'valid', v);
  for (const v of ['v', 'v0', 'v0-', 'v0-0', 'v0-0-']) assert.equal(versionState(v), 'incomplete', v);
  for (const v of ['0-0-01', 'V0-0-01', 'v0-0-01-1', 'v0-a-01', 'v0--01', 'v0.0.1', 'version', 'v1234567-0-0'])
    assert.equal(versionState(v), 'invalid', v);
  assert.equal(versionState(''), 'empty');
});

test('version messages: quiet while a valid start is typed, firm on submit', () => {
  assert.equal(checkVersion('v0-0-', { typing: true }), null);
  assert.equal(checkVersion('', { typing: true }), null);
  assert.match(checkVersion('v0-0-'), /Finish the version/);
  assert.match(checkVersion(''), /Enter a version/);
  assert.match(checkVersion('v0-0-x', { typing: true }), /v0-0-01/);
  assert.match(checkVersion('v1234567-0-0', { typing: true }), /6 digits/);
  assert.equal(checkVersion('v0-0-01'), null);
});

test('port: optional, else a whole number from 1 to 65535', () => {
  for (const p of ['', ' ', undefined, '1', '80', '65535']) assert.equal(checkPort(p), null, String(p));
  for (const p of ['0', '65536', '-1', '8.5', 'http', '1e3']) assert.ok(checkPort(p), p);
});

test('rows: add, edit and remove keep stable ids and order', () => {
  let m = emptyRows();
  m = addRow(m);
  m = addRow(m, 'B', '2');
  m = addRow(m, 'C', '3');
  assert.deepEqual(m.rows.map((r) => r.id), [1, 2, 3]);
  m = updateRow(m, 1, 'key', 'A');
  m = updateRow(m, 1, 'value', '1');
  m = removeRow(m, 2);
  assert.deepEqual(m.rows.map((r) => [r.id, r.key, r.value]), [[1, 'A', '1'], [3, 'C', '3']]);
  m = addRow(m);
  assert.equal(m.rows.at(-1).id, 4, 'a removed id is never reused');
  assert.throws(() => updateRow(m, 1, 'id', 9));
});

test('rows: blank rows are dropped and values trimmed', () => {
  let m = addRow(addRow(addRow(emptyRows(), ' VAR1 ', ' value1 '), '', ''), '  ', ' ');
  assert.deepEqual(rowsToPairs(m), [{ key: 'VAR1', value: 'value1' }]);
});

test('rows: what Kubernetes and the API would refuse', () => {
  const env = addRow(addRow(addRow(emptyRows(), 'GOOD_1', 'x'), '1BAD', 'x'), '', 'orphan');
  const envProblems = rowProblems('envVars', env);
  assert.deepEqual(envProblems.map((p) => [p.id, p.field]), [[2, 'key'], [3, 'key']]);
  assert.match(envProblems[1].message, /Row 3/);

  const vol = addRow(addRow(emptyRows(), '/host/path', '/container/path'), 'host', 'container');
  assert.deepEqual(rowProblems('volumes', vol).map((p) => [p.id, p.field]), [[2, 'key'], [2, 'value']]);

  const labels = addRow(addRow(addRow(addRow(emptyRows(), 'tier', 'board'), 'k8or.com/team', ''), '-bad', 'x'), 'ok', 'bad value');
  assert.deepEqual(rowProblems('imageLabels', labels).map((p) => [p.id, p.field]), [[3, 'key'], [4, 'value']]);
  assert.equal(rowProblems('imageLabels', addRow(emptyRows(), 'Bad_Prefix!/x', 'y')).length, 1);
  const reserved = rowProblems('imageLabels', addRow(addRow(emptyRows(), 'app', 'x'), 'release', 'y'));
  assert.deepEqual(reserved.map((p) => p.id), [1, 2], 'app and release are the pipeline\'s own labels');
  assert.match(reserved[0].message, /set by the pipeline/);
  assert.equal(rowProblems('imageLabels', addRow(emptyRows(), 'a'.repeat(64), 'y')).length, 1);
});

const file = new File([new Uint8Array([137, 80, 78, 71])], 'trolls.png', { type: 'image/png' });

function form(over = {}) {
  return {
    icao: '1947', tail: '41-38116', part: '21117-1', imageCategory: 'Movies',
    imageName: 'Trolls World Tour (2020)', imageVersion: 'v0-0-01', description: 'Colourful trolls.',
    port: '80', environment: 'Testing', commandOverride: '/app/run.sh', entrypointOverride: '',
    workingDir: '/app', envVars: addRow(emptyRows(), 'VAR1', 'value1'), volumes: emptyRows(),
    imageLabels: addRow(emptyRows(), 'label1', 'value1'), username: 'jamesbond', firstName: 'James',
    lastName: 'Bond', email: '', postAuthor: '2', file, ...over,
  };
}

test('validateForm: a complete form passes, each broken field is named', () => {
  assert.deepEqual(validateForm(form()), {});
  const errors = validateForm(form({
    icao: ' ', imageName: '', imageVersion: 'v0-0', imageCategory: '', port: '0', environment: 'Prod',
    envVars: addRow(emptyRows(), '9X', 'y'), file: null,
  }));
  assert.deepEqual(Object.keys(errors).sort(),
    ['envVars', 'environment', 'file', 'icao', 'imageCategory', 'imageName', 'imageVersion', 'port']);
  assert.match(validateForm(form({ file: new File([], 'empty.png') })).file, /empty/);
  assert.deepEqual(ENVIRONMENTS, ['Development', 'Testing', 'Staging', 'Production']);
});

test('buildMetadata: the seed 6.1 payload with environment in both places', () => {
  const m = buildMetadata(form());
  assert.deepEqual(m.imageMetadata, {
    icao: '1947', tail: '41-38116', part: '21117-1', imageName: 'Trolls World Tour (2020)',
    imageVersion: 'v0-0-01', imageCategory: 'Movies', description: 'Colourful trolls.', port: 80,
    envVars: [{ key: 'VAR1', value: 'value1' }], volumes: [], imageLabels: [{ key: 'label1', value: 'value1' }],
    commandOverride: '/app/run.sh', workingDir: '/app',
  });
  assert.ok(!('entrypointOverride' in m.imageMetadata), 'an empty optional field is absent, not empty');
  assert.deepEqual(m.userMetadata, { username: 'jamesbond', firstName: 'James', lastName: 'Bond' });
  assert.deepEqual(m.postMetadata.postData, {
    post_title: 'Trolls World Tour (2020)', post_content: 'Colourful trolls.', post_excerpt: 'Trolls World Tour (2020)',
    category_name: 'Movies', post_author: 2,
  });
  assert.equal(m.postMetadata.environment, 'Testing');
  assert.deepEqual(m.postMetadata.post_meta.find((p) => p.meta_key === 'environment'), { meta_key: 'environment', meta_value: 'Testing' });
  assert.deepEqual(m.postMetadata.post_meta.map((p) => p.meta_key), ['environment', 'version', 'tail', 'part']);

  const bare = buildMetadata(form({ port: '', description: '', postAuthor: '', tail: '', part: '' }));
  assert.ok(!('port' in bare.imageMetadata));
  assert.equal(bare.postMetadata.postData.post_content, 'Trolls World Tour (2020)');
  assert.ok(!('post_author' in bare.postMetadata.postData));
  assert.deepEqual(bare.postMetadata.post_meta.map((p) => p.meta_key), ['environment', 'version']);
});

test('buildSubmission: multipart with the metadata part first, then the file', async () => {
  const body = buildSubmission(form());
  const names = [...body.keys()];
  assert.deepEqual(names, ['metadata', 'image']);
  assert.deepEqual(JSON.parse(body.get('metadata')), buildMetadata(form()));
  const image = body.get('image');
  assert.equal(image.name, 'trolls.png');
  assert.deepEqual(new Uint8Array(await image.arrayBuffer()), new Uint8Array([137, 80, 78, 71]));
  // Sent as the browser would: a real multipart body that a server can parse back.
  const parsed = await new Response(body).formData();
  assert.equal(JSON.parse(parsed.get('metadata')).imageMetadata.imageVersion, 'v0-0-01');
  assert.equal(parsed.get('image').size, 4);
});

test('fileKind and formatSize', () => {
  assert.equal(fileKind({ name: 'a.PNG', type: '' }), 'picture');
  assert.equal(fileKind({ name: 'x', type: 'image/webp' }), 'picture');
  assert.equal(fileKind({ name: 'image.tar', type: 'application/x-tar' }), 'archive');
  assert.equal(fileKind({ name: 'logo.svg', type: 'image/svg+xml' }), 'archive', 'no SVG preview');
  assert.equal(formatSize(1), '1 byte');
  assert.equal(formatSize(512), '512 bytes');
  assert.equal(formatSize(1536), '1.5 KiB');
  assert.equal(formatSize(2 * 1024 ** 3), '2.0 GiB');
  assert.equal(formatSize(-1), '');
});
