//! Destination configuration: one `[[destinations]]` table per vendor account, read by the
//! gateway with the rest of its configuration (documented in `docs/config.md`).

use std::time::Duration;

use inlet_lake::layout::{SAFE_NAME_RULE, is_safe_name};
use serde::Deserialize;

use crate::consent::{ConsentConfig, WithoutConsent};
use crate::retry::RetryPolicy;

// No `deny_unknown_fields` here: serde does not support it with `flatten`. Unknown keys still
// fail, in the flattened vendor table, which denies them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DestinationConfig {
    /// Names the WAL cursor, the metrics label and the dead-letter folder; lowercase letters,
    /// digits, `-`, `_`. Renaming a destination starts it afresh at the oldest retained record.
    pub name: String,
    #[serde(flatten)]
    pub vendor: VendorConfig,
    /// Sources whose events go to this destination (at least one).
    pub sources: Vec<String>,
    /// Segment message types to send. Default: the vendor's (see `docs/destinations.md`).
    #[serde(default)]
    pub types: Option<Vec<String>>,
    /// Full URL of the vendor endpoint (EU region, `/batch`, tests). Default: the vendor's US one.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// The consent categories an event must grant to be sent here (`docs/destinations.md`).
    #[serde(default)]
    pub consent: ConsentConfig,
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum VendorConfig {
    Amplitude {
        api_key: String,
        /// Shortest `user_id` / `device_id` Amplitude accepts (sent as `options.min_id_length`).
        #[serde(default = "default_min_id_length")]
        min_id_length: usize,
        /// The project's secret key: with it, deletions go to Amplitude's User Privacy API.
        #[serde(default)]
        secret_key: Option<String>,
        /// The User Privacy API's URL (EU region, tests). Default: the US one.
        #[serde(default)]
        deletion_endpoint: Option<String>,
        /// The Amplitude group type a `group` call's `groupId` belongs to (a clinic, a company).
        #[serde(default = "default_group_type")]
        group_type: String,
        /// The User Mapping API's URL, for `alias` (EU region, tests). Default: the US one.
        #[serde(default)]
        user_mapping_endpoint: Option<String>,
    },
    Ga4 {
        measurement_id: String,
        api_secret: String,
        /// Which Segment id becomes GA4's `client_id` (the other is the fallback).
        #[serde(default)]
        client_id: ClientIdFrom,
        /// The GA4 property's numeric id: with `service_account_file`, deletions go to GA4's
        /// User Deletion API.
        #[serde(default)]
        property_id: Option<String>,
        /// A Google service account's JSON key, with the property's "Edit" permission.
        #[serde(default)]
        service_account_file: Option<std::path::PathBuf>,
        /// The User Deletion API's upsert URL (tests). Default: Google's.
        #[serde(default)]
        deletion_endpoint: Option<String>,
        /// Deletion requests a day (GA4 allows 500 per property and per Cloud project).
        #[serde(default = "default_deletions_per_day")]
        deletion_requests_per_day: u32,
    },
}

