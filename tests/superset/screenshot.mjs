// Logs in to Superset in headless Chromium, opens the Inlet dashboard, waits until every chart
// has rendered, fails if any chart shows an error, and saves a screenshot.
// Usage: node screenshot.mjs SUPERSET_URL OUT.png
import { chromium } from '../browser/node_modules/playwright-core/index.mjs';

const [url, out] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1200 } });
  await page.goto(`${url}/login/`);
  await page.fill('input[name="username"], #username', 'admin');
  await page.fill('input[name="password"], #password', 'admin');
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/login')), page.keyboard.press('Enter')]);
  await page.goto(`${url}/superset/dashboard/inlet/`, { waitUntil: 'networkidle', timeout: 120_000 });
  const charts = page.locator('.dashboard-component-chart-holder');
  await page.waitForFunction(
    () => {
      const holders = [...document.querySelectorAll('.dashboard-component-chart-holder')];
      return holders.length > 0 && holders.every((h) => h.querySelector('canvas, svg, table') && !h.querySelector('.loading'));
    },
    null,
    { timeout: 120_000 },
  );
  const count = await charts.count();
  const errors = await page.locator('.dashboard-component-chart-holder .alert-danger, .dashboard-component-chart-holder [role="alert"]').count();
  if (errors > 0) throw new Error(`${errors} of ${count} charts show an error`);
  await page.waitForTimeout(1500); // let the charts' entry animations finish
  await page.screenshot({ path: out, fullPage: true });
  console.log(`superset dashboard: ${count} charts rendered in Chromium, none in error; screenshot ${out}`);
} finally {
  await browser.close();
}
