// The web site under test, served on loopback from another origin than the gateway (as a real
// site and its event host are):
//   /sdk.html        Inlet's copy-paste snippet, exactly as built, loading /inlet.min.js
//   /inlet.min.js    sdk-js's script-tag build (`?delay=ms` holds it back, so calls queue)
//   /ajs.html        the unmodified @segment/analytics-next, loaded with cdnURL = the gateway
//   /ajs.js          that npm package bundled for the browser with esbuild, as an app would
//   /segment-snippet.html  a page keeping a Segment-style snippet (calls queued on an array,
//                    `_cdn` set to the gateway) that loads the package's own script-tag build,
//                    self-hosted as /js/analytics.min.js
// `respond(url)` gives the same bytes without the network, for pages loaded while offline. A
// page's `gateway` option sends its events to another URL than the gateway's own.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { build } from 'esbuild';

const sdkDist = new URL('../../sdk-js/dist/', import.meta.url);

async function bundleAnalyticsNext() {
  const result = await build({
    stdin: {
      contents: "export { AnalyticsBrowser } from '@segment/analytics-next';",
      resolveDir: new URL('.', import.meta.url).pathname,
    },
    bundle: true,
    format: 'iife',
    globalName: 'AnalyticsNext',
    platform: 'browser',
    target: 'es2019',
    write: false,
    logLevel: 'error',
  });
  return result.outputFiles[0].text;
}

function snippetPage(gatewayUrl, writeKey, options) {
  const snippet = readFileSync(new URL('snippet.min.js', sdkDist), 'utf8');
  const placeholders = ['"https://cdn.example.com/inlet.min.js"', '"YOUR_WRITE_KEY"', '{apiHost:"https://events.example.com"}'];
  for (const placeholder of placeholders) {
    if (!snippet.includes(placeholder)) throw new Error(`the built snippet has no ${placeholder}`);
  }
  const filled = snippet
    .replace(placeholders[0], JSON.stringify(`/inlet.min.js?delay=${options.delay ?? 0}`))
    .replace(placeholders[1], JSON.stringify(writeKey))
    .replace(placeholders[2], JSON.stringify({ ...options.load, apiHost: gatewayUrl }));
  return `<!doctype html><html><head><title>Inlet snippet page</title><script>${filled}</script></head>
<body><h1>Inlet snippet page</h1></body></html>`;
}

function analyticsNextPage(gatewayUrl, writeKey, options) {
  const settings = { writeKey, cdnURL: gatewayUrl };
  return `<!doctype html><html><head><title>analytics-next page</title><script src="/ajs.js"></script>
<script>window.analytics = AnalyticsNext.AnalyticsBrowser.load(${JSON.stringify(settings)}, ${JSON.stringify(options.load ?? {})});</script>
</head><body><h1>analytics-next page</h1></body></html>`;
}

// What Segment's snippet does, written for this test: queue calls as [method, ...args] on
// `window.analytics`, then load the script; `_cdn` is the one line a site adds for Inlet.
function segmentSnippetPage(gatewayUrl, writeKey) {
  return `<!doctype html><html><head><title>Segment snippet page</title><script>
(function () {
  var analytics = (window.analytics = []);
  ['track', 'page', 'identify', 'group', 'alias', 'reset', 'ready'].forEach(function (method) {
    analytics[method] = function () {
      analytics.push([method].concat([].slice.call(arguments)));
      return analytics;
    };
  });
  analytics.load = function (key, options) {
    var script = document.createElement('script');
    script.async = true;
    script.src = '/js/analytics.min.js';
    document.head.appendChild(script);
    analytics._loadOptions = options;
  };
  analytics._writeKey = ${JSON.stringify(writeKey)};
  analytics._cdn = ${JSON.stringify(gatewayUrl)};
  analytics.SNIPPET_VERSION = '5.2.1';
  analytics.load(${JSON.stringify(writeKey)});
  analytics.page();
})();
</script></head><body><h1>Segment snippet page</h1></body></html>`;
}

export async function startSite(gatewayUrl, writeKey) {
  const analyticsNext = await bundleAnalyticsNext();
  const script = readFileSync(new URL('inlet.min.js', sdkDist), 'utf8');
  const standalone = readFileSync(new URL('./node_modules/@segment/analytics-next/dist/umd/standalone.js', import.meta.url), 'utf8');

  /** `{status, type, body, delay}` for a URL of the site. */
  function respond(url) {
    const { pathname, searchParams } = new URL(url, 'http://site');
    const options = JSON.parse(searchParams.get('options') ?? '{}');
    switch (pathname) {
      case '/sdk.html':
        return { type: 'text/html', body: snippetPage(options.gateway ?? gatewayUrl, writeKey, options) };
      case '/inlet.min.js':
        return { type: 'text/javascript', body: script, delay: Number(searchParams.get('delay') ?? 0) };
      case '/ajs.html':
        return { type: 'text/html', body: analyticsNextPage(gatewayUrl, writeKey, options) };
      case '/ajs.js':
        return { type: 'text/javascript', body: analyticsNext };
      case '/segment-snippet.html':
        return { type: 'text/html', body: segmentSnippetPage(gatewayUrl, writeKey) };
      case '/js/analytics.min.js':
        return { type: 'text/javascript', body: standalone };
      case '/elsewhere.html':
        return { type: 'text/html', body: '<!doctype html><title>elsewhere</title>' };
      default:
        return { status: 404, type: 'text/plain', body: 'not found' };
    }
  }

  const server = createServer((request, response) => {
    const { status = 200, type, body, delay = 0 } = respond(request.url);
    setTimeout(() => {
      response.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      response.end(body);
    }, delay);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    respond,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** A page URL with its load options (and any extra query, such as UTM parameters). */
export function pageUrl(site, path, options = {}, query = '') {
  return `${site.url}${path}?options=${encodeURIComponent(JSON.stringify(options))}${query}`;
}
