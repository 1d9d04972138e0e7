// Real browser, real gateway: Debian's Chromium (headless, driven by playwright-core) loads
// pages from a loopback site; Inlet's sdk-js and the unmodified @segment/analytics-next send to
// a running `inlet`. Scenarios: every call type with the browser's context; offline → reload →
// back online; the last events delivered on page hide; a 503 with Retry-After. Each scenario
// waits on the gateway's own count of stored events; the last test stops the gateway and checks
// its write-ahead log: every event of every scenario stored exactly once.
//
// Env: GATEWAY_BIN (the built `inlet`), CHROMIUM (default /usr/bin/chromium).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startGateway, waitFor } from './gateway.mjs';
import { startLink } from './link.mjs';
import { pageUrl, startSite } from './site.mjs';

const WRITE_KEY = 'browser-test-key';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let gateway;
let site;
let browser;
/** Checks run on the write-ahead log at the end: scenario → (its stored events) → void. */
const checks = new Map();

before(async () => {
  gateway = await startGateway(process.env.GATEWAY_BIN, WRITE_KEY);
  site = await startSite(gateway.url, WRITE_KEY);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    // No sandbox as root; no background traffic to hosts this machine cannot reach. Pages served
    // from memory (offline tests) count as public, and Local Network Access would then block
    // their requests to the loopback gateway: a rule about this test's addresses, not the SDKs.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-features=LocalNetworkAccessChecks',
    ],
  });
});

after(async () => {
  await browser?.close();
  await site?.close();
  gateway?.cleanup();
});

/** Every request the page sends to the gateway (at `url`): path, time, the messages and the status. */
function watchGateway(context, url = gateway.url) {
  const requests = [];
  context.on('request', (request) => {
    if (!request.url().startsWith(url) || request.method() !== 'POST') return;
    const body = JSON.parse(request.postData() ?? '{}');
    const entry = { path: new URL(request.url()).pathname, at: Date.now(), messages: body.batch ?? [body], status: undefined };
    requests.push(entry);
    request.response().then((response) => (entry.status = response?.status()), () => {});
  });
  return requests;
}

/** Serves the site from memory, so pages load while the browser is offline. */
async function serveSiteOffline(context) {
  await context.route(`${site.url}/**`, (route) => {
    const { status = 200, type, body } = site.respond(route.request().url());
    return route.fulfill({ status, contentType: type, body });
  });
}

async function tracked(page, scenario, count, event = 'Article Read') {
  await page.evaluate(
    ([scenario, count, event]) => {
      for (let seq = 0; seq < count; seq++) window.analytics.track(event, { scenario, seq });
    },
    [scenario, count, event],
  );
}

function expectOnce(scenario, count) {
  checks.set(scenario, (events) => {
    const seqs = events.map((e) => e.properties.seq).sort((a, b) => a - b);
    assert.deepEqual(seqs, [...Array(count).keys()], `${scenario}: each event stored exactly once`);
  });
}

async function sdkLoaded(page) {
  await page.waitForFunction(() => typeof window.analytics?.user === 'function');
}

async function analyticsNextLoaded(page) {
  await page.evaluate(() => window.analytics.ready());
}

const grown = (before, by) => async () => (await gateway.accepted()) >= before + by;

