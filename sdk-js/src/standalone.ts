// The script-tag build: replaces the snippet's stub with the client and replays, in order and
// dated when they were made, the calls the page made before this script arrived.

import { Analytics } from './analytics';

interface SnippetStub extends Array<[string, number, ...unknown[]]> {
  _loadArgs?: Parameters<Analytics['load']>;
}

const w = window as unknown as { analytics?: SnippetStub | Analytics };
const stub = w.analytics;
if (!(stub instanceof Analytics)) {
  const analytics = new Analytics();
  w.analytics = analytics;
  if (Array.isArray(stub)) {
    if (stub._loadArgs) analytics.load(...stub._loadArgs);
    for (const [method, time, ...args] of stub) analytics.replay(method, time, args);
  }
}
