import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { Analytics } from '../src/analytics';
import { installBrowser, settle, type Browser } from './fake-browser';

const HOST = 'https://events.example.com';
const T0 = Date.parse('2026-11-24T10:00:00.000Z');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let browser: Browser;

beforeEach(() => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  browser = installBrowser();
});
afterEach(() => mock.timers.reset());

async function advance(ms: number): Promise<void> {
  await settle();
  mock.timers.tick(ms);
  await settle();
}

function sentIds(from = 0): string[] {
  return browser.requests.slice(from).flatMap((r) => r.body.batch.map((m) => m.messageId));
}

test('a track call is sent to /v1/batch as text/plain with the envelope and the browser context', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: `${HOST}/` });
  await analytics.track('Article Read', { words: 900 });
  await advance(1000);
  assert.equal(browser.requests.length, 1);
  const [request] = browser.requests;
  assert.equal(request.url, `${HOST}/v1/batch`);
  assert.equal(request.contentType, 'text/plain');
  assert.equal(request.body.writeKey, 'key-1');
  assert.equal(request.body.sentAt, new Date(T0 + 1000).toISOString());
  const [message] = request.body.batch;
  assert.match(message.messageId, UUID);
  assert.equal(message.type, 'track');
  assert.equal(message.event, 'Article Read');
  assert.deepEqual(message.properties, { words: 900 });
  assert.equal(message.timestamp, new Date(T0).toISOString());
  assert.equal(message.anonymousId, analytics.user().anonymousId());
  assert.deepEqual(message.context.library, { name: 'inlet.js', version: '0.1.0' });
  assert.deepEqual(message.context.page, {
    path: '/articles/1',
    referrer: 'https://search.example.org/',
    search: '?utm_source=news&utm_campaign=launch&ref=x',
    title: 'Article 1',
    url: 'https://www.example.com/articles/1?utm_source=news&utm_campaign=launch&ref=x',
  });
  assert.deepEqual(message.context.campaign, { source: 'news', name: 'launch' });
  assert.equal(message.context.userAgent, 'FakeBrowser/1.0');
  assert.equal(message.context.locale, 'fr-FR');
  assert.equal(typeof message.context.timezone, 'string');
  assert.deepEqual(message.context.screen, { width: 1440, height: 900, density: 2 });
  assert.equal(browser.storage.length - 1, 0, 'only the anonymous id is left in storage once delivered');
});

test('the anonymous id is kept where analytics.js keeps it and survives a reload', async () => {
  const first = new Analytics().load('key-1', { apiHost: HOST });
  const id = first.user().anonymousId();
  assert.match(id, UUID);
  assert.equal(browser.cookies.values.get('ajs_anonymous_id'), id);
  assert.equal(browser.cookies.domains.get('ajs_anonymous_id'), 'example.com');
  assert.equal(browser.storage.getItem('ajs_anonymous_id'), JSON.stringify(id));
  const reloaded = installBrowser({ storage: browser.storage, cookies: browser.cookies });
  assert.equal(new Analytics().load('key-1', { apiHost: HOST }).user().anonymousId(), id);
  // analytics.js's older JSON-encoded cookie is read as the same id.
  reloaded.cookies.values.set('ajs_anonymous_id', encodeURIComponent('"legacy-id"'));
  assert.equal(new Analytics().load('key-1', { apiHost: HOST }).user().anonymousId(), 'legacy-id');
});

test('identify sets the user for later calls; reset forgets it and starts a new anonymous id', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: HOST, flushAt: 100 });
  const anonymous = analytics.user().anonymousId();
  await analytics.identify('user-7', { plan: 'pro' });
  await analytics.identify({ email: 'a@example.com' });
  await analytics.track('Clicked');
  analytics.reset();
  await analytics.track('After Logout');
  await analytics.group(42, { name: 'Clinic' });
  await analytics.alias('user-8');
  await advance(1000);
  const [a, b, c, d, e, f] = browser.requests[0].body.batch;
  assert.deepEqual([a.type, a.userId, a.traits], ['identify', 'user-7', { plan: 'pro' }]);
  assert.deepEqual([b.userId, b.traits], ['user-7', { plan: 'pro', email: 'a@example.com' }]);
  assert.deepEqual([c.userId, c.anonymousId], ['user-7', anonymous]);
  assert.equal(d.userId, undefined);
  assert.notEqual(d.anonymousId, anonymous);
  assert.deepEqual([e.type, e.groupId, e.traits], ['group', '42', { name: 'Clinic' }]);
  assert.deepEqual([f.type, f.userId, f.previousId], ['alias', 'user-8', d.anonymousId]);
});