test('sdk-js: the snippet queues calls until the script loads; every call type arrives with the browser context', async () => {
  const context = await browser.newContext({ locale: 'de-DE', timezoneId: 'Europe/Berlin' });
  const page = await context.newPage();
  const before = await gateway.accepted();
  // The script is held back 800 ms, so these calls are made on the snippet's stub.
  await page.goto(pageUrl(site, '/sdk.html', { delay: 800 }, '&utm_source=newsletter&utm_campaign=fall'), {
    waitUntil: 'domcontentloaded',
  });
  const calledAt = await page.evaluate(() => {
    if (!Array.isArray(window.analytics)) throw new Error('the script loaded before the test could queue calls');
    window.analytics.identify('user-1', { role: 'dentist' });
    window.analytics.track('Signed Up', { scenario: 'snippet', seq: 0 });
    return Date.now();
  });
  await sdkLoaded(page);
  const loadedAt = Date.now();
  await page.evaluate(() => {
    window.analytics.track('Article Read', { scenario: 'snippet', seq: 1 });
    window.analytics.group('clinic-9', { name: 'Clinic Nine' });
  });
  await waitFor('5 events stored', grown(before, 5));
  const [cookie] = (await context.cookies()).filter((c) => c.name === 'ajs_anonymous_id');
  const anonymousId = await page.evaluate(() => window.analytics.user().anonymousId());
  assert.equal(cookie.value, anonymousId, 'the anonymous id is in the first-party cookie');
  await context.close();

  checks.set('snippet', (events, all) => {
    const mine = all.filter((e) => e.anonymousId === anonymousId);
    assert.deepEqual(mine.map((e) => e.type).sort(), ['group', 'identify', 'page', 'track', 'track']);
    for (const e of mine) {
      assert.match(e.messageId, UUID);
      assert.deepEqual(e.context.library, { name: 'inlet.js', version: '0.1.0' });
      assert.match(e.context.userAgent, /Chrome/);
      assert.equal(e.context.locale, 'de-DE');
      assert.equal(e.context.timezone, 'Europe/Berlin');
      assert.deepEqual(e.context.campaign, { source: 'newsletter', name: 'fall' });
      assert.equal(e.context.page.path, '/sdk.html');
      assert.match(e.context.page.url, /utm_campaign=fall/);
      assert.ok(e.context.screen.width > 0 && e.context.screen.height > 0);
      if (e.type !== 'page') assert.equal(e.userId, 'user-1', `${e.type} carries the identified user`);
    }
    const early = mine.find((e) => e.event === 'Signed Up');
    const queuedFor = loadedAt - Date.parse(early.originalTimestamp);
    assert.ok(Math.abs(Date.parse(early.originalTimestamp) - calledAt) < 200, 'dated when the page made the call');
    assert.ok(queuedFor >= 500, `the call waited for the script (${queuedFor} ms)`);
    assert.deepEqual(mine.find((e) => e.type === 'identify').traits, { role: 'dentist' });
    assert.equal(mine.find((e) => e.type === 'group').groupId, 'clinic-9');
    assert.equal(events.length, 2);
  });
});

test('sdk-js: offline → reload → back online delivers the queued events once', async (t) => {
  const context = await browser.newContext();
  await serveSiteOffline(context);
  const link = await startLink(gateway.url);
  t.after(() => link.close());
  const requests = watchGateway(context, link.url);
  const page = await context.newPage();
  let before = await gateway.accepted();
  await page.goto(pageUrl(site, '/sdk.html', { gateway: link.url }));
  await sdkLoaded(page);
  await waitFor('the page call', grown(before, 1));

  // Offline: navigator.onLine is false and the gateway cannot be reached (Chromium's offline
  // emulation does not cut loopback requests of a context with routes, so the link is cut).
  link.cut();
  await context.setOffline(true);
  before = await gateway.accepted();
  await tracked(page, 'offline', 5);
  await sleep(1500); // past the flush interval: the SDK holds its queue while offline
  await page.reload(); // still offline: the page comes from memory, the queue from localStorage
  await sdkLoaded(page);
  await sleep(1500);
  const queued = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('inlet:q:')).length);
  assert.equal(queued, 6, 'the 5 events and the new page call wait in localStorage');
  assert.equal(await gateway.accepted(), before, 'nothing reached the gateway while offline');

  link.restore();
  await context.setOffline(false);
  await waitFor('the queued events', grown(before, 6));
  await waitFor('the queue to empty', () =>
    page.evaluate(() => Object.keys(localStorage).every((k) => !k.startsWith('inlet:q:'))),
  );
  await sleep(1500);
  assert.equal(await gateway.accepted(), before + 6);
  const delivered = requests.filter((r) => r.status === 200).flatMap((r) => r.messages.map((m) => m.messageId));
  assert.equal(new Set(delivered).size, delivered.length, 'no message was delivered twice');
  await context.close();
  expectOnce('offline', 5);
});

test('sdk-js: the last events are delivered when the page is left, and when the tab is closed', async () => {
  const context = await browser.newContext();
  const options = { load: { flushAt: 100, flushInterval: 600_000 } };
  for (const [scenario, leave] of [
    ['hide-navigate', (page) => page.goto(`${site.url}/elsewhere.html`)],
    ['hide-close', (page) => page.close({ runBeforeUnload: true })],
  ]) {
    const page = await context.newPage();
    const loading = await gateway.accepted();
    await page.goto(pageUrl(site, '/sdk.html', options));
    await sdkLoaded(page);
    await waitFor('the page call, sent as the script loads', grown(loading, 1));
    const before = await gateway.accepted();
    await tracked(page, scenario, 3);
    await sleep(300);
    assert.equal(await gateway.accepted(), before, 'nothing sent before the page is left');
    await leave(page);
    await waitFor(`${scenario}: the 3 events`, grown(before, 3));
    expectOnce(scenario, 3);
  }
  await context.close();
});

