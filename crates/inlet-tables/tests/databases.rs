//! Product tables copied from a real PostgreSQL and a real MariaDB into the lake and read back
//! with pyarrow, value by value; snapshot consistency under concurrent writes; incremental
//! runs, re-runs and a run that dies before its commit; schema changes; a lake on Garage.
//! Run by `tests/run.sh`, which starts the servers (PG_TEST_URL, MYSQL_TEST_URL,
//! MYSQL_TEST_PASSWORD, GARAGE_*) and names a Python with pyarrow (PYARROW_PYTHON).

use std::collections::BTreeMap;

use inlet_lake::{LakeLocation, LakeStore, S3Settings};
use inlet_tables::{CopyRequest, DatabaseConfig, copy_database, read_database};
use mysql_async::prelude::Queryable;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name}: run through tests/run.sh"))
}

/// `postgres://…` for the database `name`, created fresh.
async fn fresh_postgres(name: &str) -> (tokio_postgres::Client, String) {
    let base: tokio_postgres::Config = env("PG_TEST_URL").parse().expect("PG_TEST_URL");
    let host = match &base.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        #[allow(unreachable_patterns)]
        _ => "127.0.0.1".into(),
    };
    let port = base.get_ports().first().copied().unwrap_or(5432);
    let user = base.get_user().unwrap_or("postgres").to_owned();
    let (admin, connection) = base.connect(tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.expect("drop");
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create");
    let url = format!("postgres://{user}@{host}:{port}/{name}");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    (client, url)
}

async fn fresh_mysql(name: &str) -> (mysql_async::Conn, String) {
    let base = env("MYSQL_TEST_URL");
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&base).expect("url"))
        .pass(Some(env("MYSQL_TEST_PASSWORD")))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await.expect("connect");
    conn.query_drop(format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop");
    conn.query_drop(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4")).await.expect("create");
    conn.query_drop(format!("USE {name}")).await.expect("use");
    let (server, _) = base.rsplit_once('/').expect("url");
    (conn, format!("{server}/{name}"))
}

fn config(text: &str) -> DatabaseConfig {
    let config: DatabaseConfig = toml::from_str(text).expect("config");
    config
}

fn local_lake(dir: &tempfile::TempDir) -> LakeStore {
    LakeStore::open(LakeLocation::Local(dir.path().to_owned()), &S3Settings::default()).expect("lake")
}

/// The day as pyarrow reads it: `(schema, rows, manifest)`.
fn read_back(
    lake: &std::path::Path,
    database: &str,
    table: &str,
    date: &str,
) -> (BTreeMap<String, String>, Vec<BTreeMap<String, Value>>, Value) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/read_back.py");
    let output = std::process::Command::new(env("PYARROW_PYTHON"))
        .args([script, &lake.display().to_string(), database, table, date])
        .output()
        .expect("python");
    assert!(output.status.success(), "read_back.py: {}", String::from_utf8_lossy(&output.stderr));
    let parsed: Value = serde_json::from_slice(&output.stdout).expect("json");
    let schema = serde_json::from_value(parsed["schema"].clone()).expect("schema");
    let rows = serde_json::from_value(parsed["rows"].clone()).expect("rows");
    (schema, rows, parsed["manifest"].clone())
}

/// Compares one column of every row with `expected` (`None`: NULL).
fn assert_column(rows: &[BTreeMap<String, Value>], column: &str, expected: &[Option<&str>]) {
    let actual: Vec<Option<String>> =
        rows.iter().map(|row| row.get(column).and_then(|v| v.as_str()).map(str::to_owned)).collect();
    let expected: Vec<Option<String>> = expected.iter().map(|v| v.map(str::to_owned)).collect();
    assert_eq!(actual, expected, "column {column}");
}

fn hashed(salt: &str, value: &str) -> String {
    Sha256::digest(format!("{salt}{value}")).iter().map(|b| format!("{b:02x}")).collect()
}

const SALT: &str = "a-salt-of-sixteen-chars";

fn salt_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("salt file");
    std::fs::write(file.path(), format!("{SALT}\n")).expect("salt");
    file
}
const DAY: &str = "2026-12-04";