test('per-call options: timestamp, context, integrations and anonymousId', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: HOST });
  const done = mock.fn();
  await analytics.track(
    'Imported',
    { n: 1 },
    {
      timestamp: new Date('2026-11-01T08:00:00Z'),
      context: { ip: '0.0.0.0', app: { name: 'web' } },
      integrations: { Amplitude: false },
      anonymousId: 'device-9',
    },
    done,
  );
  await analytics.page('Docs', 'Install', { section: 2 });
  await analytics.page(null, 'Home');
  await advance(1000);
  assert.equal(done.mock.callCount(), 1);
  const [track, docs, home] = browser.requests[0].body.batch;
  assert.equal(track.timestamp, '2026-11-01T08:00:00.000Z');
  assert.equal(track.anonymousId, 'device-9');
  assert.deepEqual(track.integrations, { Amplitude: false });
  assert.equal(track.context.ip, '0.0.0.0');
  assert.deepEqual(track.context.app, { name: 'web' });
  assert.equal(track.context.userAgent, 'FakeBrowser/1.0', 'caller context is merged over, not instead of');
  assert.deepEqual([docs.category, docs.name, docs.properties.section, docs.properties.path], ['Docs', 'Install', 2, '/articles/1']);
  assert.deepEqual([home.category, home.name, home.properties.name], [undefined, 'Home', 'Home']);
});

test('a 503 with Retry-After is retried no sooner than it asks, with the same messageIds', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: HOST });
  browser.respond = () => ({ status: 503, headers: { 'Retry-After': '7' } });
  await analytics.track('A');
  await analytics.track('B');
  await advance(1000);
  assert.equal(browser.requests.length, 1);
  browser.respond = () => ({ status: 200 });
  await advance(6900);
  assert.equal(browser.requests.length, 1, 'not before Retry-After');
  await advance(200);
  assert.equal(browser.requests.length, 2);
  assert.deepEqual(sentIds(1), sentIds(0).slice(0, 2));
  await advance(60_000);
  assert.equal(browser.requests.length, 2, 'nothing left to send');
});

test('network errors back off exponentially with jitter; a 2xx resets the backoff', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: HOST, maxRetryDelay: 8000 });
  browser.respond = () => 'network-error';
  await analytics.track('A');
  await advance(1000);
  for (let attempt = 0; attempt < 6; attempt++) {
    const before = browser.requests.length;
    await advance(Math.min(8000, 1000 * 2 ** attempt));
    assert.equal(browser.requests.length, before + 1, `retry ${attempt + 1} within its backoff window`);
  }
  browser.respond = () => ({ status: 200 });
  await advance(8000);
  const count = browser.requests.length;
  await analytics.track('B');
  await advance(1000);
  assert.equal(browser.requests.length, count + 1, 'after a success the next event goes out at the flush interval');
});

test('a permanent 4xx drops the batch; a 413 splits it until it fits', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: HOST, flushAt: 100 });
  const warn = mock.method(console, 'warn', () => {});
  browser.respond = (r) => (r.body.batch.length > 2 ? { status: 413 } : { status: 200 });
  for (let i = 0; i < 5; i++) await analytics.track(`E${i}`);
  await advance(1000);
  const delivered = browser.requests.filter((r) => r.body.batch.length <= 2).flatMap((r) => r.body.batch.map((m) => m.event));
  assert.deepEqual(delivered, ['E0', 'E1', 'E2', 'E3', 'E4']);
  browser.respond = () => ({ status: 400 });
  await analytics.track('Bad');
  await advance(1000);
  await advance(600_000);
  assert.equal(browser.requests.at(-1)!.body.batch[0].event, 'Bad');
  assert.equal(browser.requests.filter((r) => r.body.batch[0].event === 'Bad').length, 1, 'not retried');
  assert.equal(warn.mock.callCount(), 1);
  warn.mock.restore();
});

