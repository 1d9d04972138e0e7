//! From each engine's column types to the lake's: the mapping tables of docs/tables.md.
//!
//! Decisions: Redshift has no unsigned or 8-bit integers, so MySQL's unsigned types widen to
//! the next signed type (`BIGINT UNSIGNED` to `DECIMAL(20,0)`, exact) and `TINYINT` to
//! `SMALLINT`. Timestamps become UTC microseconds; values without a zone are read in the
//! database's configured `time_zone`. Text that only the database can render (UUID, JSON,
//! enums, arrays as JSON) is cast to text in the query. Anything else stops the table, naming
//! the column and its type, until the configuration casts it.

use std::sync::Arc;

use arrow_schema::{DataType, Field, TimeUnit};

use crate::config::Engine;

/// What a column is in the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Exact decimal, at most 38 digits (Parquet and Redshift's limit).
    Decimal {
        precision: u8,
        scale: i8,
    },
    Text,
    Binary,
    Date,
    /// Time of day, microseconds.
    Time,
    /// UTC microseconds; `local` when the database's value has no zone.
    Timestamp {
        local: bool,
    },
}

impl Kind {
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Boolean => DataType::Boolean,
            Kind::Int16 => DataType::Int16,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float32 => DataType::Float32,
            Kind::Float64 => DataType::Float64,
            Kind::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            Kind::Text => DataType::Utf8,
            Kind::Binary => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Timestamp { .. } => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
        }
    }

    /// The column's type in a Redshift Spectrum external table. Spectrum has no time-of-day
    /// type: `time` columns are read as their Parquet integer, microseconds since midnight.
    pub fn spectrum_type(self) -> String {
        match self {
            Kind::Boolean => "boolean".into(),
            Kind::Int16 => "smallint".into(),
            Kind::Int32 => "integer".into(),
            Kind::Int64 | Kind::Time => "bigint".into(),
            Kind::Float32 => "real".into(),
            Kind::Float64 => "double precision".into(),
            Kind::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            Kind::Text => "varchar(65535)".into(),
            Kind::Binary => "varbyte(1024000)".into(),
            Kind::Date => "date".into(),
            Kind::Timestamp { .. } => "timestamp".into(),
        }
    }

    /// The column's type in PostgreSQL (the local stand-in).
    pub fn postgres_type(self) -> String {
        match self {
            Kind::Boolean => "boolean".into(),
            Kind::Int16 => "smallint".into(),
            Kind::Int32 => "integer".into(),
            Kind::Int64 => "bigint".into(),
            Kind::Float32 => "real".into(),
            Kind::Float64 => "double precision".into(),
            Kind::Decimal { precision, scale } => format!("numeric({precision},{scale})"),
            Kind::Text => "text".into(),
            Kind::Binary => "bytea".into(),
            Kind::Date => "date".into(),
            Kind::Time => "time".into(),
            Kind::Timestamp { .. } => "timestamptz".into(),
        }
    }

    /// The name stored in manifests and compared between runs.
    pub fn name(self) -> String {
        match self {
            Kind::Timestamp { .. } => "timestamp".into(),
            Kind::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            other => format!("{other:?}").to_lowercase(),
        }
    }

    /// The kind a manifest's type name stands for.
    pub fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "boolean" => Kind::Boolean,
            "int16" => Kind::Int16,
            "int32" => Kind::Int32,
            "int64" => Kind::Int64,
            "float32" => Kind::Float32,
            "float64" => Kind::Float64,
            "text" => Kind::Text,
            "binary" => Kind::Binary,
            "date" => Kind::Date,
            "time" => Kind::Time,
            "timestamp" => Kind::Timestamp { local: false },
            _ => {
                let (precision, scale) = name.strip_prefix("decimal(")?.strip_suffix(')')?.split_once(',')?;
                Kind::Decimal { precision: precision.parse().ok()?, scale: scale.parse().ok()? }
            }
        })
    }

    pub fn field(self, name: &str) -> Field {
        Field::new(name, self.data_type(), true)
    }
}

/// How a column is read: its kind and whether the query renders it as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub kind: Kind,
    /// PostgreSQL: select `col::text` (or `array_to_json(col)::text`) and read the text.
    pub as_text: TextCast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextCast {
    No,
    Text,
    ArrayJson,
}

