// Static checks of the served files: what the CSP would block, what would put server
// text in as HTML, what would reach another origin, and inputs without labels.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The files the API embeds and serves; anything else in board/ is tooling. */
export const SERVED = ['index.html', 'style.css', 'app.js', 'api.js', 'form.js', 'jobs.js'];

const read = (f) => readFile(path.join(dir, f), 'utf8');

test('the served set is exactly the page files at the top of board/', async () => {
  const top = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  const page = top.filter((f) => /\.(html|css|js)$/.test(f));
  assert.deepEqual(page.sort(), [...SERVED].sort());
});

test('no inline script, style or event handler (the CSP allows none)', async () => {
  const html = await read('index.html');
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'inline <script>');
  assert.doesNotMatch(html, /<style/i, 'inline <style>');
  assert.doesNotMatch(html, /\sstyle=/i, 'style attribute');
  assert.doesNotMatch(html, /\son[a-z]+=/i, 'event handler attribute');
  assert.doesNotMatch(html, /javascript:/i);
  for (const f of SERVED.filter((f) => f.endsWith('.js'))) {
    const js = await read(f);
    assert.doesNotMatch(js, /setAttribute\(\s*['"]style['"]/, `${f} sets a style attribute`);
    assert.doesNotMatch(js, /\.style\.|cssText/, `${f} writes inline styles`);
  }
});

test('the page carries the served CSP itself too (all but frame-ancestors, which a meta cannot set)', async () => {
  const html = await read('index.html');
  const meta = html.match(/<meta http-equiv="Content-Security-Policy" content="([^"]+)">/)?.[1];
  assert.equal(meta, "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'");
});

test('no HTML sinks or eval: every server or user text goes in as text', async () => {
  for (const f of SERVED.filter((f) => f.endsWith('.js'))) {
    const js = await read(f);
    for (const sink of [/innerHTML/, /outerHTML/, /insertAdjacentHTML/, /document\.write/, /\beval\(/, /new Function\(/, /createContextualFragment/])
      assert.doesNotMatch(js, sink, `${f} uses ${sink}`);
  }
});

test('every asset and call is local (no CDN, no other origin)', async () => {
  for (const f of SERVED) {
    const text = await read(f);
    const urls = text.match(/\b(?:src|href)=["'](?!#|\/|data:,)[^"']*["']/g) ?? [];
    assert.deepEqual(urls, [], `${f} refers to ${urls}`);
    assert.doesNotMatch(text, /@import|url\(\s*['"]?https?:/i, `${f} loads a remote stylesheet or font`);
    if (f.endsWith('.js')) assert.doesNotMatch(text, /fetch\(\s*['"`]https?:|open\(\s*['"]POST['"],\s*['"`]https?:/, `${f} calls another origin`);
  }
  const html = await read('index.html');
  assert.match(html, /<script type="module" src="\/board\/app.js"><\/script>/);
  assert.match(html, /<link rel="stylesheet" href="\/board\/style.css">/);
});

test('every form control in the page has a label, and every described-by target exists', async () => {
  const html = await read('index.html');
  const ids = new Set([...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]));
  const labelled = new Set([...html.matchAll(/<label[^>]*\sfor="([^"]+)"/g)].map((m) => m[1]));
  const controls = [...html.matchAll(/<(input|select|textarea)\b([^>]*)>/g)];
  assert.ok(controls.length > 15);
  for (const [, tag, attrs] of controls) {
    const id = attrs.match(/\sid="([^"]+)"/)?.[1];
    assert.ok(id && labelled.has(id), `<${tag}${attrs}> has no <label for>`);
  }
  for (const [, list] of html.matchAll(/aria-describedby="([^"]+)"/g)) {
    for (const id of list.split(/\s+/)) assert.ok(ids.has(id), `aria-describedby names missing #${id}`);
  }
  for (const [, id] of html.matchAll(/<p class="error" id="([^"]+)"/g)) {
    assert.match(html, new RegExp(`id="${id}" aria-live="polite"`), `#${id} is not announced`);
  }
});
