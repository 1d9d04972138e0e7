import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mock, test } from 'node:test';
import { installBrowser, settle } from './fake-browser';

const T0 = Date.parse('2026-11-24T10:00:00.000Z');

test('calls made before the script loads are replayed in order, dated when they were made', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  const browser = installBrowser();
  // The snippet exactly as built for pasting, with its placeholders filled in.
  const snippet = readFileSync(new URL('../dist/snippet.min.js', import.meta.url), 'utf8')
    .replace('https://cdn.example.com/inlet.min.js', 'https://cdn.test/inlet.min.js')
    .replace('YOUR_WRITE_KEY', 'snippet-key')
    .replace('https://events.example.com', 'https://events.test');
  new Function(snippet)();
  assert.deepEqual(browser.head.appended.map((s) => s.src), ['https://cdn.test/inlet.min.js']);
  const g = globalThis as any;
  mock.timers.tick(100);
  g.analytics.track('Before Load', { n: 1 });
  mock.timers.tick(100);
  g.analytics.identify('user-1', { role: 'dentist' });
  const ready = mock.fn();
  g.analytics.ready(ready);
  mock.timers.tick(500);

  const { Analytics } = await import('../src/analytics');
  await import('../src/standalone');
  assert.ok(g.analytics instanceof Analytics, 'the stub is replaced by the client');
  assert.equal(ready.mock.callCount(), 1);
  await settle();
  mock.timers.tick(1000);
  await settle();
  assert.equal(browser.requests.length, 1);
  const { body } = browser.requests[0];
  assert.equal(body.writeKey, 'snippet-key');
  assert.equal(browser.requests[0].url, 'https://events.test/v1/batch');
  assert.deepEqual(
    body.batch.map((m) => [m.type, m.timestamp, m.userId]),
    [
      ['page', new Date(T0).toISOString(), undefined],
      ['track', new Date(T0 + 100).toISOString(), undefined],
      ['identify', new Date(T0 + 200).toISOString(), 'user-1'],
    ],
  );
  mock.timers.reset();
});
