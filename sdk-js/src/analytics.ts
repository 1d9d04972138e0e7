// The analytics.js-compatible client: builds Segment messages, keeps them in the persistent
// queue and delivers them to the gateway's `/v1/batch`.

import { browserContext, pageProperties } from './context';
import { PersistentQueue } from './queue';
import { cookieGet, cookieSet, storageGet, storageRemove, storageSet, widestCookieDomain } from './storage';
import {
  KEEPALIVE_BUDGET_BYTES,
  MAX_BATCH_BYTES,
  MAX_BATCH_COUNT,
  byteLength,
  chunk,
  isRetriable,
  parseRetryAfter,
  retryDelay,
} from './transport';
import type { Callback, CallOptions, ConsentPreferences, LoadOptions, Message, Traits } from './types';
import { Identity } from './user';
import { uuid } from './uuid';

const OPT_OUT = 'inlet_opt_out';

type Settings = Required<Omit<LoadOptions, 'cookieDomain' | 'optOut' | 'consent'>>;

const DEFAULTS: Settings = {
  apiHost: '',
  flushAt: 20,
  flushInterval: 1000,
  maxQueueSize: 1000,
  maxRetryDelay: 300_000,
};

type Outcome = 'delivered' | 'retry' | 'dropped';

/** analytics.js's optional arguments: the objects in order, and a trailing callback. */
function objectsAndCallback(args: unknown[]): [[Traits?, CallOptions?], Callback | undefined] {
  const objects = args.filter((a) => typeof a === 'object' && a !== null) as [Traits?, CallOptions?];
  const callback = args.find((a): a is Callback => typeof a === 'function');
  return [objects, callback];
}

function isoTime(time: Date | string | number): string {
  const date = new Date(time);
  return Number.isNaN(date.getTime()) ? String(time) : date.toISOString();
}

export class Analytics {
  private writeKey = '';
  private settings: Settings = DEFAULTS;
  private identity = new Identity();
  private queue?: PersistentQueue;
  private beforeLoad: Array<() => void> = [];
  private readyCallbacks: Callback[] = [];
  private inFlight = new Set<string>();
  private sentOnHide = new Set<string>();
  private sending = false;
  private timer?: ReturnType<typeof setTimeout>;
  private timerDue = Infinity;
  private attempt = 0;
  private notBefore = 0;
  /** Set while the snippet's calls are replayed: when the page made them. */
  private callTime?: number;
  private consent?: ConsentPreferences;

  /** Starts the client. Calls made earlier are kept and sent now. */
  load(writeKey: string, options: LoadOptions = {}): this {
    if (this.queue) return this;
    this.settings = { ...DEFAULTS, ...options, apiHost: (options.apiHost ?? '').replace(/\/+$/, '') };
    if (!this.settings.apiHost) throw new Error('inlet: load() needs options.apiHost, the URL of the Inlet gateway');
    this.writeKey = writeKey;
    this.identity = new Identity(options.cookieDomain ?? widestCookieDomain());
    if (options.optOut) this.optOut();
    if (options.consent) this.setConsent(options.consent);
    this.queue = new PersistentQueue(`inlet:q:${writeKey}:`, this.settings.maxQueueSize);
    addEventListener('pagehide', () => this.sendOnHide());
    document.addEventListener('visibilitychange', () => document.visibilityState === 'hidden' && this.sendOnHide());
    addEventListener('online', () => {
      this.attempt = 0;
      this.notBefore = 0;
      this.schedule(0);
    });
    for (const call of this.beforeLoad.splice(0)) call();
    this.schedule(0);
    for (const callback of this.readyCallbacks.splice(0)) callback();
    return this;
  }

  track(event: string, ...rest: unknown[]): Promise<void> {
    const [[properties = {}, options], callback] = objectsAndCallback(rest);
    return this.record({ type: 'track', event, properties }, options, callback);
  }

  /** `page([category], [name], [properties], [options], [callback])`, as in analytics.js. */
  page(...args: unknown[]): Promise<void> {
    const names: (string | undefined)[] = [];
    for (const arg of args) {
      if (typeof arg !== 'string' && arg !== null && arg !== undefined) break;
      names.push((arg as string | null | undefined) ?? undefined);
    }
    const [category, name] = names.length > 1 ? names : [undefined, names[0]];
    const [[properties = {}, options], callback] = objectsAndCallback(args.slice(names.length));
    const message: Partial<Message> = { type: 'page', properties: { ...pageProperties(), ...properties } };
    if (name) message.name = message.properties!.name = name;
    if (category) message.category = message.properties!.category = category;
    return this.record(message, options, callback);
  }

