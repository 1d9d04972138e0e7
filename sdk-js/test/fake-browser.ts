// The browser globals the SDK touches, for unit tests under node. Each `installBrowser()` gives
// a fresh page (storage survives only when passed in, as across a reload). The real-browser
// tests (tests/browser) cover what a fake cannot: Chromium's fetch, keepalive, cookies and
// page lifecycle.

export interface SentRequest {
  url: string;
  body: { batch: Array<Record<string, any>>; sentAt: string; writeKey: string };
  keepalive: boolean;
  contentType: string;
}

type Answer = { status: number; headers?: Record<string, string> } | 'network-error';
/** How the fake gateway answers a request; a promise keeps the request in flight. */
export type Responder = (request: SentRequest) => Answer | Promise<Answer>;

export class MemoryStorage {
  data = new Map<string, string>();
  broken = false;
  get length(): number {
    return this.data.size;
  }
  key(i: number): string | null {
    return [...this.data.keys()][i] ?? null;
  }
  getItem(key: string): string | null {
    if (this.broken) throw new Error('SecurityError');
    return this.data.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    if (this.broken) throw new Error('QuotaExceededError');
    this.data.set(key, String(value));
  }
  removeItem(key: string): void {
    this.data.delete(key);
  }
}

export class CookieJar {
  values = new Map<string, string>();
  domains = new Map<string, string | undefined>();
  get cookie(): string {
    return [...this.values].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  set cookie(text: string) {
    const [pair, ...attributes] = text.split('; ');
    const at = pair.indexOf('=');
    const name = pair.slice(0, at);
    const domain = attributes.find((a) => a.startsWith('domain='))?.slice(7);
    if (attributes.includes('max-age=0')) {
      this.values.delete(name);
      return;
    }
    this.values.set(name, pair.slice(at + 1));
    this.domains.set(name, domain);
  }
}

export interface Browser {
  requests: SentRequest[];
  respond: Responder;
  storage: MemoryStorage;
  cookies: CookieJar;
  window: EventTarget;
  document: EventTarget & { visibilityState: string };
  head: { appended: Array<{ src: string }> };
  setUrl(url: string): void;
  hide(): void;
}

export function installBrowser(options: { url?: string; storage?: MemoryStorage; cookies?: CookieJar } = {}): Browser {
  const g = globalThis as any;
  const windowTarget = new EventTarget();
  const documentTarget = Object.assign(new EventTarget(), { visibilityState: 'visible' });
  const storage = options.storage ?? new MemoryStorage();
  const cookies = options.cookies ?? new CookieJar();
  const head = { appended: [] as Array<{ src: string }> };
  const browser: Browser = {
    requests: [],
    respond: () => ({ status: 200 }),
    storage,
    cookies,
    window: windowTarget,
    document: documentTarget,
    head,
    setUrl(url: string) {
      g.location = new URL(url);
    },
    hide() {
      documentTarget.visibilityState = 'hidden';
      documentTarget.dispatchEvent(new Event('visibilitychange'));
      windowTarget.dispatchEvent(new Event('pagehide'));
    },
  };
  browser.setUrl(options.url ?? 'https://www.example.com/articles/1?utm_source=news&utm_campaign=launch&ref=x#top');
  g.window = g;
  g.localStorage = storage;
  g.sessionStorage = new MemoryStorage();
  g.addEventListener = windowTarget.addEventListener.bind(windowTarget);
  g.dispatchEvent = windowTarget.dispatchEvent.bind(windowTarget);
  g.document = Object.assign(documentTarget, {
    referrer: 'https://search.example.org/',
    title: 'Article 1',
    head: { appendChild: (node: { src: string }) => head.appended.push(node) },
    createElement: () => ({ src: '', async: false }),
    querySelector: () => null,
  });
  Object.defineProperty(g.document, 'cookie', {
    get: () => cookies.cookie,
    set: (text: string) => {
      cookies.cookie = text;
    },
    configurable: true,
  });
  Object.defineProperty(g, 'navigator', {
    value: { userAgent: 'FakeBrowser/1.0', language: 'fr-FR', onLine: true, sendBeacon: () => true },
    configurable: true,
    writable: true,
  });
  g.screen = { width: 1440, height: 900 };
  g.devicePixelRatio = 2;
  g.fetch = async (url: string, init: RequestInit) => {
    const request: SentRequest = {
      url,
      body: JSON.parse(init.body as string),
      keepalive: init.keepalive === true,
      contentType: (init.headers as Record<string, string>)['Content-Type'],
    };
    browser.requests.push(request);
    const answer = await browser.respond(request);
    if (answer === 'network-error') throw new TypeError('Failed to fetch');
    return new Response(answer.status === 204 ? null : '{}', { status: answer.status, headers: answer.headers });
  };
  delete g.analytics;
  return browser;
}

/** Lets pending promise callbacks (fetch responses) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}