fn mapping(kind: Kind) -> Option<Mapping> {
    Some(Mapping { kind, as_text: TextCast::No })
}

fn text() -> Option<Mapping> {
    Some(Mapping { kind: Kind::Text, as_text: TextCast::Text })
}

/// `(precision, scale)` of `numeric(p,s)` / `decimal(p,s)` / `decimal(p)`.
fn precision_scale(arguments: &str) -> Option<(u8, i8)> {
    let mut numbers = arguments.split(',').map(|n| n.trim().parse::<u8>());
    let precision = numbers.next()?.ok()?;
    let scale = match numbers.next() {
        Some(scale) => scale.ok()?,
        None => 0,
    };
    (1..=38).contains(&precision).then_some((precision, i8::try_from(scale).ok()?))
}

/// `name(args) rest` → (`name`, `args`, `rest`), lowercased.
fn split_type(type_name: &str) -> (String, String, String) {
    let lower = type_name.trim().to_lowercase();
    match (lower.find('('), lower.find(')')) {
        (Some(open), Some(close)) if open < close => {
            (lower[..open].trim().to_owned(), lower[open + 1..close].to_owned(), lower[close + 1..].trim().to_owned())
        }
        _ => (lower, String::new(), String::new()),
    }
}

/// A PostgreSQL type as `format_type` prints it; `category` is `pg_type.typcategory` (`A`
/// arrays, `E` enums), `None` for a cast target from the configuration.
pub fn postgres(type_name: &str, category: Option<char>) -> Option<Mapping> {
    let (name, arguments, rest) = split_type(type_name);
    if category == Some('A') || type_name.trim_end().ends_with("[]") {
        return Some(Mapping { kind: Kind::Text, as_text: TextCast::ArrayJson });
    }
    if category == Some('E') {
        return text();
    }
    match name.as_str() {
        "smallint" | "int2" | "smallserial" => mapping(Kind::Int16),
        "integer" | "int" | "int4" | "serial" => mapping(Kind::Int32),
        "bigint" | "int8" | "bigserial" => mapping(Kind::Int64),
        "real" | "float4" => mapping(Kind::Float32),
        "double precision" | "float8" => mapping(Kind::Float64),
        "boolean" | "bool" => mapping(Kind::Boolean),
        // Without a precision, a numeric's scale varies by row: exact as text.
        "numeric" | "decimal" if arguments.is_empty() => text(),
        "numeric" | "decimal" => {
            let (precision, scale) = precision_scale(&arguments)?;
            Some(Mapping { kind: Kind::Decimal { precision, scale }, as_text: TextCast::Text })
        }
        "text" | "character varying" | "varchar" | "character" | "char" | "bpchar" | "name" | "citext" => {
            mapping(Kind::Text)
        }
        "uuid" | "json" | "jsonb" | "xml" | "inet" | "cidr" | "macaddr" => text(),
        "bytea" => mapping(Kind::Binary),
        "date" => mapping(Kind::Date),
        "time without time zone" | "time" if rest.is_empty() || rest == "without time zone" => mapping(Kind::Time),
        "timestamp without time zone" | "timestamp" if rest.is_empty() || rest == "without time zone" => {
            mapping(Kind::Timestamp { local: true })
        }
        "timestamp with time zone" | "timestamptz" => mapping(Kind::Timestamp { local: false }),
        "timestamp" if rest == "with time zone" => mapping(Kind::Timestamp { local: false }),
        _ => None,
    }
}