  identify(...args: unknown[]): Promise<void> {
    const userId = typeof args[0] === 'string' || typeof args[0] === 'number' ? String(args.shift()) : null;
    const [[traits = {}, options], callback] = objectsAndCallback(args);
    return this.record({ type: 'identify' }, options, callback, () => {
      this.identity.identify(userId, traits);
      return { traits: this.identity.traits() };
    });
  }

  group(groupId: string | number, ...rest: unknown[]): Promise<void> {
    const [[traits = {}, options], callback] = objectsAndCallback(rest);
    return this.record({ type: 'group', groupId: String(groupId), traits }, options, callback, () => {
      this.identity.group(String(groupId), traits);
      return {};
    });
  }

  alias(userId: string | number, ...rest: unknown[]): Promise<void> {
    const previous = typeof rest[0] === 'string' || typeof rest[0] === 'number' ? String(rest.shift()) : undefined;
    const [[options], callback] = objectsAndCallback(rest);
    return this.record({ type: 'alias', userId: String(userId) }, options, callback, () => ({
      previousId: previous ?? this.identity.id() ?? this.identity.anonymousId(),
    }));
  }

  /** Logout: forgets the user and group and starts a new anonymous id. */
  reset(): void {
    this.whenLoaded(() => this.identity.reset());
  }

  /** Runs `callback` once the client is loaded (at once if it is). */
  ready(callback: Callback): void {
    if (this.queue) callback();
    else this.readyCallbacks.push(callback);
  }

  user(): { id(): string | null; anonymousId(id?: string): string; traits(): Traits } {
    const identity = this.identity;
    return {
      id: () => identity.id(),
      anonymousId: (id?: string) => identity.anonymousId(id),
      traits: () => identity.traits(),
    };
  }

  /** Stops collecting and sending, and deletes what is queued, until `optIn()`. Persisted. */
  optOut(): void {
    storageSet(OPT_OUT, '1');
    cookieSet(OPT_OUT, '1', widestCookieDomain());
    this.queue?.clear();
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = Infinity;
  }

  optIn(): void {
    storageRemove(OPT_OUT);
    cookieSet(OPT_OUT, '', widestCookieDomain(), 0);
  }

  /**
   * The user's consent choices from now on (category id → granted), sent with each later event
   * as `context.consent.categoryPreferences`. Events already queued keep the consent they were
   * made under.
   */
  setConsent(preferences: ConsentPreferences): void {
    const entries = Object.entries(preferences ?? {});
    if (entries.some(([, granted]) => typeof granted !== 'boolean')) {
      throw new Error('inlet: setConsent() takes {categoryId: true | false}');
    }
    this.consent = Object.fromEntries(entries);
  }

  isOptedOut(): boolean {
    return storageGet(OPT_OUT) === '1' || cookieGet(OPT_OUT) === '1';
  }

  /** Replays a call the snippet queued before the script loaded, dated when it was made. */
  replay(method: string, time: number, args: unknown[]): void {
    const fn = (this as unknown as Record<string, unknown>)[method];
    if (typeof fn !== 'function') return;
    this.callTime = time;
    try {
      fn.apply(this, args);
    } finally {
      this.callTime = undefined;
    }
  }

  /** Sends what is queued now (one request at a time); resolves when that attempt is over. */
  async flush(): Promise<void> {
    const queue = this.queue;
    // Offline, the `online` event resumes sending; requests now would only fail.
    if (!queue || this.sending || this.isOptedOut() || navigator.onLine === false) return;
    const waiting = queue.messages().filter((m) => !this.inFlight.has(m.messageId));
    if (!waiting.length) return;
    this.sending = true;
    let outcome: Outcome | undefined;
    try {
      outcome = await this.send(chunk(waiting, MAX_BATCH_BYTES, MAX_BATCH_COUNT)[0], false);
    } finally {
      this.sending = false;
    }
    if (outcome !== 'retry' && queue.size > this.inFlight.size) this.schedule(0);
  }

  private whenLoaded(call: () => void): void {
    if (this.queue) call();
    else this.beforeLoad.push(call);
  }