/// The credentials are printed redacted: `Debug` output ends up in logs.
impl std::fmt::Debug for VendorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const REDACTED: &str = "<redacted>";
        match self {
            VendorConfig::Amplitude {
                min_id_length,
                secret_key,
                deletion_endpoint,
                group_type,
                user_mapping_endpoint,
                ..
            } => f
                .debug_struct("Amplitude")
                .field("api_key", &REDACTED)
                .field("min_id_length", min_id_length)
                .field("secret_key", &secret_key.as_ref().map(|_| REDACTED))
                .field("deletion_endpoint", deletion_endpoint)
                .field("group_type", group_type)
                .field("user_mapping_endpoint", user_mapping_endpoint)
                .finish(),
            VendorConfig::Ga4 {
                measurement_id,
                client_id,
                property_id,
                service_account_file,
                deletion_endpoint,
                deletion_requests_per_day,
                ..
            } => f
                .debug_struct("Ga4")
                .field("measurement_id", measurement_id)
                .field("api_secret", &REDACTED)
                .field("client_id", client_id)
                .field("property_id", property_id)
                .field("service_account_file", service_account_file)
                .field("deletion_endpoint", deletion_endpoint)
                .field("deletion_requests_per_day", deletion_requests_per_day)
                .finish(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientIdFrom {
    #[default]
    AnonymousId,
    UserId,
}

fn default_deletions_per_day() -> u32 {
    500
}

fn default_min_id_length() -> usize {
    5
}

fn default_group_type() -> String {
    crate::amplitude::DEFAULT_GROUP_TYPE.to_owned()
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// After this long without success an event goes to the dead letters (Segment: 4 hours).
    pub deadline_secs: u64,
    /// First retry delay; doubles per attempt, with full jitter.
    pub backoff_base_ms: u64,
    /// Longest delay between two attempts.
    pub backoff_max_secs: u64,
    /// One request's time limit.
    pub request_timeout_secs: u64,
    /// Events held in memory for delivery; the rest of the backlog waits in the WAL.
    pub max_in_flight_events: usize,
    /// Requests in flight at once (default: Amplitude 8, GA4 1; see
    /// [`DestinationConfig::max_concurrent_requests`]). One device's or client's events never
    /// travel in two concurrent requests, so their order is kept.
    pub max_concurrent_requests: Option<usize>,
    /// WAL bytes this destination may keep on disk; beyond it the oldest undelivered events
    /// are moved to the dead letters (reason `backlog_over_budget`) so ingestion never stops.
    pub max_backlog_bytes: u64,
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        DeliveryConfig {
            deadline_secs: 4 * 3600,
            backoff_base_ms: 1000,
            backoff_max_secs: 600,
            request_timeout_secs: 30,
            max_in_flight_events: 20_000,
            max_concurrent_requests: None,
            max_backlog_bytes: 2 << 30,
        }
    }
}

impl DeliveryConfig {
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(self.backoff_base_ms),
            max: Duration::from_secs(self.backoff_max_secs),
            deadline: Duration::from_secs(self.deadline_secs),
        }
    }
}

/// The message types a vendor receives unless configured otherwise. Amplitude keeps `alias`
/// out (its User Mapping API needs the Portfolio add-on; add it to `types` to send it); GA4
/// has no identify call and no identity merging.
pub fn default_types(vendor: &VendorConfig) -> Vec<String> {
    let types: &[&str] = match vendor {
        VendorConfig::Amplitude { .. } => &["track", "page", "screen", "identify", "group"],
        VendorConfig::Ga4 { .. } => &["track", "page", "screen", "group"],
    };
    types.iter().map(|t| (*t).to_owned()).collect()
}

impl DestinationConfig {
    /// Requests in flight at once. GA4 defaults to one: its events have no key the vendor
    /// dedupes by, and a crash repeats every request answered since the last state save; with
    /// one request in flight that window is the milliseconds after an answer, with several it
    /// lasts until the slowest request of the round is answered. Amplitude drops repeats by
    /// `insert_id`, so it defaults to eight.
    pub fn max_concurrent_requests(&self) -> usize {
        let default = match self.vendor {
            VendorConfig::Amplitude { .. } => 8,
            VendorConfig::Ga4 { .. } => 1,
        };
        self.delivery.max_concurrent_requests.unwrap_or(default)
    }

