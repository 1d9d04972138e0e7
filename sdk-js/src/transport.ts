// How batches are cut and when a failed one is tried again.

import type { Message } from './types';

/** Under the gateway's 500 KB request limit with room for the envelope. */
export const MAX_BATCH_BYTES = 450_000;
export const MAX_BATCH_COUNT = 100;
/**
 * Browsers allow 64 KiB of keepalive / sendBeacon bodies in flight per page; what does not fit
 * stays queued for the next visit.
 */
export const KEEPALIVE_BUDGET_BYTES = 60_000;
const MAX_RETRY_AFTER_MS = 3600_000;

/** The statuses analytics.js retries; any other 4xx means the batch can never succeed. */
export function isRetriable(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/** `Retry-After` in seconds or as an HTTP date, in milliseconds from `now`. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  const ms = /^\d+$/.test(value.trim()) ? Number(value) * 1000 : Date.parse(value) - now;
  return Number.isNaN(ms) ? undefined : Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/**
 * Full-jitter exponential backoff (1 s, 2 s, 4 s … up to `maxDelay`), never sooner than the
 * server's `Retry-After`. Jitter spreads the retries of many browsers after an outage.
 */
export function retryDelay(attempt: number, retryAfterMs: number | undefined, maxDelay: number, random = Math.random): number {
  const backoff = random() * Math.min(maxDelay, 1000 * 2 ** attempt);
  return Math.max(backoff, retryAfterMs ?? 0);
}

const encoder = new TextEncoder();

export function byteLength(text: string): number {
  return encoder.encode(text).length;
}

/** Consecutive groups of at most `maxCount` messages and about `maxBytes` of JSON each. */
export function chunk(messages: Message[], maxBytes: number, maxCount: number): Message[][] {
  const chunks: Message[][] = [];
  let current: Message[] = [];
  let bytes = 0;
  for (const message of messages) {
    const size = byteLength(JSON.stringify(message)) + 1;
    if (current.length && (current.length >= maxCount || bytes + size > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(message);
    bytes += size;
  }
  if (current.length) chunks.push(current);
  return chunks;
}
