//! The `inlet` binary refuses bad configurations at start, saying why, and hides write keys.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn inlet(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_inlet"));
    command
        .args(args)
        .env("INLET_DATA_DIR", dir.path())
        .env("INLET_SERVER__LISTEN", "127.0.0.1:0")
        .env("INLET_ADMIN__LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn bad_configurations_stop_the_start_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing_cert = dir.path().join("missing.pem");
    let missing_cert = missing_cert.to_str().unwrap();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("INLET_WAL__FSYNC", "sometimes")], "sometimes"),
        (&[("INLET_SERVR__LISTEN", "0.0.0.0:1")], "servr"),
        (&[("INLET_SOURCES", r#"[{name = "Web", write_key = "k"}]"#)], "source name"),
        (&[("INLET_SERVER__TLS__CERT", missing_cert), ("INLET_SERVER__TLS__KEY", missing_cert)], "missing.pem"),
    ];
    for (env, needle) in cases {
        let output = inlet(&[], env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{env:?} should not start");
        assert!(stderr.contains("inlet: error:") && stderr.contains(needle), "{env:?}: {stderr}");
    }
}

#[test]
fn check_config_validates_and_hides_write_keys() {
    let destinations = r#"[{name = "ga4", sources = ["web"], kind = "ga4", measurement_id = "G-1", api_secret = "ga4-secret"},
                           {name = "amp", sources = ["web"], kind = "amplitude", api_key = "amp-secret"}]"#;
    let output = inlet(
        &["check-config"],
        &[
            ("INLET_SOURCES", r#"[{name = "web", write_key = "very-secret"}]"#),
            ("INLET_DESTINATIONS", destinations),
            ("INLET_ADMIN__TOKEN", "operator-secret-of-length"),
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(r#""web""#), "{stdout}");
    for secret in ["very-secret", "ga4-secret", "amp-secret", "operator-secret"] {
        assert!(!stdout.contains(secret), "{secret} is printed: {stdout}");
    }
}

#[test]
fn lake_ddl_prints_the_table_and_its_partitions() {
    let output = inlet(
        &["lake", "ddl", "--schema", "spectrum", "--from", "2024-05-01", "--to", "2024-05-02"],
        &[("INLET_LAKE__URL", "s3://analytics/inlet"), ("INLET_SOURCES", r#"[{name = "web", write_key = "k"}]"#)],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("CREATE EXTERNAL TABLE spectrum.events ("), "{stdout}");
    assert!(stdout.contains("LOCATION 's3://analytics/inlet/events/';"));
    let partitions: Vec<&str> = stdout.lines().filter(|l| l.starts_with("ALTER TABLE")).collect();
    assert_eq!(partitions.len(), 24, "one statement per hour of the day");
    assert!(partitions[23].contains("(source='web', dt='2024-05-01', hour=23)"));
}