/// A MySQL/MariaDB column as `information_schema.COLUMNS.COLUMN_TYPE` prints it
/// (`bigint(20) unsigned`, `tinyint(1)`, `decimal(38,10)`, `enum('a','b')`), or a `CAST` target.
pub fn mysql(column_type: &str) -> Option<Mapping> {
    let (name, arguments, rest) = split_type(column_type);
    let unsigned = rest.contains("unsigned") || name.ends_with(" unsigned");
    let name = name.trim_end_matches(" unsigned").trim_end_matches(" signed").to_owned();
    let kind = match name.as_str() {
        "tinyint" if arguments == "1" && !unsigned => Kind::Boolean,
        "bool" | "boolean" => Kind::Boolean,
        "tinyint" => Kind::Int16,
        "smallint" | "year" if !unsigned => Kind::Int16,
        "smallint" | "mediumint" | "int" | "integer" if !unsigned => Kind::Int32,
        "smallint" | "mediumint" => Kind::Int32,
        "int" | "integer" | "bigint" | "signed" if !unsigned => Kind::Int64,
        "int" | "integer" => Kind::Int64,
        "bigint" | "unsigned" => Kind::Decimal { precision: 20, scale: 0 },
        "float" => Kind::Float32,
        "double" | "double precision" | "real" => Kind::Float64,
        "decimal" | "numeric" | "dec" | "fixed" => {
            let (precision, scale) = if arguments.is_empty() { (10, 0) } else { precision_scale(&arguments)? };
            Kind::Decimal { precision, scale }
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" | "json" | "uuid"
        | "inet4" | "inet6" => Kind::Text,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => Kind::Binary,
        "date" => Kind::Date,
        "time" => Kind::Time,
        "datetime" => Kind::Timestamp { local: true },
        // Converted to the session's zone, which the extractor sets to UTC.
        "timestamp" => Kind::Timestamp { local: false },
        _ => return None,
    };
    mapping(kind)
}

/// The mapping of `type_name` on `engine`.
pub fn map(engine: Engine, type_name: &str, category: Option<char>) -> Option<Mapping> {
    match engine {
        Engine::Postgres => postgres(type_name, category),
        Engine::Mysql => mysql(type_name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_documented_postgres_type() {
        let kind = |t: &str| postgres(t, None).map(|m| m.kind);
        assert_eq!(kind("smallint"), Some(Kind::Int16));
        assert_eq!(kind("bigint"), Some(Kind::Int64));
        assert_eq!(kind("numeric(38,10)"), Some(Kind::Decimal { precision: 38, scale: 10 }));
        assert_eq!(kind("numeric(39,0)"), None);
        assert_eq!(kind("numeric"), Some(Kind::Text));
        assert_eq!(kind("character varying(20)"), Some(Kind::Text));
        assert_eq!(kind("timestamp without time zone"), Some(Kind::Timestamp { local: true }));
        assert_eq!(kind("timestamp(3) with time zone"), Some(Kind::Timestamp { local: false }));
        assert_eq!(kind("time(6) without time zone"), Some(Kind::Time));
        assert_eq!(kind("time with time zone"), None);
        assert_eq!(kind("interval"), None);
        assert_eq!(postgres("integer[]", Some('A')).map(|m| m.as_text), Some(TextCast::ArrayJson));
        assert_eq!(postgres("mood", Some('E')), Some(Mapping { kind: Kind::Text, as_text: TextCast::Text }));
    }

    #[test]
    fn maps_each_documented_mysql_type() {
        let kind = |t: &str| mysql(t).map(|m| m.kind);
        assert_eq!(kind("tinyint(1)"), Some(Kind::Boolean));
        assert_eq!(kind("tinyint(4)"), Some(Kind::Int16));
        assert_eq!(kind("tinyint(3) unsigned"), Some(Kind::Int16));
        assert_eq!(kind("int(10) unsigned"), Some(Kind::Int64));
        assert_eq!(kind("bigint(20) unsigned"), Some(Kind::Decimal { precision: 20, scale: 0 }));
        assert_eq!(kind("bigint(20)"), Some(Kind::Int64));
        assert_eq!(kind("decimal(65,30)"), None);
        assert_eq!(kind("enum('a','b')"), Some(Kind::Text));
        assert_eq!(kind("datetime(6)"), Some(Kind::Timestamp { local: true }));
        assert_eq!(kind("timestamp"), Some(Kind::Timestamp { local: false }));
        assert_eq!(kind("bit(1)"), None);
        assert_eq!(kind("geometry"), None);
        assert_eq!(kind("char"), Some(Kind::Text));
        assert_eq!(kind("signed"), Some(Kind::Int64));
    }

    #[test]
    fn manifest_names_read_back() {
        for kind in [
            Kind::Boolean,
            Kind::Int16,
            Kind::Int32,
            Kind::Int64,
            Kind::Float32,
            Kind::Float64,
            Kind::Text,
            Kind::Binary,
            Kind::Date,
            Kind::Time,
            Kind::Timestamp { local: false },
            Kind::Decimal { precision: 38, scale: 10 },
        ] {
            assert_eq!(Kind::from_name(&kind.name()), Some(kind));
        }
    }
}
