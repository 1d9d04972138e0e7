//! Which databases and tables to copy, and how: the `[databases.NAME]` sections of the batch
//! configuration (docs/tables.md). Checked whole at start: unknown keys (serde) and impossible
//! combinations ([`DatabaseConfig::validate`]) are refused with the offending names.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::TablesError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    /// MySQL and MariaDB (one wire protocol).
    Mysql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP (a replica inside the same private network).
    #[default]
    Disable,
    /// Encrypted; the server's certificate is not checked.
    Require,
    /// Encrypted, the certificate checked against `tls_ca_file` (RDS's bundle) or the Mozilla
    /// roots, and the host name against it.
    VerifyFull,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub engine: Engine,
    /// `postgres://user@host:port/dbname` or `mysql://user@host:port/dbname`; a password in the
    /// URL is refused (it would end up in logs and task definitions).
    pub url: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (a mounted secret); one trailing newline is ignored.
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM bundle of the certificate authorities to trust (`verify-full`).
    pub tls_ca_file: Option<PathBuf>,
    /// IANA zone of the wall-clock values without one (PostgreSQL `timestamp`, MySQL
    /// `DATETIME`): they are converted from it to UTC.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// Environment variable holding the salt of hashed columns (this or `hash_salt_file` is
    /// required when a table hashes; at least 16 characters; keep it secret and stable, or the
    /// hashes stop matching across days).
    pub hash_salt_env: Option<String>,
    /// File holding the salt (one trailing newline ignored).
    pub hash_salt_file: Option<PathBuf>,
    /// Rows per Arrow batch read from the database.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Rows per Parquet row group (memory per table grows with it).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// Rows per Parquet file before the next part starts.
    #[serde(default = "default_file_rows")]
    pub file_rows: usize,
    /// How the Airflow DAG splits the copy: a task per table (in parallel, each its own
    /// snapshot) or one task per database (every table from one snapshot).
    #[serde(default)]
    pub airflow_tasks: AirflowTasks,
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AirflowTasks {
    #[default]
    PerTable,
    PerDatabase,
}

fn utc() -> String {
    "UTC".into()
}
fn default_batch_rows() -> usize {
    8192
}
fn default_row_group_rows() -> usize {
    262_144
}
fn default_file_rows() -> usize {
    4_194_304
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The whole table, every run.
    Snapshot,
    /// The rows whose `cursor` passed the last committed watermark.
    Incremental,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    pub mode: Mode,
    /// The table in the database (`schema.table` on PostgreSQL, `public` by default); default:
    /// the section's name.
    pub source: Option<String>,
    /// Incremental: a column that only grows (`updated_at` set on every write, or an id).
    pub cursor: Option<String>,
    /// The columns to copy (default: all but `exclude`).
    pub columns: Option<Vec<String>>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Columns copied as the hex SHA-256 of the salt and the value's text.
    #[serde(default)]
    pub hash: Vec<String>,
    /// An SQL condition on the source table (`deleted_at IS NULL`).
    pub filter: Option<String>,
    /// Column → SQL type to cast it to in the database, for types without a mapping.
    #[serde(default)]
    pub cast: BTreeMap<String, String>,
    /// Key columns: the `_current` view keeps the latest row per key (incremental tables).
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Columns whose type may change between runs (the new type is written from then on;
    /// older days keep theirs).
    #[serde(default)]
    pub allow_retype: Vec<String>,
}

impl TableConfig {
    /// `(schema, table)` in the database.
    pub fn source_name<'a>(&'a self, name: &'a str, engine: Engine) -> (Option<&'a str>, &'a str) {
        let source = self.source.as_deref().unwrap_or(name);
        match source.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None if engine == Engine::Postgres => (Some("public"), source),
            None => (None, source),
        }
    }
}

/// Names that become folders and SQL identifiers: lowercase letters, digits, `_`.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

