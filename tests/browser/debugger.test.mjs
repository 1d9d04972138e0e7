// Tracking plans and the live debugger, end to end: the unmodified @segment/analytics-node sends
// valid, invalid and unplanned events to three sources sharing one plan, in `observe`, `flag` and
// `block` mode; Debian's Chromium (playwright-core) watches them arrive on the admin listener's
// debugger page. Checked: the page refuses a wrong token; an event shows within a second of the
// SDK's flush; the type, event and user filters and pause work; an event's detail shows its
// violations; the metrics count each outcome and violation; after the stop, the lake (read with
// pyarrow) holds each event where its mode says: `events/` with its violations, or `blocked/`.
//
// Env: GATEWAY_BIN, SDK_PYTHON (a python with pyarrow), CHROMIUM (default /usr/bin/chromium),
// DEBUGGER_SCREENSHOT (optional: where to save a screenshot of the page).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Analytics } from '@segment/analytics-node';
import { chromium } from 'playwright-core';
import { startGateway, waitFor } from './gateway.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const TOKEN = 'debugger-test-operator-token';
const MODES = ['observe', 'flag', 'block'];
const keyOf = (mode) => `${mode}-write-key`;
const plan = join(here, 'plans', 'community.yaml');
const sources = `[${MODES.map(
  (mode) => `{name = "${mode}", write_key = "${keyOf(mode)}", tracking_plan = {file = "${plan}", mode = "${mode}"}}`,
).join(', ')}]`;

let gateway;
let browser;
const sent = {}; // mode → {messageId: expected violations ("kind property", sorted)}

/** The calls every source gets: three valid, three that break the plan. */
function calls(mode) {
  const id = (name) => `${mode}-${name}`;
  return [
    ['track', { messageId: id('valid'), userId: 'u-1', event: 'Post Viewed', properties: { post_id: 'p-1', board: 'dentists', read_seconds: 12 } }, []],
    ['track', { messageId: id('invalid'), userId: 'u-1', event: 'Post Viewed', properties: { post_id: 7, board: 'nurses' } }, ['enum /board', 'type /post_id']],
    ['track', { messageId: id('unplanned'), userId: 'u-2', event: 'Cart Viewed', properties: {} }, ['unplanned_event ']],
    ['identify', { messageId: id('traits-valid'), userId: 'u-1', traits: { profession: 'dentist' } }, []],
    ['identify', { messageId: id('traits-invalid'), userId: 'u-2', traits: { profession: 'nurse' } }, ['enum /profession']],
    ['page', { messageId: id('page'), anonymousId: 'a-1', name: 'Home', properties: { path: '/' } }, []],
  ];
}

async function send(mode, list) {
  const errors = [];
  const analytics = new Analytics({ writeKey: keyOf(mode), host: gateway.url, flushAt: 1, maxRetries: 2 });
  analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.message ?? err)));
  for (const [type, params] of list) analytics[type](params);
  await analytics.closeAndFlush({ timeout: 10_000 });
  assert.deepEqual(errors, []);
}

