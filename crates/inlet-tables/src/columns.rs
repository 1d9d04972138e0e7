//! Arrow columns built from database values: PostgreSQL's binary `COPY` format and the text
//! both engines render (MySQL's text protocol, PostgreSQL's `::text` casts).
//!
//! Values the lake cannot hold are never guessed at: MySQL's zero dates (`0000-00-00`, and
//! dates with a zero month or day) and PostgreSQL's `±infinity` become NULL and are counted per
//! column in the manifest; anything else unreadable stops the table with the column's name.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::types::Kind;

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const POSTGRES_EPOCH_DAYS: i32 = 10_957;
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// One value the column cannot take; the caller names the table and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

type Result<T> = std::result::Result<T, ValueError>;

fn bad<T>(kind: Kind, text: &[u8]) -> Result<T> {
    let shown = String::from_utf8_lossy(&text[..text.len().min(60)]).into_owned();
    Err(ValueError(format!("{shown:?} is not a valid {}", kind.name())))
}

enum Builder {
    Boolean(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder),
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

/// One column of the batch being built.
pub struct Column {
    kind: Kind,
    builder: Builder,
    /// Zone of wall-clock timestamps (`None`: UTC, no conversion).
    zone: Option<Tz>,
    /// The salt of a hashed column (its values become hex SHA-256 text).
    salt: Option<Arc<[u8]>>,
    /// Values stored as NULL because the lake cannot hold them (zero dates, infinities).
    pub nulled: u64,
}

impl std::fmt::Debug for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Column").field("kind", &self.kind).field("hashed", &self.salt.is_some()).finish()
    }
}

