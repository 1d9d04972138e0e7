// The context a browser knows, in the Segment spec's field names.

export const LIBRARY = { name: 'inlet.js', version: '0.1.0' };

/** UTM parameters to `context.campaign` names, as the Segment spec maps them. */
export function campaignFrom(search: string): Record<string, string> | undefined {
  const campaign: Record<string, string> = {};
  new URLSearchParams(search).forEach((value, key) => {
    if (!key.startsWith('utm_')) return;
    const name = key.slice(4);
    campaign[name === 'campaign' ? 'name' : name] = value;
  });
  return Object.keys(campaign).length ? campaign : undefined;
}

const LANDING_CAMPAIGN = 'inlet_campaign';

/**
 * The campaign of the visit's landing URL: a page with UTM parameters starts a new one, later
 * pages of the same tab session keep it.
 */
export function landingCampaign(): Record<string, string> | undefined {
  const current = campaignFrom(location.search);
  try {
    if (current) sessionStorage.setItem(LANDING_CAMPAIGN, JSON.stringify(current));
    else return JSON.parse(sessionStorage.getItem(LANDING_CAMPAIGN) ?? 'null') ?? undefined;
  } catch {
    // No sessionStorage: only the current URL counts.
  }
  return current;
}

export function pageProperties(): Record<string, string> {
  const canonical = document.querySelector<HTMLLinkElement>('link[rel="canonical"]')?.href;
  return {
    path: location.pathname,
    referrer: document.referrer,
    search: location.search,
    title: document.title,
    url: canonical ?? location.href.split('#')[0],
  };
}

export function browserContext(): Record<string, unknown> {
  const context: Record<string, unknown> = {
    library: LIBRARY,
    page: pageProperties(),
    userAgent: navigator.userAgent,
    locale: navigator.language,
    screen: { width: screen.width, height: screen.height, density: devicePixelRatio },
  };
  try {
    context.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch {
    // Very old browsers: no time zone.
  }
  const campaign = landingCampaign();
  if (campaign) context.campaign = campaign;
  return context;
}