before(async () => {
  gateway = await startGateway(process.env.GATEWAY_BIN, 'unused', {
    sources,
    env: { INLET_ADMIN__TOKEN: TOKEN, INLET_LAKE__MAX_AGE_SECS: '1' },
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  gateway?.cleanup();
});

test('the debugger page refuses a wrong token, then shows events live, filtered, paused and in detail', async () => {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await page.goto(`${gateway.adminUrl}/debugger?source=flag`);
  await page.fill('#token', 'not-the-token');
  await page.press('#token', 'Enter');
  await waitFor('the refusal', async () => (await page.textContent('#status')).includes('Refused'));
  assert.match(await page.textContent('#status'), /401 invalid_operator_token/);
  assert.equal(await page.isVisible('#main'), false, 'no data without the token');

  await page.fill('#token', TOKEN);
  await page.press('#token', 'Enter');
  await page.waitForSelector('#main:not([hidden])');
  await waitFor('the stream', async () => (await page.textContent('#status')).includes('watching flag'));

  // One event first, timed from the SDK's flush to its row on the page.
  const first = calls('flag');
  await send('flag', first.slice(0, 1));
  const flushed = Date.now();
  await page.waitForSelector('tr[data-message-id="flag-valid"]', { timeout: 5000 });
  const shownAfter = Date.now() - flushed;
  console.error(`debugger: event shown ${shownAfter} ms after the SDK's flush`);
  assert.ok(shownAfter < 1000, `shown after ${shownAfter} ms`);

  await send('flag', first.slice(1));
  await page.waitForSelector('tr[data-message-id="flag-page"]');
  assert.equal(await page.locator('#events tbody tr').count(), 6);

  // Filters.
  await page.selectOption('#type', 'identify');
  assert.deepEqual(await rowIds(page), ['flag-traits-invalid', 'flag-traits-valid']);
  await page.selectOption('#type', '');
  await page.fill('#user', 'u-2');
  assert.deepEqual(await rowIds(page), ['flag-traits-invalid', 'flag-unplanned']);
  await page.fill('#user', '');
  await page.fill('#event', 'post');
  assert.deepEqual(await rowIds(page), ['flag-invalid', 'flag-valid']);
  await page.fill('#event', '');
  await page.check('#violations-only');
  assert.deepEqual(await rowIds(page), ['flag-invalid', 'flag-traits-invalid', 'flag-unplanned']);
  await page.uncheck('#violations-only');

  // Detail of an invalid event, opened from the keyboard.
  await page.focus('tr[data-message-id="flag-invalid"]');
  await page.keyboard.press('Enter');
  const detail = await page.textContent('#detail');
  assert.match(detail, /flag: 2 violations/);
  assert.match(detail, /type \/post_id/);
  assert.match(detail, /enum \/board/);

  // Paused, new events wait; resumed, they show.
  await page.keyboard.press('Escape');
  await page.locator('body').press('p');
  assert.equal(await page.getAttribute('#pause', 'aria-pressed'), 'true');
  await send('flag', [['track', { messageId: 'flag-while-paused', userId: 'u-3', event: 'Post Viewed', properties: { post_id: 'p-9', board: 'doctors' } }]]);
  await waitFor('the paused count', async () => (await page.textContent('#counts')).includes('paused: 1 new'));
  assert.equal(await page.locator('tr[data-message-id="flag-while-paused"]').count(), 0);
  await page.click('#pause');
  await page.waitForSelector('tr[data-message-id="flag-while-paused"]');

  // Rates: the counters are read every 5 seconds; once two readings are in, the table shows them.
  const accepted = () => page.textContent('#rates tbody tr:nth-child(2) td:nth-child(3)');
  await waitFor('the rates', async () => /[1-9]/.test(await accepted()), 25_000);
  assert.match(await page.textContent('#rates tbody tr:nth-child(2) td:nth-child(2)'), /^flag$/);

  if (process.env.DEBUGGER_SCREENSHOT) {
    await page.click('tr[data-message-id="flag-invalid"]');
    await page.screenshot({ path: process.env.DEBUGGER_SCREENSHOT });
  }
  await page.close();
});

test('each mode stores, counts and blocks as it says', async () => {
  for (const mode of ['observe', 'block']) await send(mode, calls(mode));
  for (const mode of MODES) {
    sent[mode] = Object.fromEntries(calls(mode).map(([, params, expected]) => [params.messageId, expected]));
  }
  sent.flag['flag-while-paused'] = [];

  // Metrics: outcomes per source, violations by event and kind.
  const metrics = await gateway.metrics();
  const value = (name, labels) => {
    const line = metrics.split('\n').find((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };
  for (const mode of MODES) {
    const valid = mode === 'flag' ? 4 : 3;
    assert.equal(value('inlet_tracking_plan_events_total', { source: mode, outcome: 'valid' }), valid, `${mode} valid`);
    const broken = mode === 'block' ? 'blocked' : 'violating';
    assert.equal(value('inlet_tracking_plan_events_total', { source: mode, outcome: broken }), 3, `${mode} ${broken}`);
    for (const [event, kind] of [['Post Viewed', 'type'], ['Post Viewed', 'enum'], ['(unplanned)', 'unplanned_event'], ['(identify)', 'enum']]) {
      assert.equal(value('inlet_tracking_plan_violations_total', { source: mode, event, kind }), 1, `${mode} ${event} ${kind}`);
    }
  }

  // After a clean stop the lake has everything: blocked events in `blocked/`, the rest in `events/`.
  await gateway.stopAndDump();
  const lake = JSON.parse(execFileSync(process.env.SDK_PYTHON ?? 'python3', [join(here, 'verify_plans.py'), join(gateway.dir, 'data', 'lake')]).toString());
  for (const mode of MODES) {
    const expectedEvents = {};
    const expectedBlocked = {};
    for (const [id, violations] of Object.entries(sent[mode])) {
      if (mode === 'block' && violations.length) expectedBlocked[id] = violations;
      else expectedEvents[id] = violations;
    }
    assert.deepEqual(lake.events[mode] ?? {}, expectedEvents, `${mode}: events/`);
    assert.deepEqual(lake.blocked[mode] ?? {}, expectedBlocked, `${mode}: blocked/`);
  }
});

/** The message ids of the rows shown, sorted (the SDK sends its requests side by side). */
async function rowIds(page) {
  const ids = await page.$$eval('#events tbody tr', (rows) => rows.map((r) => r.dataset.messageId));
  return ids.sort();
}
