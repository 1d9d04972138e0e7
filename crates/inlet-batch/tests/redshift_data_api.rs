//! The warehouse engine's Redshift session against a local stand-in for the Redshift Data API that
//! holds it to the documented contract (`awsJson1_1`, `X-Amz-Target: RedshiftData.*`): the first
//! `ExecuteStatement` names the workgroup and database and asks for a session
//! (`SessionKeepAliveSeconds`); later ones carry only its `SessionId` (naming both is refused);
//! a statement runs until `DescribeStatement` says `FINISHED` or `FAILED`; rows come from
//! `GetStatementResult` in pages linked by `NextToken`; a `ThrottlingException` is answered to the
//! first call. No live Redshift is reachable here: what Redshift itself would do with the SQL is
//! not tested, only this client's side of the API.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use inlet_batch::config::RedshiftConfig;
use inlet_batch::warehouse::session::{DataApiSession, Session};
use serde_json::{Value, json};

#[derive(Default)]
struct Fake {
    calls: Vec<(String, Value)>,
    throttled: bool,
    /// Statement id → (SQL, times described).
    statements: Vec<(String, u32)>,
}

async fn data_api(fake: Arc<Mutex<Fake>>, headers: HeaderMap, body: String) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut fake = fake.lock().expect("lock");
    fake.calls.push((target.clone(), request.clone()));
    let error = |kind: &str, message: &str| {
        (StatusCode::BAD_REQUEST, Json(json!({"__type": kind, "message": message}))).into_response()
    };
    match target.as_str() {
        "RedshiftData.ExecuteStatement" => {
            if !fake.throttled {
                fake.throttled = true;
                return error("ThrottlingException", "Rate exceeded");
            }
            let session = request.get("SessionId").and_then(Value::as_str);
            let names_target = request.get("WorkgroupName").is_some() || request.get("Database").is_some();
            match (session, names_target) {
                (Some(_), true) => return error("ValidationException", "SessionId with WorkgroupName or Database"),
                (None, false) => return error("ValidationException", "WorkgroupName and Database required"),
                (Some(id), false) if id != "session-1" => return error("ValidationException", "unknown session"),
                (None, true) if request.get("SessionKeepAliveSeconds").is_none() => {
                    return error("ValidationException", "no session asked for");
                }
                _ => {}
            }
            let sql = request["Sql"].as_str().unwrap_or_default().to_owned();
            fake.statements.push((sql, 0));
            let id = format!("statement-{}", fake.statements.len());
            Json(json!({"Id": id, "SessionId": "session-1", "Database": "dev", "WorkgroupName": "wg"})).into_response()
        }
        "RedshiftData.DescribeStatement" => {
            let id = request["Id"].as_str().unwrap_or_default().to_owned();
            let index: usize = id.trim_start_matches("statement-").parse().unwrap_or(0);
            let Some((sql, described)) = fake.statements.get_mut(index.wrapping_sub(1)) else {
                return error("ResourceNotFoundException", "no such statement");
            };
            *described += 1;
            // Running at the first look, done at the second.
            let status = match (*described, sql.contains("no_such_table")) {
                (1, _) => "STARTED",
                (_, true) => "FAILED",
                _ => "FINISHED",
            };
            let mut answer = json!({"Id": id, "Status": status});
            if status == "FAILED" {
                answer["Error"] = json!("ERROR: relation \"no_such_table\" does not exist");
            }
            Json(answer).into_response()
        }
        "RedshiftData.GetStatementResult" => {
            let page = request.get("NextToken").and_then(Value::as_str);
            let (records, next) = match page {
                None => (
                    json!([[{"stringValue": "2026-11-02"}, {"longValue": 7}], [{"isNull": true}, {"longValue": 8}]]),
                    Some("page-2"),
                ),
                Some("page-2") => (json!([[{"stringValue": "2026-11-03"}, {"booleanValue": true}]]), None),
                Some(_) => return error("ValidationException", "bad token"),
            };
            let mut answer = json!({"Records": records, "TotalNumRows": 3});
            if let Some(next) = next {
                answer["NextToken"] = json!(next);
            }
            Json(answer).into_response()
        }
        _ => error("UnknownOperationException", &target),
    }
}

#[tokio::test]
async fn one_session_throttle_retried_rows_paged_failures_told() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    let state = fake.clone();
    let app = axum::Router::new()
        .fallback(axum::routing::post(move |headers: HeaderMap, body: String| data_api(state.clone(), headers, body)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = RedshiftConfig { workgroup: "wg".into(), database: "dev".into(), ..RedshiftConfig::default() };
    let sdk = aws_sdk_redshiftdata::Config::builder()
        .behavior_version(aws_sdk_redshiftdata::config::BehaviorVersion::latest())
        .region(aws_sdk_redshiftdata::config::Region::new("ap-northeast-2"))
        .credentials_provider(aws_sdk_redshiftdata::config::Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(format!("http://{address}"))
        .http_client(inlet_batch::warehouse::redshift::aws_http_client())
        .build();
    let client = aws_sdk_redshiftdata::Client::from_conf(sdk);
    let mut session = Session::Redshift(DataApiSession::new(client, config));

    session.execute("BEGIN").await.expect("BEGIN, after one throttled attempt");
    let rows = session.query("SELECT day, n FROM pending").await.expect("rows");
    assert_eq!(
        rows,
        [
            vec![Some("2026-11-02".to_owned()), Some("7".to_owned())],
            vec![None, Some("8".to_owned())],
            vec![Some("2026-11-03".to_owned()), Some("t".to_owned())],
        ],
        "both pages, NULL kept"
    );
    let failed = session.execute("SELECT * FROM no_such_table").await.expect_err("a failed statement");
    let text = failed.to_string();
    assert!(text.contains("relation \"no_such_table\" does not exist"), "Redshift's error text: {text}");
    session.execute("COMMIT").await.expect("COMMIT");

    let fake = fake.lock().expect("lock");
    let executes: Vec<&Value> =
        fake.calls.iter().filter(|(t, _)| t == "RedshiftData.ExecuteStatement").map(|(_, r)| r).collect();
    assert_eq!(executes.len(), 5, "throttled + 4 statements: {executes:?}");
    let without_token = |r: &Value| {
        let mut r = r.clone();
        r.as_object_mut().map(|o| o.remove("ClientToken"));
        r
    };
    assert_eq!(without_token(executes[0]), without_token(executes[1]), "the throttled call is sent again");
    assert!(executes[1]["SessionKeepAliveSeconds"].as_i64().is_some_and(|s| s > 0));
    assert!(executes[2..].iter().all(|r| r["SessionId"] == "session-1" && r.get("WorkgroupName").is_none()));
    let statements: Vec<&str> = fake.statements.iter().map(|(sql, _)| sql.as_str()).collect();
    assert_eq!(statements, ["BEGIN", "SELECT day, n FROM pending", "SELECT * FROM no_such_table", "COMMIT"]);
    assert!(fake.statements.iter().all(|(_, described)| *described >= 2), "each polled until it ended");
}
