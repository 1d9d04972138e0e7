import assert from 'node:assert/strict';
import { test } from 'node:test';
import { campaignFrom, landingCampaign } from '../src/context';
import { chunk, isRetriable, parseRetryAfter, retryDelay } from '../src/transport';
import type { Message } from '../src/types';
import { installBrowser } from './fake-browser';

test('retried statuses are the ones analytics.js retries', () => {
  const retried = [408, 429, 500, 502, 503, 504, 599].filter(isRetriable);
  assert.deepEqual(retried, [408, 429, 500, 502, 503, 504, 599]);
  assert.deepEqual([400, 401, 403, 404, 413, 501, 505].filter(isRetriable), []);
});

test('Retry-After in seconds or as an HTTP date, capped at an hour; garbage is ignored', () => {
  const now = Date.parse('2026-11-24T10:00:00Z');
  assert.equal(parseRetryAfter('7', now), 7000);
  assert.equal(parseRetryAfter('Tue, 24 Nov 2026 10:00:30 GMT', now), 30_000);
  assert.equal(parseRetryAfter('Tue, 24 Nov 2026 09:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter('86400', now), 3600_000);
  assert.equal(parseRetryAfter('soon', now), undefined);
  assert.equal(parseRetryAfter(null, now), undefined);
});

test('backoff is full jitter under 2^attempt seconds, capped, never under Retry-After', () => {
  assert.equal(retryDelay(3, undefined, 300_000, () => 0.999), 7992);
  assert.equal(retryDelay(3, undefined, 300_000, () => 0), 0);
  assert.equal(retryDelay(20, undefined, 300_000, () => 1), 300_000);
  assert.equal(retryDelay(0, 5000, 300_000, () => 0.5), 5000);
});

test('batches respect both the count and the byte limits and keep order', () => {
  const messages = Array.from({ length: 7 }, (_, i) => ({ messageId: `m${i}`, pad: 'x'.repeat(100) }) as unknown as Message);
  const one = JSON.stringify(messages[0]).length + 1;
  assert.deepEqual(chunk(messages, 10_000, 3).map((c) => c.length), [3, 3, 1]);
  assert.deepEqual(chunk(messages, one * 2, 100).map((c) => c.length), [2, 2, 2, 1]);
  assert.deepEqual(chunk(messages, 1, 100).map((c) => c.length), [1, 1, 1, 1, 1, 1, 1], 'an oversized message still goes alone');
  assert.deepEqual(chunk(messages, 10_000, 100).flat().map((m) => m.messageId), messages.map((m) => m.messageId));
});

test('UTM parameters map to the spec’s campaign names; the landing campaign lasts the session', () => {
  assert.deepEqual(campaignFrom('?utm_source=nl&utm_medium=email&utm_campaign=fall&utm_term=t&utm_content=c&utm_custom=x&q=1'), {
    source: 'nl',
    medium: 'email',
    name: 'fall',
    term: 't',
    content: 'c',
    custom: 'x',
  });
  assert.equal(campaignFrom('?q=1'), undefined);
  const browser = installBrowser({ url: 'https://app.example.com/?utm_source=ads' });
  assert.deepEqual(landingCampaign(), { source: 'ads' });
  browser.setUrl('https://app.example.com/next');
  assert.deepEqual(landingCampaign(), { source: 'ads' }, 'later pages keep the landing campaign');
  browser.setUrl('https://app.example.com/?utm_source=mail');
  assert.deepEqual(landingCampaign(), { source: 'mail' }, 'a new campaign link replaces it');
});