impl Column {
    pub fn new(kind: Kind, zone: Option<Tz>, salt: Option<Arc<[u8]>>, capacity: usize) -> Column {
        let kind = if salt.is_some() { Kind::Text } else { kind };
        let builder = match kind {
            Kind::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
            Kind::Int16 => Builder::Int16(Int16Builder::with_capacity(capacity)),
            Kind::Int32 => Builder::Int32(Int32Builder::with_capacity(capacity)),
            Kind::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
            Kind::Float32 => Builder::Float32(Float32Builder::with_capacity(capacity)),
            Kind::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
            Kind::Decimal { precision, scale } => Builder::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(precision, scale)
                    .unwrap_or_else(|_| Decimal128Builder::with_capacity(capacity)),
            ),
            Kind::Text => Builder::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
            Kind::Binary => Builder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            Kind::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
            Kind::Time => Builder::Time(Time64MicrosecondBuilder::with_capacity(capacity)),
            Kind::Timestamp { .. } => {
                Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
            }
        };
        let zone = match kind {
            Kind::Timestamp { local: true } => zone.filter(|zone| *zone != Tz::UTC),
            _ => None,
        };
        Column { kind, builder, zone, salt, nulled: 0 }
    }

    pub fn append_null(&mut self) {
        match &mut self.builder {
            Builder::Boolean(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Decimal(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
        }
    }

    fn nulled(&mut self) {
        self.nulled += 1;
        self.append_null();
    }

    /// A value in PostgreSQL's binary format (as `COPY … (FORMAT binary)` sends it); columns
    /// the query casts to text arrive as UTF-8.
    pub fn append_postgres(&mut self, value: Option<&[u8]>) -> Result<()> {
        let Some(bytes) = value else {
            self.append_null();
            return Ok(());
        };
        if self.salt.is_some() {
            return self.append_text(Some(bytes));
        }
        let kind = self.kind;
        let fixed = |n: usize| -> Result<&[u8]> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(ValueError(format!("{} bytes for a {}", bytes.len(), kind.name())))
            }
        };
        match &mut self.builder {
            Builder::Boolean(b) => b.append_value(fixed(1)?[0] != 0),
            Builder::Int16(b) => b.append_value(i16::from_be_bytes(fixed(2)?.try_into().unwrap_or_default())),
            Builder::Int32(b) => b.append_value(i32::from_be_bytes(fixed(4)?.try_into().unwrap_or_default())),
            Builder::Int64(b) => b.append_value(i64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default())),
            Builder::Float32(b) => b.append_value(f32::from_be_bytes(fixed(4)?.try_into().unwrap_or_default())),
            Builder::Float64(b) => b.append_value(f64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default())),
            Builder::Date(b) => match i32::from_be_bytes(fixed(4)?.try_into().unwrap_or_default()) {
                i32::MAX | i32::MIN => self.nulled(),
                days => b.append_value(days + POSTGRES_EPOCH_DAYS),
            },
            Builder::Time(b) => b.append_value(i64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default())),
            Builder::Timestamp(_) => match i64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default()) {
                i64::MAX | i64::MIN => self.nulled(),
                micros => {
                    let micros = micros + POSTGRES_EPOCH_MICROS;
                    let utc = match self.zone {
                        Some(zone) => local_to_utc(zone, micros),
                        None => micros,
                    };
                    if let Builder::Timestamp(b) = &mut self.builder {
                        b.append_value(utc);
                    }
                }
            },
            Builder::Binary(b) => b.append_value(bytes),
            Builder::Text(_) | Builder::Decimal(_) => return self.append_text(Some(bytes)),
        }
        Ok(())
    }

    /// A value as the database renders it as text.
    pub fn append_text(&mut self, value: Option<&[u8]>) -> Result<()> {
        let Some(bytes) = value else {
            self.append_null();
            return Ok(());
        };
        if let Some(salt) = &self.salt {
            let mut hasher = Sha256::new();
            hasher.update(salt);
            hasher.update(bytes);
            let digest = hasher.finalize();
            let mut hex = [0u8; 64];
            for (i, byte) in digest.iter().enumerate() {
                hex[2 * i] = HEX[usize::from(byte >> 4)];
                hex[2 * i + 1] = HEX[usize::from(byte & 15)];
            }
            if let Builder::Text(b) = &mut self.builder {
                b.append_value(std::str::from_utf8(&hex).unwrap_or_default());
            }
            return Ok(());
        }
        let kind = self.kind;
        let text = || std::str::from_utf8(bytes).map_err(|_| ValueError(format!("invalid UTF-8 in a {}", kind.name())));
        match &mut self.builder {
            Builder::Boolean(b) => match bytes {
                b"t" | b"true" | b"1" => b.append_value(true),
                b"f" | b"false" | b"0" => b.append_value(false),
                // TINYINT(1) holds -128..127: any other number is true, as MySQL's IF() reads it.
                _ => b.append_value(
                    text()?.parse::<i16>().map_err(|_| ValueError(format!("{bytes:?} is not a boolean")))? != 0,
                ),
            },
            Builder::Int16(b) => b.append_value(text()?.parse().or_else(|_| bad(kind, bytes))?),
            Builder::Int32(b) => b.append_value(text()?.parse().or_else(|_| bad(kind, bytes))?),
            Builder::Int64(b) => b.append_value(text()?.parse().or_else(|_| bad(kind, bytes))?),
            Builder::Float32(b) => b.append_value(text()?.parse().or_else(|_| bad(kind, bytes))?),
            Builder::Float64(b) => b.append_value(text()?.parse().or_else(|_| bad(kind, bytes))?),
            Builder::Decimal(b) => {
                let Kind::Decimal { precision, scale } = kind else { return bad(kind, bytes) };
                b.append_value(parse_decimal(bytes, precision, scale).ok_or_else(|| {
                    ValueError(format!("{:?} does not fit {}", String::from_utf8_lossy(bytes), kind.name()))
                })?)
            }
            Builder::Text(b) => b.append_value(text()?),
            Builder::Binary(b) => b.append_value(bytes),
            Builder::Date(b) => match parse_date(bytes) {
                Some(Some(date)) => b.append_value(days_since_epoch(date)),
                Some(None) => self.nulled(),
                None => return bad(kind, bytes),
            },
            Builder::Time(b) => match parse_time(text()?) {
                Some(time) => b.append_value(time),
                None => {
                    return Err(ValueError(format!(
                        "{:?} is not a time of day (MySQL TIME also holds durations: cast the column to char)",
                        String::from_utf8_lossy(bytes)
                    )));
                }
            },
            Builder::Timestamp(_) => {
                let (date, time) = match bytes.iter().position(|b| *b == b' ' || *b == b'T') {
                    Some(at) => (&bytes[..at], &bytes[at + 1..]),
                    None => (bytes, &b"00:00:00"[..]),
                };
                match (parse_date(date), std::str::from_utf8(time).ok().and_then(parse_time)) {
                    (Some(None), _) => self.nulled(),
                    (Some(Some(date)), Some(time)) => {
                        let micros = i64::from(days_since_epoch(date)) * MICROS_PER_DAY + time;
                        let utc = match self.zone {
                            Some(zone) => local_to_utc(zone, micros),
                            None => micros,
                        };
                        if let Builder::Timestamp(b) = &mut self.builder {
                            b.append_value(utc);
                        }
                    }
                    _ => return bad(kind, bytes),
                }
            }
        }
        Ok(())
    }

    /// An integer (MySQL's binary protocol sends every signed integer type as one).
    pub fn append_i64(&mut self, value: i64) -> Result<()> {
        let kind = self.kind;
        let range = || ValueError(format!("{value} does not fit {}", kind.name()));
        match &mut self.builder {
            _ if self.salt.is_some() => return self.append_text(Some(value.to_string().as_bytes())),
            Builder::Boolean(b) => b.append_value(value != 0),
            Builder::Int16(b) => b.append_value(i16::try_from(value).map_err(|_| range())?),
            Builder::Int32(b) => b.append_value(i32::try_from(value).map_err(|_| range())?),
            Builder::Int64(b) => b.append_value(value),
            Builder::Float32(b) => b.append_value(value as f32),
            Builder::Float64(b) => b.append_value(value as f64),
            Builder::Decimal(b) => {
                let Kind::Decimal { scale, .. } = kind else { return Err(range()) };
                let scaled = 10i128
                    .checked_pow(u32::try_from(scale).map_err(|_| range())?)
                    .and_then(|f| f.checked_mul(i128::from(value)));
                b.append_value(scaled.ok_or_else(range)?)
            }
            Builder::Text(b) => b.append_value(value.to_string()),
            _ => return Err(ValueError(format!("an integer for a {}", kind.name()))),
        }
        Ok(())
    }

    /// An unsigned integer (MySQL `BIGINT UNSIGNED` up to 2^64 - 1).
    pub fn append_u64(&mut self, value: u64) -> Result<()> {
        match i64::try_from(value) {
            Ok(signed) => self.append_i64(signed),
            Err(_) => match &mut self.builder {
                Builder::Decimal(b) if self.salt.is_none() && matches!(self.kind, Kind::Decimal { scale: 0, .. }) => {
                    b.append_value(i128::from(value));
                    Ok(())
                }
                _ if self.salt.is_some() || matches!(self.kind, Kind::Text) => {
                    self.append_text(Some(value.to_string().as_bytes()))
                }
                _ => Err(ValueError(format!("{value} does not fit {}", self.kind.name()))),
            },
        }
    }

    pub fn append_f64(&mut self, value: f64) -> Result<()> {
        match &mut self.builder {
            _ if self.salt.is_some() => return self.append_text(Some(value.to_string().as_bytes())),
            Builder::Float64(b) => b.append_value(value),
            Builder::Float32(b) => b.append_value(value as f32),
            Builder::Text(b) => b.append_value(value.to_string()),
            _ => return Err(ValueError(format!("a float for a {}", self.kind.name()))),
        }
        Ok(())
    }

    pub fn append_f32(&mut self, value: f32) -> Result<()> {
        match &mut self.builder {
            Builder::Float32(b) if self.salt.is_none() => {
                b.append_value(value);
                Ok(())
            }
            _ => self.append_f64(f64::from(value)),
        }
    }

    /// A date or date and time in parts (MySQL's binary protocol); all-zero parts are MySQL's
    /// zero date.
    pub fn append_datetime(&mut self, parts: [u32; 7]) -> Result<()> {
        let [year, month, day, hour, minute, second, micros] = parts;
        if year == 0 || month == 0 || day == 0 {
            if self.salt.is_some() || matches!(self.kind, Kind::Text) {
                return self.append_text(Some(format!("{year:04}-{month:02}-{day:02}").as_bytes()));
            }
            self.nulled();
            return Ok(());
        }
        let date = NaiveDate::from_ymd_opt(year as i32, month, day)
            .ok_or_else(|| ValueError(format!("{year}-{month}-{day} is not a date")))?;
        let time_micros =
            (i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)) * 1_000_000 + i64::from(micros);
        match &mut self.builder {
            _ if self.salt.is_some() || matches!(self.kind, Kind::Text) => {
                let text = format!("{date} {hour:02}:{minute:02}:{second:02}.{micros:06}");
                return self.append_text(Some(text.as_bytes()));
            }
            Builder::Date(b) => b.append_value(days_since_epoch(date)),
            Builder::Timestamp(b) => {
                let micros = i64::from(days_since_epoch(date)) * MICROS_PER_DAY + time_micros;
                b.append_value(match self.zone {
                    Some(zone) => local_to_utc(zone, micros),
                    None => micros,
                })
            }
            _ => return Err(ValueError(format!("a date for a {}", self.kind.name()))),
        }
        Ok(())
    }

    /// A MySQL `TIME` in parts: only a time of day (0 to 24 hours) fits the lake's `time`.
    pub fn append_time(&mut self, negative: bool, days: u32, parts: [u32; 4]) -> Result<()> {
        let [hour, minute, second, micros] = parts;
        let total = (i64::from(days) * 24 + i64::from(hour)) * 3_600_000_000
            + (i64::from(minute) * 60 + i64::from(second)) * 1_000_000
            + i64::from(micros);
        match &mut self.builder {
            _ if self.salt.is_some() || matches!(self.kind, Kind::Text) => {
                let sign = if negative { "-" } else { "" };
                let hours = i64::from(days) * 24 + i64::from(hour);
                let text = format!("{sign}{hours:02}:{minute:02}:{second:02}.{micros:06}");
                self.append_text(Some(text.as_bytes()))
            }
            Builder::Time(b) if !negative && total < MICROS_PER_DAY => {
                b.append_value(total);
                Ok(())
            }
            _ => Err(ValueError(format!(
                "{}{}h{minute}m{second}s is not a time of day (MySQL TIME also holds durations: cast the column to char)",
                if negative { "-" } else { "" },
                i64::from(days) * 24 + i64::from(hour)
            ))),
        }
    }

    pub fn finish(&mut self) -> ArrayRef {
        match &mut self.builder {
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Decimal(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

/// `YYYY-MM-DD`: `Some(None)` for MySQL's zero dates (a zero year, month or day).
fn parse_date(bytes: &[u8]) -> Option<Option<NaiveDate>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(3, '-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    let (year, month, day): (i32, u32, u32) = (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    if year == 0 || month == 0 || day == 0 {
        return Some(None);
    }
    NaiveDate::from_ymd_opt(year, month, day).map(Some)
}

/// `HH:MM:SS[.ffffff]` within a day → microseconds.
fn parse_time(text: &str) -> Option<i64> {
    let time = NaiveTime::parse_from_str(text, "%H:%M:%S%.f").ok()?;
    let (hours, rest) = text.split_once(':')?;
    if hours.len() > 2 || rest.is_empty() {
        return None;
    }
    (time - NaiveTime::MIN).num_microseconds()
}

/// A wall-clock time in `zone` → UTC. An ambiguous time (the hour repeated when clocks go
/// back) is read as the earlier instant; a time in a gap (clocks going forward) as if the
/// offset before the gap applied.
fn local_to_utc(zone: Tz, micros: i64) -> i64 {
    let Some(naive) = chrono::DateTime::from_timestamp_micros(micros).map(|t| t.naive_utc()) else { return micros };
    let resolved = match zone.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t,
        chrono::LocalResult::None => match zone.from_local_datetime(&(naive - chrono::Duration::hours(3))) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t + chrono::Duration::hours(3),
            chrono::LocalResult::None => return micros,
        },
    };
    let offset = resolved.naive_local() - resolved.naive_utc();
    NaiveDateTime::and_utc(&(naive - offset)).timestamp_micros()
}