#[tokio::test]
#[ignore = "needs PostgreSQL and pyarrow: run by tests/run.sh"]
async fn postgres_types_arrive_value_for_value() {
    let (client, url) = fresh_postgres("tables_types").await;
    client
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('happy', 'sad');
             CREATE DOMAIN licence AS varchar(12);
             CREATE TABLE every_type (
               id integer PRIMARY KEY, i2 smallint, i4 integer, i8 bigint,
               n numeric(38,10), n_free numeric, n_small numeric(5,2), f4 real, f8 double precision,
               b boolean, t text, vc varchar(20), ch char(3), e mood, u uuid, j json, jb jsonb,
               by bytea, d date, tm time, ts timestamp, tstz timestamptz, arr integer[], tarr text[],
               lic licence, email text, secret text, iv interval);
             INSERT INTO every_type VALUES
               (1, -32768, -2147483648, -9223372036854775808,
                -9999999999999999999999999999.9999999999, -123.456789012345678901234567890, -999.99,
                -3.4028235e38, -1.7976931348623157e308, false, '', 'ㄱ', 'a', 'happy',
                '00000000-0000-0000-0000-000000000000', '{\"a\":[1,2]}', '{\"b\": \"한국\"}', '\\x00ff',
                '0001-01-01', '00:00:00', '2024-01-01 08:59:59.999999', '2024-12-31 15:00:00+00',
                '{1,NULL,3}', '{\"a\",\"b c\"}', 'KR-123', 'kim@example.kr', 'x', '1 day'),
               (2, 32767, 2147483647, 9223372036854775807,
                9999999999999999999999999999.9999999999, 'NaN', 999.99,
                3.4028235e38, 'Infinity', true, '의사 치과의사 😀', 'varchar', 'abc', 'sad',
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '[]', '{}', '\\x',
                'infinity', '23:59:59.999999', '2024-03-10 02:30:00', 'infinity',
                '{}', '{}', '', '', 'y', '2 hours'),
               (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
        )
        .await
        .expect("schema");
    let lake_dir = tempfile::tempdir().expect("tempdir");
    let store = local_lake(&lake_dir);
    let salt = salt_file();
    let mut database = config(&format!(
        "engine = \"postgres\"\nurl = \"{url}\"\ntime_zone = \"Asia/Seoul\"\nhash_salt_file = \"{}\"\n\
         [tables.every_type]\nmode = \"snapshot\"\nexclude = [\"secret\"]\nhash = [\"email\"]",
        salt.path().display()
    ));
    let request = CopyRequest { date: DAY.parse().expect("date"), tables: None };

    // `interval` has no lake type: the table stops, naming the column, type and the fix.
    let reports = copy_database(&store, "app", &database, &request).await.expect("run");
    let error = reports[0].error.as_deref().expect("refused");
    assert!(
        error.contains("\"iv\"") && error.contains("interval") && error.contains("cast = { iv = \"text\" }"),
        "{error}"
    );
    database.tables.get_mut("every_type").expect("table").cast.insert("iv".into(), "text".into());
    let reports = copy_database(&store, "app", &database, &request).await.expect("run");
    assert_eq!(reports[0].error, None);
    assert_eq!(reports[0].rows, 3);
    assert_eq!(reports[0].nulled_values, BTreeMap::from([("d".to_string(), 1), ("tstz".to_string(), 1)]));

    let (schema, rows, _) = read_back(lake_dir.path(), "app", "every_type", DAY);
    let types: Vec<(&str, &str)> = [
        ("i2", "int16"),
        ("i4", "int32"),
        ("i8", "int64"),
        ("n", "decimal128(38, 10)"),
        ("n_free", "string"),
        ("n_small", "decimal128(5, 2)"),
        ("f4", "float"),
        ("f8", "double"),
        ("b", "bool"),
        ("t", "string"),
        ("e", "string"),
        ("u", "string"),
        ("jb", "string"),
        ("by", "binary"),
        ("d", "date32[day]"),
        ("tm", "time64[us]"),
        ("ts", "timestamp[us, tz=UTC]"),
        ("tstz", "timestamp[us, tz=UTC]"),
        ("arr", "string"),
        ("lic", "string"),
        ("email", "string"),
        ("iv", "string"),
    ]
    .to_vec();
    for (column, arrow_type) in types {
        assert_eq!(schema.get(column).map(String::as_str), Some(arrow_type), "type of {column}");
    }
    assert!(!schema.contains_key("secret"), "excluded columns are not copied");
    assert_column(&rows, "i2", &[Some("-32768"), Some("32767"), None]);
    assert_column(&rows, "i4", &[Some("-2147483648"), Some("2147483647"), None]);
    assert_column(&rows, "i8", &[Some("-9223372036854775808"), Some("9223372036854775807"), None]);
    assert_column(
        &rows,
        "n",
        &[Some("-9999999999999999999999999999.9999999999"), Some("9999999999999999999999999999.9999999999"), None],
    );
    assert_column(&rows, "n_free", &[Some("-123.456789012345678901234567890"), Some("NaN"), None]);
    assert_column(&rows, "n_small", &[Some("-999.99"), Some("999.99"), None]);
    assert_column(&rows, "f4", &[Some("-3.4028234663852886e+38"), Some("3.4028234663852886e+38"), None]);
    assert_column(&rows, "f8", &[Some("-1.7976931348623157e+308"), Some("inf"), None]);
    assert_column(&rows, "b", &[Some("false"), Some("true"), None]);
    assert_column(&rows, "t", &[Some(""), Some("의사 치과의사 😀"), None]);
    assert_column(&rows, "vc", &[Some("ㄱ"), Some("varchar"), None]);
    assert_column(&rows, "ch", &[Some("a  "), Some("abc"), None]);
    assert_column(&rows, "e", &[Some("happy"), Some("sad"), None]);
    assert_column(
        &rows,
        "u",
        &[Some("00000000-0000-0000-0000-000000000000"), Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), None],
    );
    assert_column(&rows, "j", &[Some("{\"a\":[1,2]}"), Some("[]"), None]);
    assert_column(&rows, "jb", &[Some("{\"b\": \"한국\"}"), Some("{}"), None]);
    assert_column(&rows, "by", &[Some("00ff"), Some(""), None]);
    assert_column(&rows, "d", &[Some("0001-01-01"), None, None]);
    assert_column(&rows, "tm", &[Some("00:00:00"), Some("23:59:59.999999"), None]);
    // `timestamp` is wall-clock time in the configured zone (Asia/Seoul, UTC+9).
    assert_column(&rows, "ts", &[Some("2023-12-31T23:59:59.999999+00:00"), Some("2024-03-09T17:30:00+00:00"), None]);
    assert_column(&rows, "tstz", &[Some("2024-12-31T15:00:00+00:00"), None, None]);
    assert_column(&rows, "arr", &[Some("[1,null,3]"), Some("[]"), None]);
    assert_column(&rows, "tarr", &[Some("[\"a\",\"b c\"]"), Some("[]"), None]);
    assert_column(&rows, "lic", &[Some("KR-123"), Some(""), None]);
    let (kim, empty) = (hashed(SALT, "kim@example.kr"), hashed(SALT, ""));
    assert_column(&rows, "email", &[Some(&kim), Some(&empty), None]);
    assert_column(&rows, "iv", &[Some("1 day"), Some("02:00:00"), None]);
}

