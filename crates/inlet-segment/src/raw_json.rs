//! Reading messages without building `serde_json::Value` trees, which dominated the
//! normaliser's cost (allocating every nested map, then serialising it again).
//!
//! A message is split at its top level into (key, raw value) pairs; the few fields the spec
//! rules on are read as scalars, and everything else is copied into the stored record as the
//! client wrote it. That copy is safe only because [`split_checked`] also refuses what
//! serde_json's syntax check lets through but its `Value` reader (used by every consumer of
//! the WAL) would refuse: deep nesting, lone UTF-16 surrogates and numbers beyond a double.
//! The splitting itself is a walk over text already known to be valid (`walk`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::Number;

use crate::time::push_timestamp;

mod walk;

pub use walk::MAX_MESSAGE_DEPTH;
use walk::Walk;

/// Splits a message (syntactically valid JSON) into its top-level members, checking that a
/// `Value` reader would accept all of it. `Ok(None)`: valid, but not an object.
pub fn split_checked(json: &str) -> Result<Option<RawObject<'_>>, String> {
    Walk::<true>::new(json).members(&Nested::NONE)
}

/// Checks that syntactically valid JSON of any kind is also readable as a `serde_json::Value`
/// (the property tests' view of the checked walk).
#[cfg(test)]
fn check_readable(json: &str) -> Result<(), String> {
    let walk = Walk::<true>::new(json);
    walk.value_end(walk.skip_whitespace(0), 0).map(drop)
}

/// An object's members in order, each value still raw. A repeated key keeps its last value,
/// as serde_json's own map does.
#[derive(Debug, Clone, Default)]
pub struct RawObject<'a> {
    pub members: Vec<Member<'a>>,
}

/// One member of an object, as written.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    pub key: Cow<'a, str>,
    /// The key's JSON text, quotes and escapes included: what is written when the member is
    /// copied, so its key is not escaped a second time.
    pub quoted_key: &'a str,
    pub value: &'a str,
    /// The value's members, when it is an object the walk was asked to split too (see
    /// [`object_members_nested`]).
    pub object: Option<RawObject<'a>>,
}

/// Above this many members, repeated keys are found with a hash map instead of a scan.
const LINEAR_DEDUPE_MEMBERS: usize = 16;

impl<'a> RawObject<'a> {
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.members.iter().find(|m| m.key == key).map(|m| m.value)
    }

    fn keep_last_of_each_key(&mut self) {
        if self.members.len() <= LINEAR_DEDUPE_MEMBERS {
            let mut i = 0;
            while i < self.members.len() {
                let repeated = self.members[i + 1..].iter().any(|m| m.key == self.members[i].key);
                if repeated {
                    self.members.remove(i);
                } else {
                    i += 1;
                }
            }
            return;
        }
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(self.members.len());
        for (index, member) in self.members.iter().enumerate() {
            last.insert(&member.key, index);
        }
        if last.len() == self.members.len() {
            return;
        }
        let keep: Vec<bool> = self.members.iter().enumerate().map(|(i, m)| last[m.key.as_ref()] == i).collect();
        let mut flags = keep.into_iter();
        self.members.retain(|_| flags.next().unwrap_or(true));
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Debug)]
pub struct JsonStr<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<JsonStr<'de>, E> {
                Ok(JsonStr(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// A raw value read as one of the scalars the spec rules on.
#[derive(Debug, PartialEq)]
pub enum Scalar<'a> {
    Null,
    String(Cow<'a, str>),
    Number(Number),
    Bool(bool),
    /// An object or an array.
    Other,
}

pub fn scalar(text: &str) -> Scalar<'_> {
    match text.as_bytes().first() {
        Some(b'n') => Scalar::Null,
        // Without escapes the text between the quotes is the string (the syntax was checked).
        Some(b'"') if text.len() >= 2 && !text.contains('\\') => {
            Scalar::String(Cow::Borrowed(&text[1..text.len() - 1]))
        }
        Some(b'"') => serde_json::from_str::<JsonStr<'_>>(text).map_or(Scalar::Other, |s| Scalar::String(s.0)),
        Some(b'-' | b'0'..=b'9') => serde_json::from_str(text).map_or(Scalar::Other, Scalar::Number),
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        _ => Scalar::Other,
    }
}

/// A raw value's string, when it is a string (anything else has no string reading).
pub fn string_value(text: &str) -> Option<Cow<'_, str>> {
    match scalar(text) {
        Scalar::String(s) => Some(s),
        _ => None,
    }
}