  /**
   * Builds the message now (time and page are the caller's), completes it with who the user is
   * once loaded (`late` runs in call order, after earlier identify/reset calls), and queues it.
   */
  private record(
    fields: Partial<Message>,
    options: CallOptions = {},
    callback?: Callback,
    late?: () => Partial<Message>,
  ): Promise<void> {
    const timestamp = isoTime(options.timestamp ?? this.callTime ?? Date.now());
    const consent = this.consent && { consent: { categoryPreferences: { ...this.consent } } };
    const context = { ...browserContext(), ...consent, ...options.context };
    return new Promise((resolve) => {
      this.whenLoaded(() => {
        if (!this.isOptedOut()) {
          const known = late?.();
          const message = {
            userId: this.identity.id() ?? undefined,
            ...fields,
            ...known,
            messageId: uuid(),
            timestamp,
            anonymousId: options.anonymousId ?? this.identity.anonymousId(),
            context,
          } as Message;
          if (options.integrations) message.integrations = options.integrations;
          this.queue!.push(message);
          this.schedule(this.queue!.size >= this.settings.flushAt ? 0 : this.settings.flushInterval);
        }
        callback?.();
        resolve();
      });
    });
  }

  /** One timer; an earlier deadline replaces a later one; never before the backoff allows. */
  private schedule(delay: number): void {
    const due = Math.max(Date.now() + delay, this.notBefore);
    if (this.timer !== undefined && this.timerDue <= due) return;
    clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerDue = Infinity;
      void this.flush();
    }, due - Date.now());
  }

  private body(batch: Message[]): string {
    return JSON.stringify({ batch, sentAt: new Date().toISOString(), writeKey: this.writeKey });
  }

  private async send(batch: Message[], keepalive: boolean): Promise<Outcome> {
    for (const m of batch) this.inFlight.add(m.messageId);
    let status = 0;
    let retryAfter: string | null = null;
    try {
      const response = await fetch(`${this.settings.apiHost}/v1/batch`, {
        method: 'POST',
        // text/plain keeps the request "simple": no CORS preflight, as analytics.js does.
        headers: { 'Content-Type': 'text/plain' },
        body: this.body(batch),
        keepalive,
        credentials: 'omit',
      });
      status = response.status;
      retryAfter = response.headers.get('Retry-After');
    } catch {
      // Offline, refused, reset or cut: status 0, retried.
    } finally {
      for (const m of batch) this.inFlight.delete(m.messageId);
    }
    return this.settle(batch, status, retryAfter);
  }

  private async settle(batch: Message[], status: number, retryAfter: string | null): Promise<Outcome> {
    if (status >= 200 && status < 300) {
      this.queue!.remove(batch);
      this.attempt = 0;
      this.notBefore = 0;
      return 'delivered';
    }
    if (status === 413 && batch.length > 1) {
      const half = Math.ceil(batch.length / 2);
      const first = await this.send(batch.slice(0, half), false);
      return first === 'retry' ? first : this.send(batch.slice(half), false);
    }
    if (status && !isRetriable(status)) {
      console.warn(`inlet: the gateway refused ${batch.length} event(s) with status ${status}; dropped`);
      this.queue!.remove(batch);
      return 'dropped';
    }
    const now = Date.now();
    const delay = retryDelay(this.attempt++, parseRetryAfter(retryAfter, now), this.settings.maxRetryDelay);
    this.notBefore = now + delay;
    this.schedule(delay);
    return 'retry';
  }

  /**
   * The page is being hidden or unloaded: everything queued goes out in requests that outlive
   * the page, even what is already in flight (the page may cancel it; the gateway drops the
   * repeat by messageId). Within the browser's keepalive budget; the rest waits for next visit.
   */
  private sendOnHide(): void {
    if (!this.queue || this.isOptedOut() || navigator.onLine === false) return;
    const messages = this.queue.messages().filter((m) => !this.sentOnHide.has(m.messageId));
    const canKeepalive = typeof Request !== 'undefined' && 'keepalive' in Request.prototype;
    let budget = KEEPALIVE_BUDGET_BYTES;
    for (const batch of chunk(messages, KEEPALIVE_BUDGET_BYTES, MAX_BATCH_COUNT)) {
      const body = this.body(batch);
      const size = byteLength(body);
      if (size > budget) break;
      budget -= size;
      for (const m of batch) this.sentOnHide.add(m.messageId);
      if (canKeepalive) {
        void this.send(batch, true).then(() => batch.forEach((m) => this.sentOnHide.delete(m.messageId)));
      } else {
        navigator.sendBeacon(`${this.settings.apiHost}/v1/batch`, new Blob([body], { type: 'text/plain' }));
      }
    }
  }
}
