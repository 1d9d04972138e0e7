// The persistent queue: messages waiting for the gateway's 2xx.
//
// Invariants and format:
// - One localStorage entry per message, `inlet:q:{writeKey}:{messageId}` → the message's JSON.
//   Adding or removing a message touches only its own entry, so two tabs of the same site never
//   overwrite each other's queue (a shared array would lose one tab's write in a
//   read-modify-write race).
// - A message leaves storage only after the gateway answered 2xx for it (or rejected it
//   permanently). A page closed mid-request keeps it; the next page load sends it again and the
//   gateway drops the repeat by messageId.
// - At most `maxSize` messages; past that the oldest are dropped first, so a site offline for
//   days does not fill the origin's storage quota.
// - When storage is unavailable (private mode, quota full) messages live in memory only.

import { storageGet, storageKeys, storageRemove, storageSet } from './storage';
import type { Message } from './types';

export class PersistentQueue {
  private items = new Map<string, Message>();

  constructor(
    private prefix: string,
    private maxSize: number,
  ) {
    const stored: Message[] = [];
    for (const key of storageKeys(prefix)) {
      try {
        const message = JSON.parse(storageGet(key) ?? '') as Message;
        if (message.messageId && key === prefix + message.messageId) stored.push(message);
        else storageRemove(key);
      } catch {
        storageRemove(key);
      }
    }
    stored.sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
    for (const message of stored) this.items.set(message.messageId, message);
    this.trim();
  }

  get size(): number {
    return this.items.size;
  }

  /** Oldest first. */
  messages(): Message[] {
    return [...this.items.values()];
  }

  push(message: Message): void {
    this.items.set(message.messageId, message);
    storageSet(this.prefix + message.messageId, JSON.stringify(message));
    this.trim();
  }

  remove(messages: Message[]): void {
    for (const { messageId } of messages) {
      this.items.delete(messageId);
      storageRemove(this.prefix + messageId);
    }
  }

  clear(): void {
    this.remove(this.messages());
    // Entries another tab added since this one loaded.
    for (const key of storageKeys(this.prefix)) storageRemove(key);
  }

  private trim(): void {
    const excess = this.items.size - this.maxSize;
    if (excess > 0) this.remove(this.messages().slice(0, excess));
  }
}
