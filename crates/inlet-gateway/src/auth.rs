//! Write keys: read from HTTP Basic (username = key, password empty, colon optional) or the
//! body's `writeKey`, and resolved to the configured source. The key itself is never stored or
//! logged; only the source name travels on.
//!
//! Keys are held in memory as their SHA-256 only: a lookup hashes the candidate and finds the
//! digest, so the time a lookup takes depends on the digest's bytes, which tell a guesser
//! nothing about the key's (a plain string comparison leaks how many leading bytes matched),
//! and a memory dump shows no key.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use base64::Engine;
use sha2::{Digest, Sha256};

use inlet_segment::IpPolicy;

use crate::config::SourceConfig;
use crate::error::ApiError;

/// SHA-256 of the write key → source name.
#[derive(Clone, Default)]
pub struct Sources {
    by_key: HashMap<[u8; 32], Arc<str>>,
    ip_policies: HashMap<Arc<str>, IpPolicy>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").field("names", &self.by_key.values().collect::<Vec<_>>()).finish()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Sources {
    pub fn new(sources: &[SourceConfig]) -> Sources {
        Sources {
            by_key: sources.iter().map(|s| (digest(&s.write_key), Arc::from(s.name.as_str()))).collect(),
            ip_policies: sources.iter().map(|s| (Arc::from(s.name.as_str()), s.ip_policy)).collect(),
        }
    }

    pub fn ip_policy(&self, source: &str) -> IpPolicy {
        self.ip_policies.get(source).copied().unwrap_or_default()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_key.values().map(|n| &**n)
    }

    /// Resolves a request's source: the header's key when present, else the body's.
    pub fn resolve(&self, header_key: Option<&str>, body_key: Option<&str>) -> Result<Arc<str>, ApiError> {
        let key = header_key.or(body_key).ok_or(ApiError::MissingWriteKey)?;
        self.lookup(key).ok_or(ApiError::InvalidWriteKey)
    }

    pub fn lookup(&self, key: &str) -> Option<Arc<str>> {
        self.by_key.get(&digest(key)).cloned()
    }
}

/// The write key from `Authorization: Basic base64(key[:])`, if the header is present.
pub fn basic_write_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| ApiError::InvalidAuthorization("not ASCII"))?.trim();
    let (scheme, encoded) = value.split_once(' ').ok_or(ApiError::InvalidAuthorization("expected `Basic <base64>`"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::InvalidAuthorization("only the Basic scheme is supported"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ApiError::InvalidAuthorization("credentials are not valid base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| ApiError::InvalidAuthorization("credentials are not UTF-8"))?;
    let key = text.split_once(':').map_or(text.as_str(), |(user, _password)| user);
    Ok((!key.is_empty()).then(|| key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(credentials: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        h.insert(header::AUTHORIZATION, format!("Basic {encoded}").parse().expect("value"));
        h
    }

    #[test]
    fn reads_basic_with_and_without_the_colon() {
        assert_eq!(basic_write_key(&basic("wk:")).expect("ok").as_deref(), Some("wk"));
        assert_eq!(basic_write_key(&basic("wk")).expect("ok").as_deref(), Some("wk"));
        assert_eq!(basic_write_key(&HeaderMap::new()).expect("ok"), None);
        assert_eq!(basic_write_key(&basic(":")).expect("ok"), None);
        let mut bad = HeaderMap::new();
        bad.insert(header::AUTHORIZATION, "Bearer x".parse().expect("value"));
        assert!(basic_write_key(&bad).is_err());
        bad.insert(header::AUTHORIZATION, "Basic %%%".parse().expect("value"));
        assert!(basic_write_key(&bad).is_err());
    }

    #[test]
    fn header_key_wins_and_unknown_keys_are_refused() {
        let sources = Sources::new(&[SourceConfig::new("web", "k1"), SourceConfig::new("ios", "k2")]);
        assert_eq!(&*sources.resolve(Some("k2"), Some("k1")).expect("known"), "ios");
        assert_eq!(&*sources.resolve(None, Some("k1")).expect("known"), "web");
        assert!(matches!(sources.resolve(None, None), Err(ApiError::MissingWriteKey)));
        assert!(matches!(sources.resolve(Some("nope"), Some("k1")), Err(ApiError::InvalidWriteKey)));
    }
}
