//! Consent: which events a destination may receive, from the consent the user gave.
//!
//! A destination names the consent categories it requires (`consent.categories`, the ids your
//! consent manager uses, compared case-sensitively). An event is sent only if its consent
//! context grants every one of them; otherwise it is withheld: counted, not sent, not
//! dead-lettered (there is nothing to retry). Two shapes are read:
//! - Segment's: `context.consent.categoryPreferences: {"Analytics": true, "Advertising": false}`;
//!   a category is granted when its value is `true`.
//! - RudderStack's: `context.consentManagement: {allowedConsentIds: […], deniedConsentIds: […],
//!   resolutionStrategy: "and" | "or"}`; a category is granted when listed in
//!   `allowedConsentIds`, or, when only `deniedConsentIds` is sent (OneTrust and Ketch
//!   integrations), when not listed there. `"or"` needs one required category granted instead
//!   of all.
//!
//! An event with neither (or with an empty one: Segment treats an empty consent object as
//! absent) follows the destination's `without_consent`: `send` (the default, as Segment and
//! RudderStack do) or `withhold` (for destinations that must only see consented events). A
//! destination without `categories` sends everything.

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// The consent categories the destination requires.
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub without_consent: WithoutConsent,
}

/// What becomes of an event without consent context, for a destination that requires consent.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WithoutConsent {
    #[default]
    Send,
    Withhold,
}

impl ConsentConfig {
    /// Whether `event` may be sent to the destination.
    pub fn allows(&self, event: &Map<String, Value>) -> bool {
        if self.categories.is_empty() {
            return true;
        }
        let context = event.get("context").and_then(Value::as_object);
        let nonempty =
            |key: &str| context.and_then(|c| c.get(key)).and_then(Value::as_object).filter(|o| !o.is_empty());
        if let Some(preferences) =
            nonempty("consent").and_then(|c| c.get("categoryPreferences")).and_then(Value::as_object)
        {
            return self.categories.iter().all(|c| preferences.get(c) == Some(&Value::Bool(true)));
        }
        if let Some(management) = nonempty("consentManagement") {
            let ids = |key: &str| -> Option<Vec<&str>> {
                management.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect())
            };
            let (allowed, denied) = (ids("allowedConsentIds"), ids("deniedConsentIds").unwrap_or_default());
            let granted = |category: &String| match &allowed {
                Some(allowed) => allowed.contains(&category.as_str()),
                None => !denied.contains(&category.as_str()),
            };
            let any = management.get("resolutionStrategy").and_then(Value::as_str) == Some("or");
            return if any { self.categories.iter().any(granted) } else { self.categories.iter().all(granted) };
        }
        self.without_consent == WithoutConsent::Send
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn requiring(categories: &[&str], without_consent: WithoutConsent) -> ConsentConfig {
        ConsentConfig { categories: categories.iter().map(|c| (*c).to_owned()).collect(), without_consent }
    }

    fn event(context: Value) -> Map<String, Value> {
        json!({"type": "track", "event": "x", "context": context}).as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn segment_category_preferences() {
        let config = requiring(&["Analytics", "Functional"], WithoutConsent::Send);
        let prefs =
            |a: Value, f: Value| event(json!({"consent": {"categoryPreferences": {"Analytics": a, "Functional": f}}}));
        assert!(config.allows(&prefs(json!(true), json!(true))));
        assert!(!config.allows(&prefs(json!(true), json!(false))));
        assert!(!config.allows(&prefs(json!("true"), json!(true))), "only JSON true grants");
        assert!(!config.allows(&event(json!({"consent": {"categoryPreferences": {"Analytics": true}}}))));
        assert!(
            !config
                .allows(&event(json!({"consent": {"categoryPreferences": {"analytics": true, "functional": true}}}))),
            "case-sensitive"
        );
    }

    #[test]
    fn rudderstack_consent_management() {
        let config = requiring(&["C0002", "C0004"], WithoutConsent::Send);
        let manage = |m: Value| event(json!({"consentManagement": m}));
        assert!(
            config.allows(&manage(
                json!({"allowedConsentIds": ["C0001", "C0002", "C0004"], "deniedConsentIds": ["C0003"]})
            ))
        );
        assert!(!config.allows(&manage(json!({"allowedConsentIds": ["C0002"], "deniedConsentIds": ["C0004"]}))));
        assert!(config.allows(&manage(json!({"allowedConsentIds": ["C0002"], "resolutionStrategy": "or"}))));
        assert!(!config.allows(&manage(json!({"allowedConsentIds": ["C0009"], "resolutionStrategy": "or"}))));
        // Denied ids only (older OneTrust and Ketch integrations): what is not denied is granted.
        assert!(config.allows(&manage(json!({"deniedConsentIds": ["C0003"]}))));
        assert!(!config.allows(&manage(json!({"deniedConsentIds": ["C0004"]}))));
    }

    #[test]
    fn events_without_consent_follow_the_destination_default() {
        let send = requiring(&["Analytics"], WithoutConsent::Send);
        let withhold = requiring(&["Analytics"], WithoutConsent::Withhold);
        for context in [json!({}), json!({"consent": {}}), json!({"consentManagement": {}}), json!({"ip": "1.2.3.4"})] {
            assert!(send.allows(&event(context.clone())), "{context}");
            assert!(!withhold.allows(&event(context.clone())), "{context}");
        }
        assert!(
            ConsentConfig::default().allows(&event(json!({"consent": {"categoryPreferences": {"Analytics": false}}})))
        );
    }
}