#[tokio::test]
#[ignore = "needs MariaDB and pyarrow: run by tests/run.sh"]
async fn mysql_types_arrive_value_for_value() {
    let (mut conn, url) = fresh_mysql("tables_types").await;
    conn.query_drop(
        "CREATE TABLE every_type (
           id INT PRIMARY KEY, ti TINYINT, tiu TINYINT UNSIGNED, b TINYINT(1), si SMALLINT,
           siu SMALLINT UNSIGNED, mi MEDIUMINT, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
           dec38 DECIMAL(38,10), dec_small DECIMAL(5,2), f FLOAT, d DOUBLE, c CHAR(3), vc VARCHAR(20),
           tx TEXT, e ENUM('a','b'), st SET('x','y'), j JSON, bl BLOB, vb VARBINARY(4), dt DATE,
           tm TIME(6), dtm DATETIME(6), tsm TIMESTAMP(6) NULL DEFAULT NULL, yr YEAR, email VARCHAR(64),
           bits BIT(8))",
    )
    .await
    .expect("schema");
    conn.query_drop("SET SESSION sql_mode = '', SESSION time_zone = '+00:00'").await.expect("mode");
    conn.query_drop(
        "INSERT INTO every_type VALUES
           (1, -128, 0, 0, -32768, 0, -8388608, -2147483648, 0, -9223372036854775808, 0,
            -9999999999999999999999999999.9999999999, -999.99, -3.40282e38, -1.7976931348623157e308,
            'a', 'ㄱ', '', 'a', '', '{\"a\": [1, 2]}', x'00ff', x'', '0000-00-00',
            '00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', 1901, 'kim@example.kr', b'1'),
           (2, 127, 255, 1, 32767, 65535, 8388607, 2147483647, 4294967295, 9223372036854775807,
            18446744073709551615, 9999999999999999999999999999.9999999999, 999.99, 3.40282e38,
            1.7976931348623157e308, 'abc', '치과위생사 😀', 'long text', 'b', 'x,y', '[]', x'',
            x'01020304', '2024-02-29', '23:59:59.999999', '2024-01-01 08:59:59.999999',
            '2038-01-19 03:14:07.999999', 2155, '', b'11111111'),
           (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .await
    .expect("rows");
    let lake_dir = tempfile::tempdir().expect("tempdir");
    let store = local_lake(&lake_dir);
    let salt = salt_file();
    let mut database = config(&format!(
        "engine = \"mysql\"\nurl = \"{url}\"\npassword_env = \"MYSQL_TEST_PASSWORD\"\n\
         time_zone = \"Asia/Seoul\"\nhash_salt_file = \"{}\"\n\
         [tables.every_type]\nmode = \"snapshot\"\nhash = [\"email\"]",
        salt.path().display()
    ));
    let request = CopyRequest { date: DAY.parse().expect("date"), tables: None };
    let reports = copy_database(&store, "community", &database, &request).await.expect("run");
    let error = reports[0].error.as_deref().expect("BIT has no mapping");
    assert!(
        error.contains("\"bits\"") && error.contains("bit(8)") && error.contains("cast = { bits = \"char\" }"),
        "{error}"
    );
    database.tables.get_mut("every_type").expect("table").cast.insert("bits".into(), "unsigned".into());
    let reports = copy_database(&store, "community", &database, &request).await.expect("run");
    assert_eq!(reports[0].error, None);
    assert_eq!(
        reports[0].nulled_values,
        BTreeMap::from([("dt".to_string(), 1), ("dtm".to_string(), 1), ("tsm".to_string(), 1)])
    );

    let (schema, rows, _) = read_back(lake_dir.path(), "community", "every_type", DAY);
    for (column, arrow_type) in [
        ("ti", "int16"),
        ("tiu", "int16"),
        ("b", "bool"),
        ("si", "int16"),
        ("siu", "int32"),
        ("mi", "int32"),
        ("i", "int32"),
        ("iu", "int64"),
        ("bi", "int64"),
        ("biu", "decimal128(20, 0)"),
        ("dec38", "decimal128(38, 10)"),
        ("f", "float"),
        ("d", "double"),
        ("e", "string"),
        ("j", "string"),
        ("bl", "binary"),
        ("dt", "date32[day]"),
        ("tm", "time64[us]"),
        ("dtm", "timestamp[us, tz=UTC]"),
        ("tsm", "timestamp[us, tz=UTC]"),
        ("yr", "int16"),
        ("bits", "decimal128(20, 0)"),
    ] {
        assert_eq!(schema.get(column).map(String::as_str), Some(arrow_type), "type of {column}");
    }
    assert_column(&rows, "ti", &[Some("-128"), Some("127"), None]);
    assert_column(&rows, "tiu", &[Some("0"), Some("255"), None]);
    assert_column(&rows, "b", &[Some("false"), Some("true"), None]);
    assert_column(&rows, "siu", &[Some("0"), Some("65535"), None]);
    assert_column(&rows, "mi", &[Some("-8388608"), Some("8388607"), None]);
    assert_column(&rows, "iu", &[Some("0"), Some("4294967295"), None]);
    assert_column(&rows, "bi", &[Some("-9223372036854775808"), Some("9223372036854775807"), None]);
    assert_column(&rows, "biu", &[Some("0"), Some("18446744073709551615"), None]);
    assert_column(
        &rows,
        "dec38",
        &[Some("-9999999999999999999999999999.9999999999"), Some("9999999999999999999999999999.9999999999"), None],
    );
    assert_column(&rows, "dec_small", &[Some("-999.99"), Some("999.99"), None]);
    assert_column(&rows, "f", &[Some("-3.402820018375656e+38"), Some("3.402820018375656e+38"), None]);
    assert_column(&rows, "d", &[Some("-1.7976931348623157e+308"), Some("1.7976931348623157e+308"), None]);
    assert_column(&rows, "c", &[Some("a"), Some("abc"), None]);
    assert_column(&rows, "vc", &[Some("ㄱ"), Some("치과위생사 😀"), None]);
    assert_column(&rows, "e", &[Some("a"), Some("b"), None]);
    assert_column(&rows, "st", &[Some(""), Some("x,y"), None]);
    assert_column(&rows, "j", &[Some("{\"a\": [1, 2]}"), Some("[]"), None]);
    assert_column(&rows, "bl", &[Some("00ff"), Some(""), None]);
    assert_column(&rows, "vb", &[Some(""), Some("01020304"), None]);
    assert_column(&rows, "dt", &[None, Some("2024-02-29"), None]);
    assert_column(&rows, "tm", &[Some("00:00:00"), Some("23:59:59.999999"), None]);
    // DATETIME is wall-clock time in the configured zone; TIMESTAMP is UTC.
    assert_column(&rows, "dtm", &[None, Some("2023-12-31T23:59:59.999999+00:00"), None]);
    assert_column(&rows, "tsm", &[None, Some("2038-01-19T03:14:07.999999+00:00"), None]);
    assert_column(&rows, "yr", &[Some("1901"), Some("2155"), None]);
    assert_column(&rows, "bits", &[Some("1"), Some("255"), None]);
    let (kim, empty) = (hashed(SALT, "kim@example.kr"), hashed(SALT, ""));
    assert_column(&rows, "email", &[Some(&kim), Some(&empty), None]);

    // A TIME beyond a day (MySQL TIME is also a duration) stops the run, naming the column.
    conn.query_drop("INSERT INTO every_type (id, tm) VALUES (4, '838:59:59')").await.expect("duration");
    let error = copy_database(&store, "community", &database, &request).await.expect_err("duration");
    assert!(error.to_string().contains("column \"tm\"") && error.to_string().contains("cast the column"), "{error}");
}

/// Inserts pairs of rows (one per table, one transaction each) until told to stop; returns how
/// many it committed.
async fn write_pairs_postgres(url: String, stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let mut id = 1_000_000i64;
    while !*stop.borrow() {
        id += 1;
        client
            .batch_execute(&format!(
                "BEGIN; INSERT INTO members VALUES ({id}, 'member {id}'); INSERT INTO posts VALUES ({id}, {id}); COMMIT;"
            ))
            .await
            .expect("pair");
    }
    (id - 1_000_000) as u64
}

async fn write_pairs_mysql(url: String, stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&url).expect("url"))
        .pass(Some(env("MYSQL_TEST_PASSWORD")))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await.expect("connect");
    let mut id = 1_000_000i64;
    while !*stop.borrow() {
        id += 1;
        conn.query_drop(format!(
            "START TRANSACTION; INSERT INTO members VALUES ({id}, 'member {id}'); INSERT INTO posts VALUES ({id}, {id}); COMMIT;"
        ))
        .await
        .expect("pair");
    }
    (id - 1_000_000) as u64
}