test('sdk-js: a 503 with Retry-After is retried after the wait, with the same messages', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const attempts = [];
  await context.route(`${gateway.url}/v1/batch`, (route) => {
    const body = JSON.parse(route.request().postData());
    attempts.push({ at: Date.now(), ids: body.batch.map((m) => m.messageId) });
    if (attempts.length > 1) return route.continue();
    return route.fulfill({
      status: 503,
      headers: {
        'Access-Control-Allow-Origin': site.url,
        'Access-Control-Expose-Headers': 'Retry-After',
        'Retry-After': '2',
      },
      contentType: 'application/json',
      body: JSON.stringify({ code: 'storage_unavailable', message: 'try again later' }),
    });
  });
  const before = await gateway.accepted();
  await page.goto(pageUrl(site, '/sdk.html'));
  await sdkLoaded(page);
  await tracked(page, 'retry-after', 3);
  await waitFor('the retried events', grown(before, 4));
  assert.ok(attempts.length >= 2);
  const waited = attempts[1].at - attempts[0].at;
  assert.ok(waited >= 1900, `retried after ${waited} ms, Retry-After asked for 2 s`);
  assert.ok(attempts[0].ids.every((id) => attempts[1].ids.includes(id)), 'the same messages, not new ones');
  await context.close();
  expectOnce('retry-after', 3);
});

test('analytics-next (unmodified): settings from the gateway, standard mode posts /v1/t, /p, /i, /g, /a', async () => {
  const context = await browser.newContext();
  const requests = watchGateway(context);
  const settings = [];
  context.on('request', (r) => r.url().includes('/settings') && settings.push(r.url()));
  const page = await context.newPage();
  const before = await gateway.accepted();
  await page.goto(pageUrl(site, '/ajs.html'));
  await page.evaluate(async () => {
    await window.analytics.identify('user-2', { role: 'hygienist' });
    await window.analytics.track('Article Read', { scenario: 'ajs-standard', seq: 0 });
    await window.analytics.page('Docs', 'Install');
    await window.analytics.group('clinic-3', { name: 'Clinic Three' });
    await window.analytics.alias('user-2b');
  });
  await waitFor('5 events stored', grown(before, 5));
  assert.deepEqual(settings, [`${gateway.url}/v1/projects/${WRITE_KEY}/settings`]);
  assert.deepEqual([...new Set(requests.map((r) => r.path))].sort(), ['/v1/a', '/v1/g', '/v1/i', '/v1/p', '/v1/t']);
  const anonymousId = await page.evaluate(async () => (await window.analytics.user()).anonymousId());
  await context.close();
  checks.set('ajs-standard', (events, all) => {
    const mine = all.filter((e) => e.anonymousId === anonymousId);
    assert.deepEqual(mine.map((e) => e.type).sort(), ['alias', 'group', 'identify', 'page', 'track']);
    assert.equal(mine.find((e) => e.type === 'page').name, 'Install');
    assert.equal(mine.find((e) => e.type === 'alias').previousId, 'user-2');
    for (const e of mine) assert.equal(e.context.library.name, 'analytics.js');
    assert.equal(events.length, 1);
  });
});

test('analytics.js script-tag build (unmodified, self-hosted) behind a Segment-style snippet with _cdn = the gateway', async () => {
  const context = await browser.newContext();
  const requests = watchGateway(context);
  const page = await context.newPage();
  const before = await gateway.accepted();
  await page.goto(`${site.url}/segment-snippet.html`);
  await page.waitForFunction(() => !Array.isArray(window.analytics) && typeof window.analytics.track === 'function');
  await tracked(page, 'ajs-standalone', 2);
  await waitFor('the page call and 2 events', grown(before, 3));
  assert.deepEqual([...new Set(requests.map((r) => r.path))].sort(), ['/v1/p', '/v1/t']);
  await context.close();
  expectOnce('ajs-standalone', 2);
});

