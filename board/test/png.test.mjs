import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inflateSync } from 'node:zlib';
import { crc32, makePng, makeBrokenPng, readChunks } from '../e2e/png.mjs';

test('crc32 matches the standard check value', () => {
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  assert.equal(crc32(Buffer.from('IEND')), 0xae426082);
});

test('the generated PNG is well formed: chunks, CRCs, header and pixel data', () => {
  const png = makePng(64, 48);
  const chunks = readChunks(png);
  assert.deepEqual(chunks.map((c) => c.type), ['IHDR', 'IDAT', 'IEND']);
  assert.ok(chunks.every((c) => c.crcOk));
  const ihdr = chunks[0].data;
  assert.equal(ihdr.readUInt32BE(0), 64);
  assert.equal(ihdr.readUInt32BE(4), 48);
  assert.deepEqual([...ihdr.subarray(8)], [8, 2, 0, 0, 0]);
  const raw = inflateSync(chunks[1].data);
  assert.equal(raw.length, (64 * 3 + 1) * 48);
  for (let y = 0; y < 48; y++) assert.equal(raw[y * (64 * 3 + 1)], 0, 'filter type 0 on every row');
});

test('the broken PNG keeps a valid header but loses its image data', () => {
  const broken = makeBrokenPng(64, 48);
  assert.ok(broken.length < makePng(64, 48).length);
  assert.deepEqual(broken.subarray(0, 8), makePng().subarray(0, 8));
  assert.throws(() => readChunks(broken), /IDAT runs past the end/);
});
