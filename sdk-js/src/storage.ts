// Browser storage that never throws: private modes, full quotas and blocked cookies make the
// SDK fall back to memory instead of breaking the page.

export function storageGet(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function storageSet(key: string, value: string): boolean {
  try {
    localStorage.setItem(key, value);
    return true;
  } catch {
    return false;
  }
}

export function storageRemove(key: string): void {
  try {
    localStorage.removeItem(key);
  } catch {
    // Nothing stored, nothing to remove.
  }
}

export function storageKeys(prefix: string): string[] {
  const keys: string[] = [];
  try {
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i);
      if (key?.startsWith(prefix)) keys.push(key);
    }
  } catch {
    // No storage: no keys.
  }
  return keys;
}

export function cookieGet(name: string): string | null {
  try {
    for (const part of document.cookie.split('; ')) {
      const at = part.indexOf('=');
      if (part.slice(0, at) === name) return decodeURIComponent(part.slice(at + 1));
    }
  } catch {
    // Cookies blocked.
  }
  return null;
}

const YEAR_SECONDS = 365 * 24 * 3600;

export function cookieSet(name: string, value: string, domain: string | undefined, maxAge = YEAR_SECONDS): void {
  try {
    document.cookie =
      `${name}=${encodeURIComponent(value)}; path=/; max-age=${maxAge}; SameSite=Lax` +
      (domain ? `; domain=${domain}` : '') +
      (location.protocol === 'https:' ? '; Secure' : '');
  } catch {
    // Cookies blocked: localStorage still holds the value.
  }
}

/**
 * The widest domain that accepts a cookie (`example.com` for `www.app.example.com`), so the ids
 * are shared across subdomains as analytics.js shares them. Public suffixes (`co.uk`) refuse
 * cookies, which is how they are skipped. Hosts without dots and IP addresses get none.
 */
export function widestCookieDomain(): string | undefined {
  const host = location.hostname;
  if (!host.includes('.') || /^[\d.]+$|:/.test(host)) return undefined;
  const parts = host.split('.');
  for (let i = parts.length - 2; i >= 0; i--) {
    const domain = parts.slice(i).join('.');
    cookieSet('inlet_probe', '1', domain, 60);
    if (cookieGet('inlet_probe')) {
      cookieSet('inlet_probe', '', domain, 0);
      return domain;
    }
  }
  return undefined;
}