const batching = (timeout) => ({
  load: { integrations: { 'Segment.io': { deliveryStrategy: { strategy: 'batching', config: { size: 100, timeout } } } } },
});

test('analytics-next (unmodified): the batching strategy posts /v1/b', async () => {
  const context = await browser.newContext();
  const requests = watchGateway(context);
  const page = await context.newPage();
  const before = await gateway.accepted();
  await page.goto(pageUrl(site, '/ajs.html', batching(500)));
  await analyticsNextLoaded(page);
  await tracked(page, 'ajs-batching', 10);
  await waitFor('10 events stored', grown(before, 10));
  assert.deepEqual([...new Set(requests.map((r) => r.path))], ['/v1/b']);
  assert.ok(requests.some((r) => r.messages.length > 1), 'several events in one request');
  await context.close();
  expectOnce('ajs-batching', 10);
});

test('analytics-next (unmodified): offline → reload → back online delivers the queued events once', async () => {
  const context = await browser.newContext();
  await serveSiteOffline(context);
  const page = await context.newPage();
  await page.goto(pageUrl(site, '/ajs.html'));
  await analyticsNextLoaded(page);
  await context.setOffline(true);
  const before = await gateway.accepted();
  await tracked(page, 'ajs-offline', 5);
  await sleep(1000);
  // analytics-next saves its queue on pagehide; the reloaded page cannot fetch its settings
  // while offline, so delivery resumes on the first page loaded back online.
  await page.reload();
  await sleep(1000);
  assert.equal(await gateway.accepted(), before, 'nothing reached the gateway while offline');
  await context.setOffline(false);
  await page.reload();
  await waitFor('the queued events', grown(before, 5));
  await sleep(1500);
  await context.close();
  expectOnce('ajs-offline', 5);
});

test('analytics-next (unmodified): batching delivers the last events when the page is left', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(pageUrl(site, '/ajs.html', batching(600_000)));
  await analyticsNextLoaded(page);
  const before = await gateway.accepted();
  await tracked(page, 'ajs-hide', 3);
  await sleep(300);
  assert.equal(await gateway.accepted(), before, 'nothing sent before the page is left');
  await page.goto(`${site.url}/elsewhere.html`);
  await waitFor('the 3 events', grown(before, 3));
  await context.close();
  expectOnce('ajs-hide', 3);
});

test('analytics-next (unmodified): a 503 is retried with backoff; a 429 waits for its Retry-After', async () => {
  // analytics-next 1.84 reads Retry-After on 429 only; other retried statuses use its backoff.
  const context = await browser.newContext();
  const page = await context.newPage();
  const attempts = [];
  await context.route(`${gateway.url}/v1/t`, (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    attempts.push({ at: Date.now(), id: JSON.parse(route.request().postData()).messageId });
    const status = [503, 429][attempts.length - 1];
    if (!status) return route.continue();
    return route.fulfill({
      status,
      headers: {
        'Access-Control-Allow-Origin': site.url,
        'Access-Control-Expose-Headers': 'Retry-After',
        'Retry-After': '2',
      },
      contentType: 'application/json',
      body: JSON.stringify({ code: 'overloaded', message: 'try again later' }),
    });
  });
  await page.goto(pageUrl(site, '/ajs.html'));
  await analyticsNextLoaded(page);
  const before = await gateway.accepted();
  await tracked(page, 'ajs-retry-after', 1);
  await waitFor('the retried event', grown(before, 1));
  assert.equal(attempts.length, 3, '503, then 429, then stored');
  assert.ok(attempts.every((a) => a.id === attempts[0].id), 'the same message each time');
  const waited = attempts[2].at - attempts[1].at;
  assert.ok(waited >= 1900, `retried ${waited} ms after the 429, Retry-After asked for 2 s`);
  await context.close();
  expectOnce('ajs-retry-after', 1);
});

test('the write-ahead log holds every event of every scenario exactly once', async () => {
  const stored = (await gateway.stopAndDump()).map((record) => record.event);
  for (const [scenario, check] of checks) {
    check(
      stored.filter((e) => e.properties?.scenario === scenario),
      stored,
    );
  }
  const ids = stored.map((e) => e.messageId);
  assert.equal(new Set(ids).size, ids.length);
  console.log(`browser e2e: ${stored.length} events stored, ${checks.size} scenarios checked`);
});