    /// Checks what types cannot; the message names the key.
    pub fn validate(&self, known_sources: &[&str]) -> Result<(), String> {
        let at = |key: &str| format!("destinations[{}].{key}", self.name);
        if !is_safe_name(&self.name) {
            return Err(format!("destination name {:?}: use {SAFE_NAME_RULE}", self.name));
        }
        if self.sources.is_empty() {
            return Err(format!("{}: name at least one source", at("sources")));
        }
        for source in &self.sources {
            if !known_sources.contains(&source.as_str()) {
                return Err(format!("{}: no source named {source:?}", at("sources")));
            }
        }
        if let Some(types) = &self.types {
            for t in types {
                if inlet_segment::MessageType::parse(t).is_none() {
                    return Err(format!("{}: {t:?} is not a Segment message type", at("types")));
                }
            }
        }
        if let Some(endpoint) = &self.endpoint
            && reqwest::Url::parse(endpoint).is_err()
        {
            return Err(format!("{}: {endpoint:?} is not a URL", at("endpoint")));
        }
        match &self.vendor {
            VendorConfig::Amplitude {
                api_key,
                min_id_length,
                secret_key,
                deletion_endpoint,
                group_type,
                user_mapping_endpoint,
            } => {
                if secret_key.as_deref().is_some_and(str::is_empty) {
                    return Err(format!("{}: must not be empty", at("secret_key")));
                }
                for (key, endpoint) in
                    [("deletion_endpoint", deletion_endpoint), ("user_mapping_endpoint", user_mapping_endpoint)]
                {
                    if let Some(endpoint) = endpoint
                        && reqwest::Url::parse(endpoint).is_err()
                    {
                        return Err(format!("{}: {endpoint:?} is not a URL", at(key)));
                    }
                }
                if group_type.trim().is_empty() {
                    return Err(format!("{}: must not be empty", at("group_type")));
                }
                if api_key.is_empty() {
                    return Err(format!("{}: must not be empty", at("api_key")));
                }
                if *min_id_length == 0 {
                    return Err(format!("{}: must be at least 1", at("min_id_length")));
                }
            }
            VendorConfig::Ga4 {
                measurement_id,
                api_secret,
                property_id,
                service_account_file,
                deletion_endpoint,
                ..
            } => {
                if measurement_id.is_empty() || api_secret.is_empty() {
                    return Err(format!("{}: measurement_id and api_secret are required", at("kind")));
                }
                if property_id.is_some() != service_account_file.is_some() {
                    return Err(format!("{}: set both or neither (GA4 deletions need both)", at("property_id")));
                }
                if property_id.as_deref().is_some_and(|id| id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(format!("{}: the numeric GA4 property id", at("property_id")));
                }
                if let Some(endpoint) = deletion_endpoint
                    && reqwest::Url::parse(endpoint).is_err()
                {
                    return Err(format!("{}: {endpoint:?} is not a URL", at("deletion_endpoint")));
                }
            }
        }
        let d = &self.delivery;
        if d.backoff_base_ms == 0
            || d.request_timeout_secs == 0
            || d.max_in_flight_events == 0
            || d.max_concurrent_requests == Some(0)
        {
            return Err(format!(
                "{}: backoff_base_ms, request_timeout_secs, max_in_flight_events and max_concurrent_requests must be positive",
                at("delivery")
            ));
        }
        if self.consent.categories.iter().any(|c| c.trim().is_empty()) {
            return Err(format!("{}: a category must not be empty", at("consent.categories")));
        }
        if self.consent.categories.is_empty() && self.consent.without_consent == WithoutConsent::Withhold {
            return Err(format!(
                "{}: withhold needs consent.categories (which consent the destination requires)",
                at("consent.without_consent")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DestinationConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn reads_both_vendors_and_refuses_unknown_keys() {
        let amplitude =
            parse("name = \"amp\"\nkind = \"amplitude\"\napi_key = \"k\"\nsources = [\"web\"]").expect("amplitude");
        assert_eq!(
            amplitude.vendor,
            VendorConfig::Amplitude {
                api_key: "k".into(),
                min_id_length: 5,
                secret_key: None,
                deletion_endpoint: None,
                group_type: "group".into(),
                user_mapping_endpoint: None,
            }
        );
        assert!(amplitude.validate(&["web"]).is_ok());
        assert!(amplitude.validate(&["app"]).expect_err("unknown source").contains("sources"));
        let ga4 = parse("name = \"ga\"\nkind = \"ga4\"\nmeasurement_id = \"G-1\"\napi_secret = \"s\"\nsources = [\"web\"]\nclient_id = \"user_id\"\n[delivery]\ndeadline_secs = 60").expect("ga4");
        assert_eq!(ga4.delivery.deadline_secs, 60);
        assert!(matches!(ga4.vendor, VendorConfig::Ga4 { client_id: ClientIdFrom::UserId, .. }));
        assert!(
            parse("name = \"amp\"\nkind = \"amplitude\"\napi_key = \"k\"\nsources = [\"web\"]\napi_keyy = 1").is_err()
        );
        assert!(parse("name = \"x\"\nkind = \"mixpanel\"\nsources = [\"web\"]").is_err());
        let bad_type =
            parse("name = \"amp\"\nkind = \"amplitude\"\napi_key = \"k\"\nsources = [\"web\"]\ntypes = [\"trak\"]")
                .expect("parses");
        assert!(bad_type.validate(&["web"]).expect_err("bad type").contains("types"));
        assert_eq!(amplitude.max_concurrent_requests(), 8);
        assert_eq!(ga4.max_concurrent_requests(), 1, "GA4 has no dedupe key: one request in flight");
        let ga4_wide = parse("name = \"ga\"\nkind = \"ga4\"\nmeasurement_id = \"G-1\"\napi_secret = \"s\"\nsources = [\"web\"]\n[delivery]\nmax_concurrent_requests = 4")
            .expect("ga4");
        assert_eq!(ga4_wide.max_concurrent_requests(), 4);
    }
}
