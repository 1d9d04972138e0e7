//! Lenient ISO-8601 parsing and the one output format.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Parses the timestamps SDKs send: RFC 3339 (`Z` or `±hh:mm`, any fraction up to nanoseconds),
/// offsets without a colon (`+0000`), a space instead of `T`, and, read as UTC, date-times
/// without an offset and bare dates.
pub fn parse_timestamp(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
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

/// Formats a timestamp as stored: UTC, `Z`, exactly six fractional digits (microseconds, the
/// lake's precision; anything finer is truncated).
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(t).to_rfc3339_opts(SecondsFormat::Micros, true)
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
    fn refuses_what_is_not_a_timestamp() {
        for input in ["", "yesterday", "1709294400000", "2024-13-01T00:00:00Z", "2024-03-01T25:00:00Z", "12:00:00"] {
            assert!(parse_timestamp(input).is_none(), "{input:?} should not parse");
        }
    }
}