test('events queued while the gateway is unreachable survive a reload and are sent once by the next page', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: HOST });
  browser.respond = () => 'network-error';
  for (let i = 0; i < 3; i++) await analytics.track(`Offline ${i}`);
  await advance(1000);
  const queued = sentIds();
  assert.equal(queued.length, 3);
  // Reload: a new page with the same storage; the gateway is back.
  mock.timers.reset();
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 + 60_000 });
  browser = installBrowser({ storage: browser.storage, cookies: browser.cookies });
  const next = new Analytics().load('key-1', { apiHost: HOST });
  await next.track('Online');
  await advance(1000);
  assert.deepEqual(sentIds().slice(0, 3), queued, 'the stored events first, in order');
  assert.equal(sentIds().length, 4);
  await advance(60_000);
  assert.equal(sentIds().length, 4, 'each sent once');
});

test('offline, nothing is attempted; the online event sends at once, backoff forgotten', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: HOST });
  browser.respond = () => 'network-error';
  await analytics.track('A');
  await advance(1000);
  await advance(2000);
  const attempts = browser.requests.length;
  assert.ok(attempts >= 1);
  (navigator as { onLine: boolean }).onLine = false;
  await analytics.track('B');
  await advance(600_000);
  assert.equal(browser.requests.length, attempts, 'no request while offline');
  (navigator as { onLine: boolean }).onLine = true;
  browser.respond = () => ({ status: 200 });
  dispatchEvent(new Event('online'));
  await advance(0);
  assert.deepEqual(browser.requests.at(-1)!.body.batch.map((m) => m.event), ['A', 'B']);
});

test('hiding the page sends everything queued with keepalive, including what is in flight', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: HOST, flushAt: 1, flushInterval: 60_000 });
  let answerFirst: (answer: { status: number }) => void = () => {};
  browser.respond = () => new Promise((resolve) => (answerFirst = resolve));
  await analytics.track('Read');
  await advance(0);
  assert.equal(browser.requests.length, 1, 'the regular request is in flight');
  browser.respond = () => ({ status: 200 });
  await analytics.track('Scrolled');
  browser.hide();
  browser.hide();
  await settle();
  const hidden = browser.requests.slice(1);
  assert.equal(hidden.length, 1, 'visibilitychange and pagehide together send once');
  assert.equal(hidden[0].keepalive, true);
  assert.deepEqual(hidden[0].body.batch.map((m) => m.event), ['Read', 'Scrolled']);
  answerFirst({ status: 200 });
  await advance(60_000);
  assert.equal(browser.requests.length, 2, 'the 2xx answers removed both from the queue');
});

test('opting out clears the queue and stops sending until opting in', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: HOST });
  browser.respond = () => 'network-error';
  await analytics.track('Before');
  await advance(1000);
  analytics.optOut();
  assert.equal([...browser.storage.data.keys()].filter((k) => k.startsWith('inlet:q:')).length, 0);
  browser.respond = () => ({ status: 200 });
  await analytics.track('While Out');
  await advance(600_000);
  assert.equal(browser.requests.length, 1, 'only the attempt before opting out');
  assert.equal(new Analytics().load('key-1', { apiHost: HOST }).isOptedOut(), true, 'persisted');
  analytics.optIn();
  await analytics.track('After');
  await advance(1000);
  assert.deepEqual(browser.requests.at(-1)!.body.batch.map((m) => m.event), ['After']);
});

test('consent from load and setConsent goes with each later event as context.consent.categoryPreferences', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: HOST, consent: { Analytics: true, Advertising: false } });
  await analytics.track('Under First Choice');
  analytics.setConsent({ Analytics: false, Advertising: false });
  await analytics.track('Under Second Choice');
  await analytics.track('Overridden', {}, { context: { consent: { categoryPreferences: { Analytics: true } } } });
  await advance(1000);
  const sent = browser.requests.flatMap((r) => r.body.batch);
  assert.deepEqual(
    sent.map((m) => [m.event, (m.context.consent as { categoryPreferences: unknown }).categoryPreferences]),
    [
      ['Under First Choice', { Analytics: true, Advertising: false }],
      ['Under Second Choice', { Analytics: false, Advertising: false }],
      ['Overridden', { Analytics: true }],
    ],
  );
  assert.throws(() => analytics.setConsent({ Analytics: 'yes' } as never), /setConsent\(\) takes/);
});

test('without consent set, events carry no consent object', async () => {
  const analytics = new Analytics().load('key-1', { apiHost: HOST });
  await analytics.track('Plain');
  await advance(1000);
  assert.equal(browser.requests[0].body.batch[0].context.consent, undefined);
});

test('load without apiHost is a clear error', () => {
  assert.throws(() => new Analytics().load('key-1'), /apiHost/);
});
