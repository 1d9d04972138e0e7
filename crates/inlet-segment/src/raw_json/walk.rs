//! Walking JSON text whose syntax is already known to be valid.
//!
//! The gateway checks a body's syntax once, with serde_json, when it splits the body into
//! messages, and the WAL holds only records this program wrote. Every later reading of the
//! same bytes (splitting a message into members, reading its `context`, decoding a record in
//! the lake writer) therefore only has to find where values end: strings are skipped with
//! `memchr`, containers by counting brackets outside strings. That is several times cheaper
//! than a second validating parse, which was the largest cost of a batch.
//!
//! The walk never panics and never indexes past the text, whatever it is given; on text that
//! is not valid JSON it answers an error or a split the caller's own reading then refuses.
//!
//! The checked walk (`CHECKED = true`) also refuses what serde_json's syntax check lets
//! through but its `Value` reader (used by every consumer of the WAL) would refuse: nesting
//! deeper than [`MAX_MESSAGE_DEPTH`], a lone UTF-16 surrogate escape, a number beyond a double.

use std::borrow::Cow;

use memchr::memchr2;

use super::{Member, Nested, RawObject};

/// The deepest nesting accepted in a message, counting the message's own braces. The stored
/// record wraps the message once more, which must stay within the 128 levels serde_json reads.
pub const MAX_MESSAGE_DEPTH: usize = 100;

const MALFORMED: &str = "malformed JSON";
/// Bytes of a string searched eight at a time before the rest is searched with `memchr`,
/// whose setup costs more than most strings in a message are long.
const SHORT_STRING: usize = 64;
const LONE_SURROGATE: &str = "a string holds a lone UTF-16 surrogate escape";

pub(super) struct Walk<'a, const CHECKED: bool> {
    text: &'a str,
    bytes: &'a [u8],
}

impl<'a, const CHECKED: bool> Walk<'a, CHECKED> {
    pub(super) fn new(text: &'a str) -> Self {
        Walk { text, bytes: text.as_bytes() }
    }

