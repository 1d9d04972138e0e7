//! Reading messages without building `serde_json::Value` trees, which dominated the
//! normaliser's cost (allocating every nested map, then serialising it again).
//!
//! A message is split at its top level into (key, raw value) pairs; the few fields the spec
//! rules on are read as scalars, and everything else is copied into the stored record as the
//! client wrote it. That copy is safe only because [`check_readable`] first refuses what
//! serde_json's syntax check lets through but its `Value` reader (used by every consumer of
//! the WAL) would refuse: deep nesting, lone UTF-16 surrogates and numbers beyond a double.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Number;
use serde_json::value::RawValue;

/// The deepest nesting accepted in a message, counting the message's own braces. The stored
/// record wraps the message once more, which must stay within the 128 levels serde_json reads.
pub const MAX_MESSAGE_DEPTH: usize = 100;

/// Checks that syntactically valid JSON is also readable as a `serde_json::Value`. Says why
/// not, in a phrase for the client.
pub fn check_readable(json: &str) -> Result<(), String> {
    let bytes = json.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_MESSAGE_DEPTH {
                    return Err(format!("nested deeper than {MAX_MESSAGE_DEPTH} levels"));
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'"' => i = check_string(bytes, i + 1)?,
            b'-' | b'0'..=b'9' => i = check_number(json, i)?,
            _ => i += 1,
        }
    }
    Ok(())
}

/// From just after an opening quote to just after the closing one: `\u` escapes must pair
/// their surrogates (serde_json refuses a lone one when it builds a string).
fn check_string(bytes: &[u8], mut i: usize) -> Result<usize, String> {
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok(i + 1),
            b'\\' if bytes.get(i + 1) == Some(&b'u') => {
                let unit = hex_unit(bytes, i + 2);
                if (0xDC00..0xE000).contains(&unit) {
                    return Err("a string holds a lone UTF-16 surrogate escape".into());
                }
                if (0xD800..0xDC00).contains(&unit) {
                    let low = (bytes.get(i + 6) == Some(&b'\\') && bytes.get(i + 7) == Some(&b'u'))
                        .then(|| hex_unit(bytes, i + 8));
                    if !low.is_some_and(|low| (0xDC00..0xE000).contains(&low)) {
                        return Err("a string holds a lone UTF-16 surrogate escape".into());
                    }
                    i += 12;
                } else {
                    i += 6;
                }
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Ok(i)
}

/// The four hex digits at `at` (the syntax was checked already; anything else reads as 0).
fn hex_unit(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// A number must fit a double (serde_json reads integers beyond 64 bits as doubles too).
fn check_number(json: &str, start: usize) -> Result<usize, String> {
    let bytes = json.as_bytes();
    let mut end = start;
    while end < bytes.len() && matches!(bytes[end], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
        end += 1;
    }
    let token = &json[start..end];
    let plain_integer = token.len() < 19 && !token.contains(['.', 'e', 'E']);
    if !plain_integer && !token.parse::<f64>().is_ok_and(f64::is_finite) {
        return Err(format!("the number {} is beyond the range of a double", &token[..token.len().min(40)]));
    }
    Ok(end)
}

/// An object's members in order, each value still raw. A repeated key keeps its last value,
/// as serde_json's own map does.
#[derive(Debug, Default)]
pub struct RawObject<'a> {
    pub members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// Above this many members, repeated keys are found with a hash map instead of a scan.
const LINEAR_DEDUPE_MEMBERS: usize = 16;

impl<'a> RawObject<'a> {
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    fn keep_last_of_each_key(&mut self) {
        if self.members.len() <= LINEAR_DEDUPE_MEMBERS {
            let mut i = 0;
            while i < self.members.len() {
                let repeated = self.members[i + 1..].iter().any(|(k, _)| *k == self.members[i].0);
                if repeated {
                    self.members.remove(i);
                } else {
                    i += 1;
                }
            }
            return;
        }
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(self.members.len());
        for (index, (key, _)) in self.members.iter().enumerate() {
            last.insert(key, index);
        }
        if last.len() == self.members.len() {
            return;
        }
        let keep: Vec<bool> = self.members.iter().enumerate().map(|(i, (k, _))| last[k.as_ref()] == i).collect();
        let mut flags = keep.into_iter();
        self.members.retain(|_| flags.next().unwrap_or(true));
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<RawObject<'de>, M::Error> {
                let mut object = RawObject { members: Vec::with_capacity(map.size_hint().unwrap_or(16)) };
                while let Some(JsonStr(key)) = map.next_key()? {
                    object.members.push((key, map.next_value()?));
                }
                object.keep_last_of_each_key();
                Ok(object)
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
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

pub fn scalar(raw: &RawValue) -> Scalar<'_> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'n') => Scalar::Null,
        // Without escapes the text between the quotes is the string (the syntax was checked).
        Some(b'"') if !text.contains('\\') => Scalar::String(Cow::Borrowed(&text[1..text.len() - 1])),
        Some(b'"') => serde_json::from_str::<JsonStr<'_>>(text).map_or(Scalar::Other, |s| Scalar::String(s.0)),
        Some(b'-' | b'0'..=b'9') => serde_json::from_str(text).map_or(Scalar::Other, Scalar::Number),
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        _ => Scalar::Other,
    }
}

pub fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

pub fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

/// The members of a raw value, when it is an object.
pub fn object_members(raw: &RawValue) -> Option<RawObject<'_>> {
    is_object(raw).then(|| serde_json::from_str(raw.get()).ok()).flatten()
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
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_json_string(self.out, key);
        self.out.push(b':');
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
    serde_json::to_writer(out, value).expect("writing to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// What `check_readable` adds to the syntax check must be exactly what `Value` refuses.
    fn agrees_with_serde(json: &str) -> Result<(), TestCaseError> {
        let syntax_ok = serde_json::from_str::<&RawValue>(json).is_ok();
        let value_ok = serde_json::from_str::<Value>(json).is_ok();
        if syntax_ok {
            prop_assert_eq!(check_readable(json).is_ok(), value_ok, "{}", json);
        } else {
            prop_assert!(!value_ok);
        }
        Ok(())
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
            let object: RawObject<'_> = serde_json::from_str(&text).expect("object");
            let value: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("map");
            assert_eq!(object.members.len(), value.len());
            for (key, raw) in &object.members {
                assert_eq!(serde_json::from_str::<Value>(raw.get()).expect("value"), value[key.as_ref()]);
            }
            assert_eq!(object.get("k1").map(RawValue::get), Some(r#""last""#));
        }
    }

    #[test]
    fn reads_scalars() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).expect("raw");
        assert_eq!(scalar(&raw("null")), Scalar::Null);
        assert_eq!(scalar(&raw(r#""a\nb""#)), Scalar::String("a\nb".into()));
        assert!(matches!(scalar(&raw(r#""plain""#)), Scalar::String(Cow::Borrowed("plain"))));
        assert_eq!(scalar(&raw("1.50")), Scalar::Number(Number::from_f64(1.5).expect("finite")));
        assert_eq!(scalar(&raw("true")), Scalar::Bool(true));
        assert_eq!(scalar(&raw("[]")), Scalar::Other);
        assert_eq!(scalar(&raw("{}")), Scalar::Other);
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
                prop::collection::vec(("[a-c]", inner), 0..4).prop_map(|v| {
                    let members: Vec<String> = v.into_iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_check_matches_serde_json_values(json in json_fragment()) {
            agrees_with_serde(&json)?;
        }
    }
}
