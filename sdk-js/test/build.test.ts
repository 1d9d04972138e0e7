// Checks on what `npm run build` produced (the test script builds first).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';

const dist = (file: string) => new URL(`../dist/${file}`, import.meta.url);

test('the script-tag build is at most 6 KB minified and gzipped', () => {
  const script = readFileSync(dist('inlet.min.js'));
  // zlib's default level, as web servers and CDNs compress.
  const gzipped = gzipSync(script).length;
  assert.ok(gzipped <= 6 * 1024, `dist/inlet.min.js is ${gzipped} bytes gzipped`);
});

test('ESM, CJS and type definitions export the client', async () => {
  const esm = await import(dist('inlet.mjs').href);
  assert.equal(typeof esm.Analytics, 'function');
  const cjs = createRequire(import.meta.url)(dist('inlet.cjs').pathname);
  assert.equal(typeof cjs.Analytics, 'function');
  assert.equal(cjs.LIBRARY.name, 'inlet.js');
  const types = readFileSync(dist('types/index.d.ts'), 'utf8');
  assert.match(types, /Analytics/);
  assert.ok(existsSync(dist('types/analytics.d.ts')));
});

test('the library version matches package.json', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  assert.match(readFileSync(dist('inlet.min.js'), 'utf8'), new RegExp(`"${pkg.version.replace(/\./g, '\\.')}"`));
});