    /// The top-level members when the text is an object (and nothing after it), `None` when
    /// it is another value. The objects `nested` names are split in the same walk.
    pub(super) fn members(&self, nested: &Nested) -> Result<Option<RawObject<'a>>, String> {
        let start = self.skip_whitespace(0);
        if self.bytes.get(start) != Some(&b'{') {
            return Ok(None);
        }
        let (object, end) = self.object_at(start, 1, nested)?;
        if self.skip_whitespace(end) != self.bytes.len() {
            return Err(MALFORMED.into());
        }
        Ok(Some(object))
    }

    /// Splits the object whose opening brace is at `start`, at nesting `depth` (its own braces
    /// counted); answers it and where it ends.
    fn object_at(&self, start: usize, depth: usize, nested: &Nested) -> Result<(RawObject<'a>, usize), String> {
        let mut object = RawObject { members: Vec::with_capacity(16) };
        let mut i = self.skip_whitespace(start + 1);
        if self.bytes.get(i) != Some(&b'}') {
            i = self.members_from(i, depth, nested, &mut object)?;
        }
        object.keep_last_of_each_key();
        Ok((object, i + 1))
    }

    /// Reads members from the first key's quote; answers where the closing brace is.
    fn members_from(
        &self,
        mut i: usize,
        depth: usize,
        nested: &Nested,
        object: &mut RawObject<'a>,
    ) -> Result<usize, String> {
        loop {
            if self.bytes.get(i) != Some(&b'"') {
                return Err(MALFORMED.into());
            }
            let key_end = self.string_end(i + 1)?;
            let quoted_key = self.text.get(i..key_end).ok_or(MALFORMED)?;
            let key = unescaped_key(quoted_key)?;
            i = self.skip_whitespace(key_end);
            if self.bytes.get(i) != Some(&b':') {
                return Err(MALFORMED.into());
            }
            let value_start = self.skip_whitespace(i + 1);
            let (value_end, split) = match nested.inner(&key) {
                Some(inner) if self.bytes.get(value_start) == Some(&b'{') => {
                    if CHECKED && depth + 1 > MAX_MESSAGE_DEPTH {
                        return Err(format!("nested deeper than {MAX_MESSAGE_DEPTH} levels"));
                    }
                    let (split, end) = self.object_at(value_start, depth + 1, inner)?;
                    (end, Some(split))
                }
                _ => (self.value_end(value_start, depth)?, None),
            };
            let value = self.text.get(value_start..value_end).ok_or(MALFORMED)?;
            object.members.push(Member { key, quoted_key, value, object: split });
            i = self.skip_whitespace(value_end);
            match self.bytes.get(i) {
                Some(b',') => i = self.skip_whitespace(i + 1),
                Some(b'}') => return Ok(i),
                _ => return Err(MALFORMED.into()),
            }
        }
    }

    /// Where the value starting at `start` ends; `outer_depth` is the nesting around it.
    pub(super) fn value_end(&self, start: usize, outer_depth: usize) -> Result<usize, String> {
        match self.bytes.get(start) {
            Some(b'"') => self.string_end(start + 1),
            Some(b'{' | b'[') => self.container_end(start, outer_depth),
            Some(b'-' | b'0'..=b'9') => self.number_end(start),
            Some(b't' | b'f' | b'n') => {
                let mut end = start;
                while self.bytes.get(end).is_some_and(u8::is_ascii_alphabetic) {
                    end += 1;
                }
                Ok(end)
            }
            _ => Err(MALFORMED.into()),
        }
    }

    pub(super) fn skip_whitespace(&self, mut i: usize) -> usize {
        while matches!(self.bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    /// From just after an opening quote to just after the closing one.
    pub(super) fn string_end(&self, mut i: usize) -> Result<usize, String> {
        loop {
            let rest = self.bytes.get(i..).ok_or(MALFORMED)?;
            let at = i + quote_or_backslash(rest).ok_or(MALFORMED)?;
            if self.bytes[at] == b'"' {
                return Ok(at + 1);
            }
            i = if CHECKED && self.bytes.get(at + 1) == Some(&b'u') { self.unicode_escape_end(at)? } else { at + 2 };
        }
    }

    /// `\u` escapes must pair their surrogates (serde_json refuses a lone one when it builds
    /// a string). `at` is the backslash.
    fn unicode_escape_end(&self, at: usize) -> Result<usize, String> {
        let unit = self.hex_unit(at + 2);
        if (0xDC00..0xE000).contains(&unit) {
            return Err(LONE_SURROGATE.into());
        }
        if !(0xD800..0xDC00).contains(&unit) {
            return Ok(at + 6);
        }
        let paired = self.bytes.get(at + 6) == Some(&b'\\') && self.bytes.get(at + 7) == Some(&b'u');
        if !paired || !(0xDC00..0xE000).contains(&self.hex_unit(at + 8)) {
            return Err(LONE_SURROGATE.into());
        }
        Ok(at + 12)
    }

    /// The four hex digits at `at` (anything else reads as 0).
    fn hex_unit(&self, at: usize) -> u32 {
        self.text.get(at..at + 4).and_then(|hex| u32::from_str_radix(hex, 16).ok()).unwrap_or(0)
    }

    /// From an opening bracket to just after the bracket that closes it.
    fn container_end(&self, start: usize, outer_depth: usize) -> Result<usize, String> {
        let mut depth = 0usize;
        let mut i = start;
        loop {
            match self.bytes.get(i) {
                None => return Err(MALFORMED.into()),
                Some(b'{' | b'[') => {
                    depth += 1;
                    if CHECKED && outer_depth + depth > MAX_MESSAGE_DEPTH {
                        return Err(format!("nested deeper than {MAX_MESSAGE_DEPTH} levels"));
                    }
                    i += 1;
                }
                Some(b'}' | b']') => {
                    depth = depth.saturating_sub(1);
                    i += 1;
                    if depth == 0 {
                        return Ok(i);
                    }
                }
                Some(b'"') => i = self.string_end(i + 1)?,
                Some(b'-' | b'0'..=b'9') if CHECKED => i = self.number_end(i)?,
                Some(_) => i += 1,
            }
        }
    }

    /// Checked, a number must fit a double (serde_json reads integers beyond 64 bits as
    /// doubles too).
    fn number_end(&self, start: usize) -> Result<usize, String> {
        let mut end = start;
        while matches!(self.bytes.get(end), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
            end += 1;
        }
        if CHECKED {
            let token = self.text.get(start..end).ok_or(MALFORMED)?;
            let plain_integer = token.len() < 19 && !token.contains(['.', 'e', 'E']);
            if !plain_integer && !token.parse::<f64>().is_ok_and(f64::is_finite) {
                return Err(format!("the number {} is beyond the range of a double", &token[..token.len().min(40)]));
            }
        }
        Ok(end)
    }
}

/// A key's text without its quotes, unescaped when it has escapes.
fn unescaped_key(quoted: &str) -> Result<Cow<'_, str>, String> {
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(quoted).map(Cow::Owned).map_err(|_| MALFORMED.into())
}

/// Where the first `"` or `\\` is.
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = ONES << 7;
    // Bytes equal to `byte` get their high bit set; a false positive can only follow a true
    // one, so the lowest flagged byte is always the first match.
    let flag = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let short = bytes.len().min(SHORT_STRING);
    let mut chunks = bytes[..short].chunks_exact(8);
    let mut offset = 0;
    for chunk in chunks.by_ref() {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let flags = flag(word, b'"') | flag(word, b'\\');
        if flags != 0 {
            return Some(offset + flags.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    if let Some(at) = chunks.remainder().iter().position(|&b| b == b'"' || b == b'\\') {
        return Some(offset + at);
    }
    memchr2(b'"', b'\\', &bytes[short..]).map(|at| short + at)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn finds_the_first_quote_or_backslash(text in r#"[a-zé]{0,120}[a-z"\\é]{0,4}[a-z"\\\x00\x7f]{0,60}"#) {
            let naive = text.bytes().position(|b| b == b'"' || b == b'\\');
            prop_assert_eq!(quote_or_backslash(text.as_bytes()), naive);
        }
    }
}
