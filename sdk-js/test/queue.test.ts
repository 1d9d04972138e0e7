import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { PersistentQueue } from '../src/queue';
import type { Message } from '../src/types';
import { installBrowser, type Browser } from './fake-browser';

let browser: Browser;
beforeEach(() => {
  browser = installBrowser();
});

function message(id: string, minute: number): Message {
  return {
    type: 'track',
    event: 'E',
    messageId: id,
    anonymousId: 'a',
    timestamp: `2026-11-24T10:${String(minute).padStart(2, '0')}:00.000Z`,
    context: {},
  };
}

test('messages persist one entry each and come back oldest first after a reload', () => {
  const queue = new PersistentQueue('inlet:q:k:', 10);
  queue.push(message('b', 2));
  queue.push(message('a', 1));
  queue.push(message('c', 3));
  queue.remove([message('c', 3)]);
  assert.deepEqual([...browser.storage.data.keys()].sort(), ['inlet:q:k:a', 'inlet:q:k:b']);
  const reloaded = new PersistentQueue('inlet:q:k:', 10);
  assert.deepEqual(reloaded.messages().map((m) => m.messageId), ['a', 'b']);
  assert.equal(new PersistentQueue('inlet:q:other:', 10).size, 0, 'queues are per write key');
});

test('two tabs adding at the same time keep both messages', () => {
  const tabA = new PersistentQueue('inlet:q:k:', 10);
  const tabB = new PersistentQueue('inlet:q:k:', 10);
  tabA.push(message('from-a', 1));
  tabB.push(message('from-b', 2));
  assert.deepEqual(new PersistentQueue('inlet:q:k:', 10).messages().map((m) => m.messageId), ['from-a', 'from-b']);
  tabA.clear();
  assert.equal(new PersistentQueue('inlet:q:k:', 10).size, 0, 'clear also removes other tabs’ entries');
});

test('over the size limit the oldest are dropped, in memory and in storage', () => {
  const queue = new PersistentQueue('inlet:q:k:', 3);
  for (let i = 0; i < 5; i++) queue.push(message(`m${i}`, i));
  assert.deepEqual(queue.messages().map((m) => m.messageId), ['m2', 'm3', 'm4']);
  assert.equal(browser.storage.length, 3);
});

test('corrupt or misfiled entries are discarded, not fatal', () => {
  browser.storage.setItem('inlet:q:k:x', '{not json');
  browser.storage.setItem('inlet:q:k:y', JSON.stringify(message('z', 1)));
  browser.storage.setItem('inlet:q:k:ok', JSON.stringify(message('ok', 1)));
  const queue = new PersistentQueue('inlet:q:k:', 10);
  assert.deepEqual(queue.messages().map((m) => m.messageId), ['ok']);
  assert.deepEqual([...browser.storage.data.keys()], ['inlet:q:k:ok']);
});

test('without usable storage the queue still works in memory', () => {
  browser.storage.broken = true;
  const queue = new PersistentQueue('inlet:q:k:', 10);
  queue.push(message('a', 1));
  assert.equal(queue.size, 1);
  queue.remove([message('a', 1)]);
  assert.equal(queue.size, 0);
});
