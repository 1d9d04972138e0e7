//! The `inlet-batch` binary: the plan of a dry run, the DDL, and clear errors for bad requests.

use std::process::Command;

fn inlet_batch(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_inlet-batch")).args(args).output().expect("run inlet-batch");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn dry_run_prints_the_plan_in_dependency_order() {
    let lake = tempfile::tempdir().expect("tempdir");
    let lake = lake.path().to_str().expect("utf-8");
    let (ok, plan, stderr) = inlet_batch(&[
        "run",
        "--lake",
        lake,
        "--from",
        "2026-11-10",
        "--to",
        "2026-11-11",
        "--time-zone",
        "Asia/Seoul",
        "--dry-run",
    ]);
    assert!(ok, "{stderr}");
    assert!(plan.starts_with("range 2026-11-08 .. 2026-11-11 (4 days, lookback included)"), "{plan}");
    assert!(plan.lines().nth(1).is_some_and(|l| l.starts_with("state: rebuilt from the lake")), "{plan}");
    let order: Vec<&str> = plan.lines().skip(2).filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(order.first(), Some(&"identity_map"));
    assert!(order.iter().position(|s| *s == "daily_user_activity") < order.iter().position(|s| *s == "retention"));
    assert_eq!(order.len(), inlet_batch::Table::ALL.len(), "{plan}");
    let (ok, plan, _) =
        inlet_batch(&["run", "--lake", lake, "--to", "2026-11-11", "--steps", "state,sessions", "--dry-run"]);
    assert!(ok && plan.lines().count() == 3 && plan.contains("sessions"), "{plan}");
    let (ok, _, stderr) = inlet_batch(&["run", "--lake", lake, "--to", "2026-11-11", "--steps", "sessions"]);
    assert!(!ok && stderr.contains("run the `state` step first"), "a table without a state: {stderr}");
    for folder in ["metrics", "state"] {
        assert!(!std::path::Path::new(lake).join(folder).exists(), "a dry run writes nothing");
    }
}

#[test]
fn bad_requests_fail_with_a_message() {
    let cases: [(&[&str], &str); 4] = [
        (&["run", "--to", "2026-11-11", "--steps", "dau", "--dry-run"], "unknown step \"dau\""),
        (&["run", "--from", "2026-11-12", "--to", "2026-11-11", "--dry-run"], "is after --to"),
        (&["run", "--to", "2026-11-11", "--time-zone", "Seoul", "--dry-run"], "not an IANA time zone"),
        (&["run", "--to", "2026-11-11", "--source", "Web App", "--dry-run"], "not a source name"),
    ];
    for (args, expected) in cases {
        let (ok, _, stderr) = inlet_batch(args);
        assert!(!ok && stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn ddl_is_printed_for_both_warehouses() {
    let (ok, redshift, _) = inlet_batch(&["ddl"]);
    assert!(ok && redshift.contains("SORTKEY (activity_date)") && redshift.contains("VARCHAR("), "{redshift}");
    let (ok, postgres, _) = inlet_batch(&["ddl", "--dialect", "postgres"]);
    assert!(ok && postgres.contains("CREATE TABLE IF NOT EXISTS inlet.retention_weekly"), "{postgres}");
}
