// Logs in to Superset in headless Chromium, opens the Inlet dashboard, waits until every chart
// has rendered, fails if any chart shows an error, and saves a screenshot.
// Usage: node screenshot.mjs SUPERSET_URL OUT.png
//
// Superset renders only the charts near the viewport, so each chart is scrolled into view. A
// chart that has not rendered within the wait is reported by title with what it shows instead;
// the page is loaded up to three times before that is a failure: on a loaded machine a chart of
// the development server has once stayed unrendered past two minutes. The charts' queries are
// checked through the API before this runs; this checks that they render.
import { chromium } from '../browser/node_modules/playwright-core/index.mjs';

const [url, out] = process.argv.slice(2);
const ATTEMPTS = 3;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

// Each chart holder's state: rendered (a canvas, svg or table and no spinner), failed (an
// alert), or still waiting; with its title and a little of its text for the report.
function chartStates() {
  return [...document.querySelectorAll('.dashboard-component-chart-holder')].map((holder) => {
    const title = holder.querySelector('.header-title, [data-test="editable-title"]')?.textContent?.trim() ?? '(untitled)';
    const failed = holder.querySelector('.alert-danger, [role="alert"]');
    const rendered = holder.querySelector('canvas, svg, table') && !holder.querySelector('.loading');
    const state = failed ? 'error' : rendered ? 'rendered' : 'waiting';
    return { title, state, text: (failed ?? holder).textContent.trim().slice(0, 200) };
  });
}

async function renderDashboard(page) {
  await page.goto(`${url}/superset/dashboard/inlet/`, { waitUntil: 'networkidle', timeout: 120_000 });
  const deadline = Date.now() + 60_000;
  let states = [];
  while (Date.now() < deadline) {
    for (const holder of await page.locator('.dashboard-component-chart-holder').all()) {
      await holder.scrollIntoViewIfNeeded().catch(() => {});
    }
    states = await page.evaluate(chartStates);
    if (states.length > 0 && states.every((s) => s.state !== 'waiting')) break;
    await page.waitForTimeout(500);
  }
  return states;
}

try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1200 } });
  await page.goto(`${url}/login/`);
  await page.fill('input[name="username"], #username', 'admin');
  await page.fill('input[name="password"], #password', 'admin');
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/login')), page.keyboard.press('Enter')]);
  let states = [];
  let attempt = 1;
  for (; attempt <= ATTEMPTS; attempt++) {
    states = await renderDashboard(page);
    if (states.length > 0 && states.every((s) => s.state === 'rendered')) break;
    const unwell = states.filter((s) => s.state !== 'rendered');
    console.error(`superset dashboard, load ${attempt}: ${states.length} charts; not rendered: ${JSON.stringify(unwell)}`);
  }
  if (attempt > ATTEMPTS) throw new Error(`the dashboard did not render in ${ATTEMPTS} loads`);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(1500); // let the charts' entry animations finish
  await page.screenshot({ path: out, fullPage: true });
  const loads = attempt === 1 ? '' : ` (on load ${attempt})`;
  console.log(`superset dashboard: ${states.length} charts rendered in Chromium${loads}, none in error; screenshot ${out}`);
} finally {
  await browser.close();
}