pub fn is_null(json: &str) -> bool {
    json == "null"
}

pub fn is_object(json: &str) -> bool {
    json.starts_with('{')
}

/// The members of a value, when it is an object. The text must be valid JSON: a part of a
/// checked message, or of a WAL record (see `walk`).
pub fn object_members(json: &str) -> Option<RawObject<'_>> {
    object_members_nested(json, &Nested::NONE)
}

/// [`object_members`], also splitting, in the same walk, the objects `nested` names (each
/// member's [`Member::object`]). Reading an object's members and then those of an object
/// inside it walks the inner object's text twice, once to skip it and once to split it; the
/// lake writer reads `context` and the objects inside it for every event.
pub fn object_members_nested<'a>(json: &'a str, nested: &Nested) -> Option<RawObject<'a>> {
    Walk::<false>::new(json).members(nested).ok().flatten()
}

/// Which members' values a walk splits as well, when they are objects: by key, each with its
/// own choice for the objects inside it.
#[derive(Debug, Clone, Default)]
pub struct Nested {
    keys: Vec<(&'static str, Nested)>,
}

impl Nested {
    /// Splits nothing inside.
    pub const NONE: Nested = Nested { keys: Vec::new() };

    /// Also splits the member `key`'s object, and inside it what `inner` names.
    pub fn with(mut self, key: &'static str, inner: Nested) -> Nested {
        self.keys.push((key, inner));
        self
    }

    fn inner(&self, key: &str) -> Option<&Nested> {
        self.keys.iter().find(|(k, _)| *k == key).map(|(_, inner)| inner)
    }
}

/// The length, quotes included, of the JSON string `json` starts with (valid JSON, as for
/// [`object_members`]).
pub fn leading_string_len(json: &str) -> Option<usize> {
    if !json.starts_with('"') {
        return None;
    }
    Walk::<false>::new(json).string_end(1).ok()
}

/// Writes a JSON object member by member (keys escaped, values as given).
#[derive(Debug)]
pub struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> ObjectWriter<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> ObjectWriter<'o> {
        out.push(b'{');
        ObjectWriter { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        self.separate();
        write_json_string(self.out, key);
        self.out.push(b':');
    }

    fn separate(&mut self) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
    }

    /// A member of another object, copied as written. Returns where its value is in the output.
    pub fn member(&mut self, member: &Member<'_>) -> std::ops::Range<usize> {
        self.separate();
        self.out.extend_from_slice(member.quoted_key.as_bytes());
        self.out.push(b':');
        let start = self.out.len();
        self.out.extend_from_slice(member.value.as_bytes());
        start..self.out.len()
    }

    /// A timestamp, as [`crate::format_timestamp`] writes it.
    pub fn timestamp(&mut self, key: &str, time: DateTime<Utc>) {
        self.key(key);
        self.out.push(b'"');
        push_timestamp(self.out, time);
        self.out.push(b'"');
    }

    /// A member whose value is JSON text already.
    pub fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
    }

    pub fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        write_json_string(self.out, value);
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