async fn ids(lake: &LakeStore, database: &str, table: &str) -> Vec<i64> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let manifest =
        inlet_tables::copy::latest_manifest(lake, database, table).await.expect("manifest").expect("committed");
    let mut ids = Vec::new();
    for file in &manifest.files {
        let bytes = lake.get(&file.key).await.expect("get").expect("file");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 8192).expect("parquet");
        for batch in reader {
            let batch = batch.expect("batch");
            ids.extend(batch.column(0).as_primitive::<Int64Type>().values().iter().copied());
        }
    }
    ids.sort_unstable();
    ids
}

#[tokio::test]
#[ignore = "needs PostgreSQL and MariaDB: run by tests/run.sh"]
async fn a_run_reads_every_table_from_one_snapshot() {
    const ROWS: i64 = 150_000;
    let (client, pg_url) = fresh_postgres("tables_snapshot").await;
    client
        .batch_execute(&format!(
            "CREATE TABLE members (id bigint PRIMARY KEY, name text);
             CREATE TABLE posts (id bigint PRIMARY KEY, member_id bigint);
             INSERT INTO members SELECT g, 'member ' || g FROM generate_series(1, {ROWS}) g;
             INSERT INTO posts SELECT g, g FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .expect("schema");
    let (mut conn, my_url) = fresh_mysql("tables_snapshot").await;
    conn.query_drop(
        "CREATE TABLE members (id BIGINT PRIMARY KEY, name TEXT) ENGINE=InnoDB;
         CREATE TABLE posts (id BIGINT PRIMARY KEY, member_id BIGINT) ENGINE=InnoDB;",
    )
    .await
    .expect("schema");
    conn.query_drop("SET SESSION max_recursive_iterations = 1000000").await.expect("recursion");
    conn.query_drop(format!(
        "INSERT INTO members WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {ROWS}) SELECT n, CONCAT('member ', n) FROM g"
    ))
    .await
    .expect("members");
    conn.query_drop("INSERT INTO posts SELECT id, id FROM members").await.expect("posts");

    for (engine, url) in [("postgres", pg_url), ("mysql", my_url)] {
        let lake_dir = tempfile::tempdir().expect("tempdir");
        let store = local_lake(&lake_dir);
        let password = if engine == "mysql" { "password_env = \"MYSQL_TEST_PASSWORD\"\n" } else { "" };
        let database = config(&format!(
            "engine = \"{engine}\"\nurl = \"{url}\"\n{password}batch_rows = 1024\n\
             [tables.members]\nmode = \"snapshot\"\n[tables.posts]\nmode = \"snapshot\""
        ));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let writer = match engine {
            "postgres" => tokio::spawn(write_pairs_postgres(url.clone(), stopped)),
            _ => tokio::spawn(write_pairs_mysql(url.clone(), stopped)),
        };
        // Pairs are being committed before, during and after the copy.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let request = CopyRequest { date: DAY.parse().expect("date"), tables: None };
        let reports = copy_database(&store, "app", &database, &request).await.expect("run");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        stop.send(true).expect("stop");
        let written = writer.await.expect("writer");
        assert!(reports.iter().all(|r| r.error.is_none()), "{reports:?}");
        let (members, posts) = (ids(&store, "app", "members").await, ids(&store, "app", "posts").await);
        let copied_pairs = members.len() as i64 - ROWS;
        let only_one: Vec<&i64> = members
            .iter()
            .filter(|id| posts.binary_search(id).is_err())
            .chain(posts.iter().filter(|id| members.binary_search(id).is_err()))
            .take(5)
            .collect();
        assert!(only_one.is_empty(), "{engine}: pairs in one table only (a pair is in both or neither): {only_one:?}");
        assert_eq!(members.len(), posts.len(), "{engine}");
        assert!(
            copied_pairs > 0 && (copied_pairs as u64) < written,
            "{engine}: {copied_pairs} of {written} pairs copied"
        );
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by tests/run.sh"]
async fn incremental_days_arrive_once_rerun_and_survive_a_run_that_dies() {
    let (client, url) = fresh_postgres("tables_incremental").await;
    client
        .batch_execute(
            "CREATE TABLE posts (id bigint PRIMARY KEY, body text, updated_at timestamptz NOT NULL);
             INSERT INTO posts SELECT g, 'post ' || g, '2026-12-01 00:00:00+00'::timestamptz + g * interval '1 second'
               FROM generate_series(1, 100) g;",
        )
        .await
        .expect("schema");
    let lake_dir = tempfile::tempdir().expect("tempdir");
    let store = local_lake(&lake_dir);
    let mut database = config(&format!(
        "engine = \"postgres\"\nurl = \"{url}\"\n\
         [tables.posts]\nmode = \"incremental\"\ncursor = \"updated_at\"\nprimary_key = [\"id\"]"
    ));
    let day = |d: &str| CopyRequest { date: d.parse().expect("date"), tables: None };
    let copied = |store: LakeStore, date: &'static str| async move {
        inlet_tables::copy::manifests(&store, "app", "posts")
            .await
            .expect("manifests")
            .into_iter()
            .find(|m| m.date.to_string() == date)
            .map(|m| (m.rows, m.watermark_from, m.watermark))
    };

    let first = copy_database(&store, "app", &database, &day("2026-12-01")).await.expect("day 1");
    assert_eq!(first[0].rows, 100);
    // Inserts and updates between runs arrive on the next day, once.
    client
        .batch_execute(
            "INSERT INTO posts VALUES (101, 'new', '2026-12-02 00:00:00+00');
             UPDATE posts SET body = 'edited', updated_at = '2026-12-02 00:00:01+00' WHERE id = 7;",
        )
        .await
        .expect("changes");
    let second = copy_database(&store, "app", &database, &day("2026-12-02")).await.expect("day 2");
    assert_eq!(second[0].rows, 2);
    let (_, from, to) = copied(store.clone(), "2026-12-02").await.expect("day 2 committed");
    assert_eq!(from.as_deref(), Some("2026-12-01 00:01:40+00"));
    assert_eq!(to.as_deref(), Some("2026-12-02 00:00:01+00"));
    // Re-running the day replaces it with the same rows (and any since).
    let again = copy_database(&store, "app", &database, &day("2026-12-02")).await.expect("day 2 again");
    assert_eq!(again[0].rows, 2);
    let files = store.list("tables/app/posts/dt=2026-12-02").await.expect("list");
    assert_eq!(files.len(), 1, "the replaced copy's files are gone: {files:?}");
    // An older day cannot be re-run once a later one exists.
    let refused = copy_database(&store, "app", &database, &day("2026-12-01")).await.expect_err("older day");
    assert!(refused.to_string().contains("re-runs only its latest day"), "{refused}");

    // A run that uploads its parts and dies before the commit changes nothing visible.
    client.batch_execute("INSERT INTO posts VALUES (102, 'later', '2026-12-03 00:00:00+00')").await.expect("insert");
    let died = read_database(&store, "app", &database, &day("2026-12-03")).await.expect("read");
    drop(died);
    assert_eq!(copied(store.clone(), "2026-12-03").await, None);
    assert_eq!(store.list("tables/app/posts/dt=2026-12-03").await.expect("list").len(), 1, "an orphan part");
    let latest = inlet_tables::copy::latest_manifest(&store, "app", "posts").await.expect("latest").expect("some");
    assert_eq!(latest.watermark.as_deref(), Some("2026-12-02 00:00:01+00"), "the watermark did not move");
    let rerun = copy_database(&store, "app", &database, &day("2026-12-03")).await.expect("re-run");
    assert_eq!(rerun[0].rows, 1);
    assert_eq!(store.list("tables/app/posts/dt=2026-12-03").await.expect("list").len(), 1, "the orphan is deleted");

    // Schema changes: an added column appears; a retype is refused until allowed.
    client.batch_execute("ALTER TABLE posts ADD COLUMN likes integer DEFAULT 0").await.expect("add");
    let added = copy_database(&store, "app", &database, &day("2026-12-04")).await.expect("added");
    assert_eq!(added[0].added_columns, ["likes"]);
    client.batch_execute("ALTER TABLE posts ALTER COLUMN likes TYPE bigint").await.expect("retype");
    let refused = copy_database(&store, "app", &database, &day("2026-12-05")).await.expect("run");
    let message = refused[0].error.as_deref().expect("retype refused");
    assert!(message.contains("likes int32 → int64") && message.contains("allow_retype"), "{message}");
    database.tables.get_mut("posts").expect("table").allow_retype.push("likes".into());
    let allowed = copy_database(&store, "app", &database, &day("2026-12-05")).await.expect("allowed");
    assert_eq!(allowed[0].error, None);
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Garage: run by tests/run.sh"]
async fn a_table_larger_than_a_part_goes_to_s3_in_parts() {
    let (client, url) = fresh_postgres("tables_s3").await;
    client
        .batch_execute(
            "CREATE TABLE comments (id bigint PRIMARY KEY, body text);
             INSERT INTO comments SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 300000) g;",
        )
        .await
        .expect("schema");
    let prefix = format!("tables-{}", std::process::id());
    let settings =
        S3Settings { endpoint: Some(env("GARAGE_ENDPOINT")), force_path_style: true, ..S3Settings::default() };
    let store = LakeStore::open(LakeLocation::S3 { bucket: env("GARAGE_BUCKET"), prefix }, &settings).expect("lake");
    let database = config(&format!(
        "engine = \"postgres\"\nurl = \"{url}\"\nfile_rows = 200000\nrow_group_rows = 100000\n[tables.comments]\nmode = \"snapshot\""
    ));
    let reports =
        copy_database(&store, "app", &database, &CopyRequest { date: DAY.parse().expect("date"), tables: None })
            .await
            .expect("run");
    assert_eq!(reports[0].rows, 300_000);
    assert_eq!(reports[0].files, 2);
    let manifest = inlet_tables::copy::latest_manifest(&store, "app", "comments").await.expect("read").expect("some");
    assert!(
        manifest.files[0].bytes > 2 * inlet_lake::store::MULTIPART_PART_BYTES as u64,
        "the first file went up in several multipart parts: {} bytes",
        manifest.files[0].bytes
    );
    let mut rows = 0;
    for file in &manifest.files {
        let bytes = store.get(&file.key).await.expect("get").expect("file");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 65536).expect("parquet");
        rows += reader.map(|b| b.expect("batch").num_rows()).sum::<usize>();
    }
    assert_eq!(rows, 300_000);
    let symlink = store
        .get("tables/app/comments/_symlink_format_manifest/dt=2026-12-04/manifest")
        .await
        .expect("get")
        .expect("symlink");
    assert_eq!(String::from_utf8_lossy(&symlink).lines().count(), 2);
}

/// Turns TLS on in the test PostgreSQL with a certificate for 127.0.0.1; returns its PEM.
async fn enable_postgres_tls(client: &tokio_postgres::Client, dir: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("certificate");
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert, certified.cert.pem()).expect("cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("dir mode");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("key mode");
    // The server runs as `postgres` when the suite runs as root (tests/postgres/postgres.sh).
    let whoami = std::process::Command::new("id").arg("-u").output().expect("id");
    if String::from_utf8_lossy(&whoami.stdout).trim() == "0" {
        let uid = std::process::Command::new("id").args(["-u", "postgres"]).output().expect("id postgres");
        let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().expect("uid");
        for path in [&cert, &key] {
            std::os::unix::fs::chown(path, Some(uid), None).expect("chown");
        }
    }
    for setting in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        "ALTER SYSTEM SET ssl = on".into(),
    ] {
        client.batch_execute(&setting).await.expect("ssl setting");
    }
    client.batch_execute("SELECT pg_reload_conf()").await.expect("reload");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    certified.cert.pem()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by tests/run.sh"]
async fn tls_require_encrypts_and_verify_full_checks_the_certificate() {
    let (client, url) = fresh_postgres("tables_tls").await;
    client.batch_execute("CREATE TABLE t (id bigint); INSERT INTO t VALUES (1), (2);").await.expect("table");
    let lake_dir = tempfile::tempdir().expect("tempdir");
    let store = local_lake(&lake_dir);
    let request = CopyRequest { date: DAY.parse().expect("date"), tables: None };
    let run = |tls: String| {
        let store = store.clone();
        let url = url.clone();
        let request = request.clone();
        async move {
            let database =
                config(&format!("engine = \"postgres\"\nurl = \"{url}\"\n{tls}\n[tables.t]\nmode = \"snapshot\""));
            copy_database(&store, "app", &database, &request).await
        }
    };
    // Without TLS on the server, `require` refuses to copy in the clear.
    let clear = run("tls = \"require\"".into()).await.expect_err("plain server");
    assert!(clear.to_string().contains("app"), "{clear}");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = enable_postgres_tls(&client, dir.path()).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).expect("ca");
    let required = run("tls = \"require\"".into()).await.expect("require");
    assert_eq!(required[0].rows, 2);
    let verified =
        run(format!("tls = \"verify-full\"\ntls_ca_file = \"{}\"", ca_file.display())).await.expect("verify-full");
    assert_eq!(verified[0].rows, 2);
    // The Mozilla roots do not include a self-signed certificate: refused.
    let refused = run("tls = \"verify-full\"".into()).await.expect_err("unknown issuer");
    assert!(refused.to_string().to_lowercase().contains("certificate"), "{refused}");
    client.batch_execute("ALTER SYSTEM RESET ssl").await.expect("reset");
    client.batch_execute("SELECT pg_reload_conf()").await.expect("reload");
}