/// Exact decimal text → the unscaled integer at `scale`, or `None` if it does not fit
/// `precision` or would lose digits.
pub fn parse_decimal(bytes: &[u8], precision: u8, scale: i8) -> Option<i128> {
    let (negative, digits) = match bytes.first()? {
        b'-' => (true, &bytes[1..]),
        b'+' => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let (whole, fraction) = match digits.iter().position(|b| *b == b'.') {
        Some(at) => (&digits[..at], &digits[at + 1..]),
        None => (digits, &[][..]),
    };
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    let kept = &fraction[..fraction.len().min(scale)];
    if fraction[kept.len()..].iter().any(|b| *b != b'0') {
        return None;
    }
    let mut value: i128 = 0;
    let mut significant = 0usize;
    for &digit in whole.iter().chain(kept) {
        if !digit.is_ascii_digit() {
            return None;
        }
        if value != 0 || digit != b'0' {
            significant += 1;
        }
        value = value.checked_mul(10)?.checked_add(i128::from(digit - b'0'))?;
    }
    for _ in kept.len()..scale {
        value = value.checked_mul(10)?;
        if value != 0 {
            significant += 1;
        }
    }
    if significant > usize::from(precision) {
        return None;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Decimal128Type, TimestampMicrosecondType};

    #[test]
    fn decimals_are_exact_or_refused() {
        assert_eq!(parse_decimal(b"123.45", 10, 2), Some(12345));
        assert_eq!(parse_decimal(b"-0.5", 3, 2), Some(-50));
        assert_eq!(parse_decimal(b"7", 5, 3), Some(7000));
        assert_eq!(parse_decimal(b"1.230", 5, 2), Some(123));
        assert_eq!(parse_decimal(b"1.235", 5, 2), None);
        assert_eq!(parse_decimal(b"99999999999999999999999999999999999999", 38, 0), Some(10i128.pow(38) - 1));
        assert_eq!(parse_decimal(b"100", 2, 0), None);
        assert_eq!(parse_decimal(b"NaN", 10, 2), None);
        assert_eq!(parse_decimal(b"18446744073709551615", 20, 0), Some(18_446_744_073_709_551_615));
    }

    #[test]
    fn zero_dates_become_counted_nulls_and_wall_clock_times_move_to_utc() {
        let mut date = Column::new(Kind::Date, None, None, 4);
        date.append_text(Some(b"0000-00-00")).expect("zero");
        date.append_text(Some(b"2024-02-00")).expect("zero day");
        date.append_text(Some(b"2024-02-29")).expect("leap day");
        assert!(date.append_text(Some(b"2023-02-29")).is_err());
        assert_eq!(date.nulled, 2);
        let dates = date.finish();
        assert_eq!(dates.as_primitive::<Date32Type>().value(2), 19_782);

        let seoul: Tz = "Asia/Seoul".parse().expect("zone");
        let mut local = Column::new(Kind::Timestamp { local: true }, Some(seoul), None, 2);
        local.append_text(Some(b"2024-01-01 08:59:59.5")).expect("datetime");
        local.append_text(Some(b"0000-00-00 00:00:00")).expect("zero datetime");
        let times = local.finish();
        let times = times.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(times.value(0), 1_704_067_199_500_000);
        assert!(times.is_null(1));

        let mut exact = Column::new(Kind::Decimal { precision: 38, scale: 10 }, None, None, 1);
        exact.append_text(Some(b"-1234567890123456789012345678.0123456789")).expect("decimal");
        assert_eq!(
            exact.finish().as_primitive::<Decimal128Type>().value(0),
            -12_345_678_901_234_567_890_123_456_780_123_456_789
        );
    }

    #[test]
    fn postgres_binary_values_and_hashes() {
        let mut timestamp = Column::new(Kind::Timestamp { local: false }, None, None, 2);
        timestamp.append_postgres(Some(&0i64.to_be_bytes())).expect("epoch");
        timestamp.append_postgres(Some(&i64::MAX.to_be_bytes())).expect("infinity");
        assert_eq!(timestamp.nulled, 1);
        assert_eq!(timestamp.finish().as_primitive::<TimestampMicrosecondType>().value(0), POSTGRES_EPOCH_MICROS);

        let salt: Arc<[u8]> = Arc::from(&b"0123456789abcdef"[..]);
        let mut hashed = Column::new(Kind::Text, None, Some(salt), 1);
        hashed.append_postgres(Some(b"kim@example.kr")).expect("hash");
        let expected = Sha256::digest(b"0123456789abcdefkim@example.kr");
        let expected: String = expected.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hashed.finish().as_string::<i32>().value(0), expected);
    }
}
