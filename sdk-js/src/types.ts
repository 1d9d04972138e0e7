/** Free-form event properties or user/group traits. */
export type Traits = Record<string, unknown>;

/** Per-call options, as in analytics.js. */
export interface CallOptions {
  /** When the event happened (defaults to now). */
  timestamp?: Date | string;
  /** Merged over the context the SDK collects. */
  context?: Record<string, unknown>;
  /** Passed through to the gateway as the event's `integrations`. */
  integrations?: Record<string, unknown>;
  /** Overrides the stored anonymous id for this call only. */
  anonymousId?: string;
}

export type Callback = () => void;

export interface LoadOptions {
  /** The gateway's public URL, e.g. `https://events.example.com`. Required. */
  apiHost?: string;
  /** Send as soon as this many events are waiting (default 20). */
  flushAt?: number;
  /** Send at most this many milliseconds after an event is queued (default 1000). */
  flushInterval?: number;
  /** Events kept while the gateway cannot be reached; the oldest go first (default 1000). */
  maxQueueSize?: number;
  /** Longest wait between retries, in milliseconds (default 300000). */
  maxRetryDelay?: number;
  /** Cookie domain for the ids (default: the widest domain the browser accepts). */
  cookieDomain?: string;
  /** Start opted out (nothing is stored or sent until `optIn()`). */
  optOut?: boolean;
  /**
   * The consent categories the user granted (`true`) or refused (`false`), by your consent
   * manager's category ids: sent with every event as `context.consent.categoryPreferences`
   * (Segment's consent object), which the gateway's destinations honour. Change it with
   * `setConsent()`.
   */
  consent?: ConsentPreferences;
}

/** Consent category id → granted. */
export type ConsentPreferences = Record<string, boolean>;

export type MessageType = 'track' | 'page' | 'identify' | 'group' | 'alias' | 'screen';

/** One Segment message as the SDK stores and sends it. */
export interface Message {
  type: MessageType;
  messageId: string;
  timestamp: string;
  anonymousId: string;
  userId?: string;
  context: Record<string, unknown>;
  integrations?: Record<string, unknown>;
  event?: string;
  name?: string;
  category?: string;
  properties?: Traits;
  traits?: Traits;
  groupId?: string;
  previousId?: string;
}
