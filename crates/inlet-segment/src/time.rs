//! Lenient ISO-8601 parsing and the one output format.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, Timelike, Utc};

/// Parses the timestamps SDKs send: RFC 3339 (`Z` or `±hh:mm`, any fraction up to nanoseconds),
/// offsets without a colon (`+0000`), a space instead of `T`, and, read as UTC, date-times
/// without an offset and bare dates.
pub fn parse_timestamp(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Some(t) = parse_utc_rfc3339(value) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(value, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// The one shape nearly every timestamp has, the stored format included:
/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, read without chrono's general parser (which cost as much
/// as the rest of a lake row). `None`: another shape, for the general parsers.
fn parse_utc_rfc3339(value: &str) -> Option<DateTime<Utc>> {
    let bytes = value.as_bytes();
    let (head, rest) = (bytes.get(..19)?, &bytes[19..]);
    let number = |range: std::ops::Range<usize>| {
        head[range].iter().try_fold(0u32, |n, &b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if !separators.iter().all(|&(at, separator)| head[at] == separator) || rest.last() != Some(&b'Z') {
        return None;
    }
    let fraction = &rest[..rest.len() - 1];
    let nanos = match fraction.split_first() {
        None => 0,
        Some((b'.', digits)) if (1..=9).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) => {
            let value = digits.iter().fold(0u32, |n, &b| n * 10 + u32::from(b - b'0'));
            value * 10u32.pow(9 - digits.len() as u32)
        }
        Some(_) => return None,
    };
    let second = number(17..19)?;
    if second > 59 {
        return None; // a leap second: chrono's parser knows how to read it
    }
    let date = NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)?;
    Some(date.and_hms_nano_opt(number(11..13)?, number(14..16)?, second, nanos)?.and_utc())
}

/// Formats a timestamp as stored: UTC, `Z`, exactly six fractional digits (microseconds, the
/// lake's precision; anything finer is truncated).
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    let mut out = Vec::with_capacity(27);
    push_timestamp(&mut out, t);
    String::from_utf8(out).expect("ASCII")
}

/// Appends [`format_timestamp`]'s text. Written digit by digit for the common case (four-digit
/// years, no leap second): chrono's general formatter was a tenth of a message's cost.
pub fn push_timestamp(out: &mut Vec<u8>, t: DateTime<Utc>) {
    let (date, time) = (t.date_naive(), t.time());
    let micros = time.nanosecond() / 1000;
    if !(0..=9999).contains(&date.year()) || micros >= 1_000_000 {
        let truncated = DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t);
        out.extend_from_slice(truncated.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
        return;
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    for (value, end) in [
        (date.year() as u32, 4),
        (date.month(), 7),
        (date.day(), 10),
        (time.hour(), 13),
        (time.minute(), 16),
        (time.second(), 19),
        (micros, 26),
    ] {
        let (mut value, mut at) = (value, end);
        while value > 0 {
            at -= 1;
            text[at] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    out.extend_from_slice(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_sdks_send() {
        let cases = [
            ("2024-03-01T12:00:00Z", "2024-03-01T12:00:00.000000Z"),
            ("2024-03-01T12:00:00.123Z", "2024-03-01T12:00:00.123000Z"),
            ("2024-03-01T12:00:00.123456+00:00", "2024-03-01T12:00:00.123456Z"),
            ("2024-03-01T12:00:00.123456789Z", "2024-03-01T12:00:00.123456Z"),
            ("2024-03-01T21:00:00+09:00", "2024-03-01T12:00:00.000000Z"),
            ("2024-03-01T12:00:00.000+0000", "2024-03-01T12:00:00.000000Z"),
            ("2024-03-01T07:00:00-0500", "2024-03-01T12:00:00.000000Z"),
            ("2024-03-01 12:00:00Z", "2024-03-01T12:00:00.000000Z"),
            ("2024-03-01T12:00:00", "2024-03-01T12:00:00.000000Z"),
            ("2024-03-01T12:00:00.5", "2024-03-01T12:00:00.500000Z"),
            ("2024-03-01", "2024-03-01T00:00:00.000000Z"),
        ];
        for (input, expected) in cases {
            let parsed = parse_timestamp(input).unwrap_or_else(|| panic!("{input} should parse"));
            assert_eq!(format_timestamp(parsed), expected, "{input}");
        }
    }

    #[test]
    fn reads_the_common_shape_as_chrono_does() {
        let cases = [
            "2024-03-01T12:00:00Z",
            "2024-03-01T12:00:00.1Z",
            "2024-03-01T12:00:00.123Z",
            "2024-03-01T12:00:00.123456789Z",
            "0001-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "2024-02-29T23:59:59Z",
        ];
        for value in cases {
            let expected = DateTime::parse_from_rfc3339(value).expect("valid").with_timezone(&Utc);
            assert_eq!(parse_utc_rfc3339(value), Some(expected), "{value}");
        }
        let others = [
            "2023-02-29T00:00:00Z",
            "2024-03-01T24:00:00Z",
            "2016-12-31T23:59:60Z",
            "2024-03-01T12:00:00.Z",
            "2024-03-01T12:00:00.1234567890Z",
            "2024-03-01T12:00:00+00:00",
            "2024-03-01 12:00:00Z",
            "2024-3-01T12:00:00Z",
            "+2024-03-01T12:00:00Z",
            "2024-03-01T12:00:0éZ",
        ];
        for value in others {
            assert_eq!(parse_utc_rfc3339(value), None, "{value}");
        }
        let leap = parse_timestamp("2016-12-31T23:59:60.5Z").expect("chrono reads leap seconds");
        assert_eq!(leap, DateTime::parse_from_rfc3339("2016-12-31T23:59:60.5Z").expect("valid").with_timezone(&Utc));
    }

    #[test]
    fn formats_as_chrono_does() {
        let micros = [0, 1, 999_999, 1_709_294_400_123_456, 253_402_300_799_999_999, -1, -62_167_219_200_000_000];
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31).and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000));
        let times = micros.into_iter().filter_map(DateTime::from_timestamp_micros).chain([
            DateTime::from_timestamp_micros(253_402_300_800_000_000).expect("year 10000"),
            DateTime::from_timestamp_nanos(1_709_294_400_123_456_789),
            leap.expect("leap second").and_utc(),
        ]);
        for t in times {
            let truncated = DateTime::from_timestamp_micros(t.timestamp_micros()).expect("in range");
            assert_eq!(format_timestamp(t), truncated.to_rfc3339_opts(SecondsFormat::Micros, true), "{t:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_timestamp() {
        for input in ["", "yesterday", "1709294400000", "2024-13-01T00:00:00Z", "2024-03-01T25:00:00Z", "12:00:00"] {
            assert!(parse_timestamp(input).is_none(), "{input:?} should not parse");
        }
    }
}