impl DatabaseConfig {
    /// Every impossible combination, named (`database` is the section's name).
    pub fn validate(&self, database: &str) -> Result<(), TablesError> {
        let bad = |message: String| Err(TablesError::Config(format!("databases.{database}: {message}")));
        if !plain_name(database) {
            return bad("the name must be lowercase letters, digits and _ (it names folders and tables)".into());
        }
        let url = match url::Url::parse(&self.url) {
            Ok(url) => url,
            Err(e) => return bad(format!("url: {e}")),
        };
        let scheme_ok = match self.engine {
            Engine::Postgres => matches!(url.scheme(), "postgres" | "postgresql"),
            Engine::Mysql => matches!(url.scheme(), "mysql" | "mariadb"),
        };
        if !scheme_ok {
            return bad(format!("url scheme {:?} does not match engine {:?}", url.scheme(), self.engine));
        }
        if url.password().is_some() {
            return bad("url holds a password: use password_env or password_file".into());
        }
        if url.path().trim_matches('/').is_empty() {
            return bad("url names no database (…/dbname)".into());
        }
        if self.hash_salt_env.is_some() && self.hash_salt_file.is_some() {
            return bad("hash_salt_env and hash_salt_file are both set: choose one".into());
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            return bad("password_env and password_file are both set: choose one".into());
        }
        if self.tls_ca_file.is_some() && self.tls != TlsMode::VerifyFull {
            return bad("tls_ca_file is only used with tls = \"verify-full\"".into());
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return bad(format!("time_zone {:?} is not an IANA zone", self.time_zone));
        }
        if self.batch_rows == 0 || self.row_group_rows < self.batch_rows || self.file_rows < self.row_group_rows {
            return bad("need 0 < batch_rows <= row_group_rows <= file_rows".into());
        }
        if self.tables.is_empty() {
            return bad("no tables".into());
        }
        for (name, table) in &self.tables {
            let bad = |message: String| bad(format!("tables.{name}: {message}"));
            if !plain_name(name) {
                return bad("the name must be lowercase letters, digits and _".into());
            }
            match (table.mode, &table.cursor) {
                (Mode::Incremental, None) => return bad("mode = \"incremental\" needs a cursor column".into()),
                (Mode::Snapshot, Some(_)) => return bad("cursor is only used with mode = \"incremental\"".into()),
                _ => {}
            }
            if table.columns.is_some() && !table.exclude.is_empty() {
                return bad("columns and exclude are both set: choose one".into());
            }
            if let Some(cursor) = &table.cursor {
                if table.hash.contains(cursor) {
                    return bad(format!("cursor {cursor:?} cannot be hashed (its values must be compared)"));
                }
                if table.exclude.contains(cursor) || table.columns.as_ref().is_some_and(|c| !c.contains(cursor)) {
                    return bad(format!("cursor {cursor:?} must be copied"));
                }
            }
            for column in table.hash.iter().chain(&table.primary_key) {
                if table.exclude.contains(column) || table.columns.as_ref().is_some_and(|c| !c.contains(column)) {
                    return bad(format!("{column:?} is hashed or a key but not copied"));
                }
            }
            if !table.hash.is_empty() && self.hash_salt_env.is_none() && self.hash_salt_file.is_none() {
                return bad("hash needs hash_salt_env or hash_salt_file (the salt)".into());
            }
            if table.filter.as_deref().is_some_and(|f| f.contains(';')) {
                return bad("filter must be one SQL condition (no `;`)".into());
            }
            for (column, target) in &table.cast {
                if target.contains(';') || target.contains('(') && !target.ends_with(')') {
                    return bad(format!("cast of {column:?}: {target:?} is not a type name"));
                }
            }
        }
        Ok(())
    }

    /// The password, from the environment or a file (none: trust or IAM-less local setups).
    pub fn password(&self, database: &str) -> Result<Option<String>, TablesError> {
        secret(database, "password", self.password_env.as_deref(), self.password_file.as_deref())
    }

    /// The salt of hashed columns (empty when nothing is hashed).
    pub fn salt(&self, database: &str) -> Result<Vec<u8>, TablesError> {
        let salt = secret(database, "hash salt", self.hash_salt_env.as_deref(), self.hash_salt_file.as_deref())?;
        match salt {
            Some(salt) if salt.len() < 16 => {
                Err(TablesError::Config(format!("databases.{database}: the hash salt is shorter than 16 characters")))
            }
            salt => Ok(salt.unwrap_or_default().into_bytes()),
        }
    }
}

/// A secret from an environment variable or a file.
fn secret(
    database: &str,
    what: &str,
    variable: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, TablesError> {
    if let Some(variable) = variable {
        return std::env::var(variable).map(Some).map_err(|_| {
            TablesError::Config(format!("databases.{database}: environment variable {variable} ({what}) is not set"))
        });
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TablesError::Config(format!("databases.{database}: {what} file {}: {e}", path.display())))?;
        return Ok(Some(text.strip_suffix('\n').unwrap_or(&text).to_owned()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(tables: &str) -> Result<(), String> {
        let text = format!("engine = \"postgres\"\nurl = \"postgres://reader@replica/app\"\n{tables}");
        let config: DatabaseConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.validate("app").map_err(|e| e.to_string())
    }

    #[test]
    fn refuses_unknown_keys_and_impossible_combinations_by_name() {
        assert_eq!(database("[tables.members]\nmode = \"snapshot\"\nhash = []"), Ok(()));
        let cases = [
            ("[tables.members]\nmode = \"snapshot\"\ncolums = [\"id\"]", "colums"),
            ("[tables.posts]\nmode = \"incremental\"", "tables.posts: mode = \"incremental\" needs a cursor"),
            ("[tables.posts]\nmode = \"snapshot\"\ncursor = \"id\"", "cursor is only used"),
            ("[tables.m]\nmode = \"snapshot\"\ncolumns = [\"a\"]\nexclude = [\"b\"]", "columns and exclude"),
            ("[tables.m]\nmode = \"snapshot\"\nhash = [\"email\"]", "hash_salt_env or hash_salt_file"),
            (
                "hash_salt_env = \"S\"\n[tables.m]\nmode = \"snapshot\"\nhash = [\"email\"]\nexclude = [\"email\"]",
                "\"email\" is hashed",
            ),
            (
                "[tables.p]\nmode = \"incremental\"\ncursor = \"updated_at\"\nexclude = [\"updated_at\"]",
                "must be copied",
            ),
            ("[tables.Members]\nmode = \"snapshot\"", "lowercase"),
            ("time_zone = \"Seoul\"\n[tables.m]\nmode = \"snapshot\"", "IANA"),
            ("tls_ca_file = \"/ca.pem\"\n[tables.m]\nmode = \"snapshot\"", "verify-full"),
            ("", "no tables"),
        ];
        for (tables, expected) in cases {
            let error = database(tables).expect_err(tables);
            assert!(error.contains(expected), "{tables}: {error}");
        }
        let with_password: DatabaseConfig =
            toml::from_str("engine = \"mysql\"\nurl = \"mysql://u:secret@h/app\"\n[tables.m]\nmode = \"snapshot\"")
                .expect("parse");
        assert!(with_password.validate("app").expect_err("password").to_string().contains("password_env"));
    }
}
