// Who the visitor is, kept under analytics.js's own cookie and localStorage names so a site that
// switches between analytics.js and this SDK keeps its visitors' ids.

import { cookieGet, cookieSet, storageGet, storageRemove, storageSet } from './storage';
import { uuid } from './uuid';
import type { Traits } from './types';

const ANONYMOUS_ID = 'ajs_anonymous_id';
const USER_ID = 'ajs_user_id';
const USER_TRAITS = 'ajs_user_traits';
const GROUP_ID = 'ajs_group_id';
const GROUP_TRAITS = 'ajs_group_properties';

/** analytics.js writes JSON-encoded strings to localStorage (and older versions to cookies). */
function decode(raw: string | null): string | null {
  if (raw === null || raw === '') return null;
  try {
    const value: unknown = JSON.parse(raw);
    if (typeof value === 'string') return value;
    if (typeof value === 'number') return String(value);
    return null;
  } catch {
    return raw;
  }
}

export class Identity {
  constructor(private cookieDomain?: string) {}

  private readId(key: string): string | null {
    return decode(cookieGet(key)) ?? decode(storageGet(key));
  }

  private writeId(key: string, value: string | null): void {
    if (value === null) {
      cookieSet(key, '', this.cookieDomain, 0);
      storageRemove(key);
      return;
    }
    cookieSet(key, value, this.cookieDomain);
    storageSet(key, JSON.stringify(value));
  }

  private readTraits(key: string): Traits {
    try {
      const value: unknown = JSON.parse(storageGet(key) ?? '{}');
      return value && typeof value === 'object' ? (value as Traits) : {};
    } catch {
      return {};
    }
  }

  /** The anonymous id, created and persisted on first use; `id` replaces it. */
  anonymousId(id?: string): string {
    if (id) this.writeId(ANONYMOUS_ID, id);
    let current = this.readId(ANONYMOUS_ID);
    if (!current) {
      current = uuid();
      this.writeId(ANONYMOUS_ID, current);
    } else if (!cookieGet(ANONYMOUS_ID)) {
      // Cookie expired or cleared while localStorage kept the id: restore it.
      this.writeId(ANONYMOUS_ID, current);
    }
    return current;
  }

  id(): string | null {
    return this.readId(USER_ID);
  }

  /** Records who the user is. A different user id starts over with fresh traits. */
  identify(userId: string | null, traits: Traits): void {
    const previous = this.id();
    if (userId !== null && previous !== null && previous !== userId) storageRemove(USER_TRAITS);
    if (userId !== null) this.writeId(USER_ID, userId);
    storageSet(USER_TRAITS, JSON.stringify({ ...this.traits(), ...traits }));
  }

  traits(): Traits {
    return this.readTraits(USER_TRAITS);
  }

  group(groupId: string | null, traits: Traits): void {
    if (groupId !== null) this.writeId(GROUP_ID, groupId);
    storageSet(GROUP_TRAITS, JSON.stringify({ ...this.readTraits(GROUP_TRAITS), ...traits }));
  }

  groupId(): string | null {
    return this.readId(GROUP_ID);
  }

  /** Forgets the user and group and starts a new anonymous id (logout). */
  reset(): void {
    for (const key of [USER_ID, GROUP_ID, ANONYMOUS_ID]) this.writeId(key, null);
    storageRemove(USER_TRAITS);
    storageRemove(GROUP_TRAITS);
  }
}
