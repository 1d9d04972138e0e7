//! `GET /v1/projects/{writeKey}/settings`: what analytics.js and the mobile SDKs fetch at start.
//!
//! It points `integrations["Segment.io"].apiHost` at this gateway (the mobile SDKs overwrite
//! their configured host with it) and sets `metrics.sampleRate` to 0, so an unmodified SDK
//! whose settings host is changed sends everything here and nothing to Segment.

use serde_json::{Value, json};

/// `apiHost` (host, port and path, no scheme, ending in `/v1`) and `protocol` for a public URL.
pub fn api_host(public_url: &str) -> (String, &'static str) {
    let (protocol, rest) = match public_url.strip_prefix("https://") {
        Some(rest) => ("https", rest),
        None => ("http", public_url.strip_prefix("http://").unwrap_or(public_url)),
    };
    (format!("{}/v1", rest.trim_end_matches('/')), protocol)
}

pub fn settings_json(write_key: &str, public_url: &str) -> Value {
    let (api_host, protocol) = api_host(public_url);
    json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
                "versionSettings": {"componentTypes": []}
            }
        },
        "plan": {
            "track": {"__default": {"enabled": true, "integrations": {}}},
            "identify": {"__default": {"enabled": true}},
            "group": {"__default": {"enabled": true}}
        },
        "metrics": {"sampleRate": 0},
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": []
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_host_has_no_scheme_and_ends_in_v1() {
        assert_eq!(api_host("https://events.example.com"), ("events.example.com/v1".into(), "https"));
        assert_eq!(api_host("http://127.0.0.1:8080/"), ("127.0.0.1:8080/v1".into(), "http"));
        assert_eq!(api_host("https://example.com/inlet"), ("example.com/inlet/v1".into(), "https"));
    }
}