pub fn write_json_string(out: &mut Vec<u8>, value: &str) {
    // Most keys and ids need no escape (serde_json escapes only quotes, backslashes and
    // control characters): copied between quotes, without serde's byte-by-byte writer.
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, value).expect("writing to a Vec cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;
    use serde_json::value::RawValue;

    use super::*;

    /// What `check_readable` adds to the syntax check must be exactly what `Value` refuses.
    fn agrees_with_serde(json: &str) -> Result<(), TestCaseError> {
        let syntax_ok = serde_json::from_str::<&RawValue>(json).is_ok();
        let value_ok = serde_json::from_str::<Value>(json).is_ok();
        if syntax_ok {
            prop_assert_eq!(check_readable(json).is_ok(), value_ok, "{}", json);
            if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) {
                // Splitting agrees too, checked or trusting the text.
                for object in [split_checked(json).ok().flatten(), object_members(json)] {
                    let object = object.expect("an object splits");
                    prop_assert_eq!(object.members.len(), map.len(), "{}", json);
                    for member in &object.members {
                        let value = serde_json::from_str::<Value>(member.value).expect("value");
                        prop_assert_eq!(&value, &map[member.key.as_ref()]);
                    }
                }
                let nested = object_members_nested(json, &nested_a_and_b()).expect("an object splits");
                prop_assert_eq!(splits_as_one_at_a_time(&nested, &nested_a_and_b()), Ok(()), "{}", json);
            }
        } else {
            prop_assert!(!value_ok);
        }
        Ok(())
    }

    /// Splits `a` and `b`, and inside `a` its `b`.
    fn nested_a_and_b() -> Nested {
        Nested::NONE.with("a", Nested::NONE.with("b", Nested::NONE)).with("b", Nested::NONE)
    }

    /// A nested split holds what splitting each value on its own would: the same members, and
    /// an object exactly where `nested` names an object.
    fn splits_as_one_at_a_time(object: &RawObject<'_>, nested: &Nested) -> Result<(), String> {
        for member in &object.members {
            let alone = object_members(member.value);
            match (nested.inner(&member.key), &member.object, alone) {
                (None, None, _) | (Some(_), None, None) => {}
                (Some(inner), Some(split), Some(alone)) => {
                    let pairs = |o: &RawObject<'_>| -> Vec<(String, String)> {
                        o.members.iter().map(|m| (m.key.to_string(), m.value.to_owned())).collect()
                    };
                    if pairs(split) != pairs(&alone) {
                        return Err(format!("{:?} split differently", member.key));
                    }
                    splits_as_one_at_a_time(split, inner)?;
                }
                (_, split, alone) => {
                    return Err(format!("{:?}: split {:?}, alone {:?}", member.key, split.is_some(), alone.is_some()));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn splits_the_named_objects_in_the_same_walk() {
        let json = r#"{"a": {"b": {"c": 1}, "x": {"b": 2}}, "b": {"a": {"b": 3}}, "c": {"d": 4}, "b": {"e": 5}}"#;
        let object = object_members_nested(json, &nested_a_and_b()).expect("object");
        assert_eq!(splits_as_one_at_a_time(&object, &nested_a_and_b()), Ok(()));
        fn split<'a>(object: &RawObject<'a>, key: &str) -> Option<RawObject<'a>> {
            object.members.iter().find(|m| m.key == key).expect(key).object.clone()
        }
        let a = split(&object, "a").expect("a is split");
        assert_eq!(split(&a, "b").expect("a.b is split").get("c"), Some("1"));
        assert!(split(&a, "x").is_none(), "a.x is not named");
        assert!(split(&object, "c").is_none(), "c is not named");
        // The last of a repeated key is kept, split.
        assert_eq!(split(&object, "b").expect("b is split").get("e"), Some("5"));
        assert!(object_members_nested(r#"{"a": {"b": }}"#, &nested_a_and_b()).is_none());
    }

    #[test]
    fn refuses_what_a_value_reader_would() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(check_readable(&deep(MAX_MESSAGE_DEPTH)).is_ok());
        assert!(check_readable(&deep(MAX_MESSAGE_DEPTH + 1)).is_err());
        for bad in [r#"{"a":1e400}"#, r#"[-1e309]"#, r#"["\udc00"]"#, r#"["\ud800"]"#, r#"["\ud800\u0041"]"#] {
            assert!(check_readable(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        }
        for good in
            [r#"{"a":1e300,"b":123456789012345678901234567890,"c":-0.0e-999}"#, r#"["\ud83d\ude00","\\ud800","x\"[{"]"#]
        {
            assert!(check_readable(good).is_ok(), "{good}");
            assert!(serde_json::from_str::<Value>(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn keeps_the_last_of_repeated_keys_as_serde_does() {
        for n in [3, 40] {
            let mut text = String::from("{");
            for i in 0..n {
                text.push_str(&format!(r#""k{}":{i},"#, i % 5));
            }
            text.push_str(r#""k\u0031":"last"}"#);
            let object = split_checked(&text).expect("readable").expect("object");
            let value: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("map");
            assert_eq!(object.members.len(), value.len());
            for member in &object.members {
                assert_eq!(serde_json::from_str::<Value>(member.value).expect("value"), value[member.key.as_ref()]);
                assert_eq!(serde_json::from_str::<String>(member.quoted_key).expect("key"), member.key);
            }
            assert_eq!(object.get("k1"), Some(r#""last""#));
        }
    }

    #[test]
    fn splits_exactly_one_object() {
        assert_eq!(
            object_members(" {\"a\" : [1, {\"b\": \"}\"}] }\n").expect("object").get("a"),
            Some("[1, {\"b\": \"}\"}]")
        );
        for not_one in [r#"{"a":1},"b":2}"#, r#"{} {}"#, r#"{"a":1"#, r#"{"a""#, r#"[{}]"#, r#""{}""#, ""] {
            assert!(object_members(not_one).is_none(), "{not_one}");
        }
        assert_eq!(leading_string_len(r#""a\"b",1"#), Some(6));
        assert_eq!(leading_string_len(&format!("\"{}\"", "x".repeat(40))), Some(42));
        assert_eq!(leading_string_len(r#""unterminated"#), None);
    }

    #[test]
    fn writes_strings_as_serde_json_does() {
        for text in ["", "plain", "é ü 한국어 \u{2028}", "quote\"", "back\\slash", "tab\t", "nul\0", "\u{7f}"] {
            let mut out = Vec::new();
            write_json_string(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).expect("json"), "{text:?}");
        }
    }

    #[test]
    fn reads_scalars() {
        assert_eq!(scalar("null"), Scalar::Null);
        assert_eq!(scalar(r#""a\nb""#), Scalar::String("a\nb".into()));
        assert!(matches!(scalar(r#""plain""#), Scalar::String(Cow::Borrowed("plain"))));
        assert_eq!(scalar("1.50"), Scalar::Number(Number::from_f64(1.5).expect("finite")));
        assert_eq!(scalar("true"), Scalar::Bool(true));
        assert_eq!(scalar("[]"), Scalar::Other);
        assert_eq!(scalar("{}"), Scalar::Other);
    }

    fn json_fragment() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just(r#""\ud800""#.to_owned()),
            Just(r#""\ud83d\ude00""#.to_owned()),
            Just(r#""\udfff\ud800""#.to_owned()),
            Just(r#""a\\u0041\"""#.to_owned()),
            "-?[0-9]{1,3}(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
            "[0-9]{15,25}",
            r#""[a-z{}\[\]]{0,5}""#,
        ];
        leaf.prop_recursive(6, 64, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-c]|b\\\\u0061", inner.clone()), 0..4).prop_map(|v| {
                    let members: Vec<String> = v.into_iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
                    format!("{{{}}}", members.join(","))
                }),
                prop::collection::vec(("[a-c]", inner), 0..4).prop_map(|v| {
                    let members: Vec<String> = v.into_iter().map(|(k, v)| format!("\"{k}\" :\t{v}\n")).collect();
                    format!(" {{ {} }}", members.join(" , "))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn the_check_matches_serde_json_values(json in json_fragment()) {
            agrees_with_serde(&json)?;
        }
    }
}
