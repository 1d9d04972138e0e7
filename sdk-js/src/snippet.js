// Inlet's copy-paste snippet: define `analytics` at once, queue calls until the script loads.
// Replace the script URL (where you host dist/inlet.min.js), the write key and the gateway URL.
(function (scriptUrl) {
  var analytics = (window.analytics = window.analytics || []);
  if (!Array.isArray(analytics) || analytics.invoked) return;
  analytics.invoked = true;
  'track page identify group alias reset ready optOut optIn setConsent'.split(' ').forEach(function (method) {
    analytics[method] = function () {
      analytics.push([method, Date.now()].concat([].slice.call(arguments)));
      return analytics;
    };
  });
  analytics.load = function (writeKey, options) {
    analytics._loadArgs = [writeKey, options];
    var script = document.createElement('script');
    script.async = true;
    script.src = scriptUrl;
    document.head.appendChild(script);
  };
})('https://cdn.example.com/inlet.min.js');
analytics.load('YOUR_WRITE_KEY', { apiHost: 'https://events.example.com' });
analytics.page();
