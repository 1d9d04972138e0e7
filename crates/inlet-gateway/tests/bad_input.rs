//! Bad input, each with its documented status and JSON error; afterwards the server still
//! answers, nothing from the bad requests was stored, and the counters moved.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::{TestGateway, WEB_KEY};
use serde_json::{Value, json};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn event(i: usize) -> Value {
    json!({"type": "track", "event": "Viewed", "userId": format!("user-{i}"), "properties": {"i": i}})
}

fn batch(events: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"batch": events, "writeKey": WEB_KEY})).unwrap()
}

struct Case {
    name: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(name: &'static str, path: &'static str, body: Vec<u8>, status: u16, code: &'static str) -> Case {
    Case { name, path, headers: Vec::new(), body, status, code }
}

fn cases() -> Vec<Case> {
    let big_property = "x".repeat(33 * 1024);
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let deep_event = format!(
        r#"{{"writeKey":"{WEB_KEY}","batch":[{{"type":"track","event":"e","userId":"u","properties":{{"deep":{deep}}}}}]}}"#
    );
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..100 {
        bomb.write_all(&zeros).unwrap();
    }
    let bomb = bomb.finish().unwrap();
    let valid_gzip = gzip(&batch(vec![event(1)]));
    let gzip_header = || vec![("content-encoding", "gzip".to_string())];
    let mut list = vec![
        case("malformed JSON", "/v1/batch", br#"{"batch": [{"type": "track",}"#.to_vec(), 400, "invalid_json"),
        case("invalid UTF-8", "/v1/batch", b"{\"batch\":[{\"type\":\"track\",\"event\":\"\xff\xfe\"}]}".to_vec(), 400, "invalid_json"),
        case("body is an array", "/v1/batch", b"[1,2]".to_vec(), 400, "invalid_body"),
        case("batch is not an array", "/v1/batch", br#"{"batch":{"type":"track"},"writeKey":"x"}"#.to_vec(), 400, "invalid_batch"),
        case("wrong type for writeKey", "/v1/batch", br#"{"batch":[{"type":"track"}],"writeKey":7}"#.to_vec(), 400, "invalid_field"),
        case("wrong type for userId", "/v1/track", serde_json::to_vec(&json!({"writeKey": WEB_KEY, "event": "e", "userId": [1]})).unwrap(), 400, "invalid_id"),
        case("missing ids", "/v1/track", serde_json::to_vec(&json!({"writeKey": WEB_KEY, "event": "e", "userId": null})).unwrap(), 400, "missing_id"),
        case("track without event", "/v1/t", serde_json::to_vec(&json!({"writeKey": WEB_KEY, "userId": "u"})).unwrap(), 400, "missing_event"),
        case("alias without previousId", "/v1/alias", serde_json::to_vec(&json!({"writeKey": WEB_KEY, "userId": "u"})).unwrap(), 400, "missing_previous_id"),
        case("group without groupId", "/v1/group", serde_json::to_vec(&json!({"writeKey": WEB_KEY, "userId": "u"})).unwrap(), 400, "missing_group_id"),
        case("batch item without type", "/v1/batch", batch(vec![json!({"userId": "u", "event": "e"})]), 400, "all_rejected"),
        case("33 KB event", "/v1/track", serde_json::to_vec(&json!({"writeKey": WEB_KEY, "userId": "u", "event": "e", "properties": {"p": big_property}})).unwrap(), 400, "event_too_large"),
        case("600 KB batch", "/v1/batch", batch((0..20).map(|i| json!({"type": "track", "event": "e", "userId": "u", "properties": {"p": "y".repeat(30 * 1024), "i": i}})).collect()), 413, "request_too_large"),
        case("2,501 events", "/v1/batch", batch((0..2501).map(|_| json!({})).collect()), 413, "too_many_events"),
        Case { headers: gzip_header(), ..case("gzip bomb", "/v1/batch", bomb, 413, "request_too_large") },
        Case { headers: gzip_header(), ..case("truncated gzip", "/v1/batch", valid_gzip[..valid_gzip.len() - 8].to_vec(), 400, "invalid_encoding") },
        Case { headers: vec![("content-encoding", "br".into())], ..case("unsupported encoding", "/v1/batch", batch(vec![event(1)]), 415, "unsupported_encoding") },
        case("unknown write key", "/v1/batch", serde_json::to_vec(&json!({"batch": [event(1)], "writeKey": "nope"})).unwrap(), 401, "invalid_write_key"),
        Case { headers: vec![("authorization", "Basic bm9wZTo=".into())], ..case("unknown write key in Basic", "/v1/batch", batch(vec![event(1)]), 401, "invalid_write_key") },
        Case { headers: vec![("authorization", "Bearer abc".into())], ..case("non-Basic Authorization", "/v1/batch", batch(vec![event(1)]), 401, "invalid_authorization") },
        case("missing write key", "/v1/batch", serde_json::to_vec(&json!({"batch": [event(1)]})).unwrap(), 401, "missing_write_key"),
        case("empty body", "/v1/batch", Vec::new(), 400, "empty_body"),
        case("empty batch", "/v1/batch", serde_json::to_vec(&json!({"batch": [], "writeKey": WEB_KEY})).unwrap(), 400, "empty_batch"),
        case("1,000-deep nesting in a batch", "/v1/batch", deep_event.into_bytes(), 400, "all_rejected"),
        case("1,000-deep nesting", "/v1/track", format!(r#"{{"writeKey":"{WEB_KEY}","userId":"u","event":"e","properties":{deep}}}"#).into_bytes(), 400, "invalid_json"),
        case("huge number in a batch", "/v1/batch", format!(r#"{{"writeKey":"{WEB_KEY}","batch":[{{"type":"track","event":"e","userId":"u","properties":{{"n":1e400}}}}]}}"#).into_bytes(), 400, "all_rejected"),
        case("huge number", "/v1/track", format!(r#"{{"writeKey":"{WEB_KEY}","event":"e","userId":"u","properties":{{"n":-1e400}}}}"#).into_bytes(), 400, "invalid_json"),
        case("unknown route", "/v1/unknown", b"{}".to_vec(), 404, "not_found"),
        case("bad timestamp", "/v1/identify", serde_json::to_vec(&json!({"writeKey": WEB_KEY, "userId": "u", "timestamp": "Tuesday"})).unwrap(), 400, "invalid_timestamp"),
    ];
    list.push(case(
        "messageId too long",
        "/v1/page",
        serde_json::to_vec(&json!({"writeKey": WEB_KEY, "userId": "u", "messageId": "m".repeat(101)})).unwrap(),
        400,
        "invalid_message_id",
    ));
    list
}

#[tokio::test]
async fn every_bad_input_gets_its_documented_status_and_json_error() {
    let gateway = TestGateway::start().await;
    for case in cases() {
        let mut request = gateway.post(case.path).header("content-type", "text/plain").body(case.body.clone());
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_else(|e| panic!("{}: body is not JSON: {e}", case.name));
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(body["code"], case.code, "{}: {body}", case.name);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}: {body}", case.name);
    }
    // Still up, nothing stored, counters moved.
    let ok = gateway.post("/v1/batch").body(batch(vec![event(1)])).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(gateway.stored().len(), 1, "only the final valid event is stored");
    for (metric, at_least) in [
        ("inlet_ingest_requests_rejected_total{code=\"invalid_json\"}", 4.0),
        ("inlet_ingest_requests_rejected_total{code=\"request_too_large\"}", 2.0),
        ("inlet_ingest_requests_rejected_total{code=\"invalid_write_key\"}", 2.0),
        ("inlet_ingest_events_rejected_total{reason=\"missing_type\"}", 1.0),
        ("inlet_ingest_events_rejected_total{reason=\"event_too_large\"}", 1.0),
        ("inlet_http_requests_total{route=\"/v1/batch\",status=\"413\"}", 3.0),
        ("inlet_http_requests_total{route=\"unmatched\",status=\"404\"}", 1.0),
    ] {
        assert!(gateway.metric(metric) >= at_least, "{metric} = {}", gateway.metric(metric));
    }
    gateway.stop().await;
}

#[tokio::test]
async fn a_batch_keeps_its_valid_messages_and_reports_the_rest() {
    let gateway = TestGateway::start().await;
    let body = batch(vec![
        event(0),
        json!({"type": "track", "userId": "u"}),
        event(2),
        json!({"type": "nope", "userId": "u"}),
    ]);
    let response = gateway.post("/v1/batch").body(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"], 2);
    assert_eq!(
        body["errors"],
        json!([
            {"index": 1, "code": "missing_event", "message": "track needs a non-empty `event`"},
            {"index": 3, "code": "invalid_type", "message": "`type` \"nope\" is not one of track, page, screen, identify, group, alias"},
        ])
    );
    let stored: Vec<String> = gateway.stored().iter().map(|e| e.event["userId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(stored, ["user-0", "user-2"]);
    gateway.stop().await;
}

#[tokio::test]
async fn duplicates_are_acknowledged_but_stored_once() {
    let gateway = TestGateway::start().await;
    let mut e = event(1);
    e["messageId"] = json!("dup-1");
    for _ in 0..3 {
        let response = gateway.post("/v1/batch").body(batch(vec![e.clone(), e.clone()])).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // The same id from another source is a different message.
    let other = serde_json::to_vec(&json!({"batch": [e.clone()], "writeKey": common::IOS_KEY})).unwrap();
    assert_eq!(gateway.post("/v1/batch").body(other).send().await.unwrap().status(), 200);
    let stored = gateway.stored();
    assert_eq!(stored.len(), 2);
    assert_eq!(gateway.metric("inlet_ingest_events_deduplicated_total{source=\"web\"}"), 5.0);
    gateway.stop().await;
}

/// A batch mixing new messages with repeats (of an earlier request's, and of its own) stores
/// each new one once, in order, with its own content.
#[tokio::test]
async fn a_batch_with_duplicates_stores_the_rest_in_order() {
    let gateway = TestGateway::start().await;
    let with_id = |i: usize| {
        let mut e = event(i);
        e["messageId"] = json!(format!("id-{i}"));
        e
    };
    assert_eq!(gateway.post("/v1/batch").body(batch(vec![with_id(0)])).send().await.unwrap().status(), 200);
    let mixed = vec![with_id(1), with_id(0), with_id(2), with_id(1), with_id(3)];
    let response = gateway.post("/v1/batch").body(batch(mixed)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!((answer["accepted"].clone(), answer["duplicates"].clone()), (json!(3), json!(2)));
    let stored: Vec<(String, Value)> = gateway
        .stored()
        .iter()
        .map(|s| (s.message_id().unwrap().to_owned(), s.event["properties"]["i"].clone()))
        .collect();
    let want: Vec<(String, Value)> = [0, 1, 2, 3].iter().map(|i| (format!("id-{i}"), json!(i))).collect();
    assert_eq!(stored, want);
    gateway.stop().await;
}

#[tokio::test]
async fn over_the_inflight_budget_the_answer_is_429_with_retry_after() {
    let gateway = TestGateway::start_with(std::sync::Arc::new(inlet_gateway::SystemClock), |c| {
        c.limits.max_inflight_bytes = 2 * c.limits.max_request_bytes;
    })
    .await;
    // Two slow clients hold most of the budget with the part of their bodies sent so far.
    let mut senders = Vec::new();
    let mut slow = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        let request = gateway.post("/v1/batch").body(reqwest::Body::wrap_stream(tokio_stream_from(rx))).send();
        slow.push(tokio::spawn(request));
        tx.send(Ok(vec![b' '; 490 * 1024])).await.unwrap();
        senders.push(tx);
    }
    let big_enough: Vec<Value> = (0..20)
        .map(|i| json!({"type": "track", "event": "e", "userId": "u", "properties": {"p": "q".repeat(1000), "i": i}}))
        .collect();
    let mut refused = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let response = gateway.post("/v1/batch").body(batch(big_enough.clone())).send().await.unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("a request that does not fit in the budget should be refused");
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "overloaded");
    let ready = gateway.client.get(format!("{}/readyz", gateway.url)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "clients filling the budget do not take the instance out of its Service");
    // A small request still fits beside the slow one.
    assert_eq!(gateway.post("/v1/batch").body(batch(vec![event(1)])).send().await.unwrap().status(), 200);
    drop(senders);
    for request in slow {
        let _ = request.await;
    }
    assert_eq!(gateway.metric("inlet_ingest_inflight_bytes"), 0.0, "every reservation was given back");
    assert_eq!(gateway.post("/v1/batch").body(batch(big_enough)).send().await.unwrap().status(), 200);
    gateway.stop().await;
}

#[tokio::test]
async fn over_the_inflight_request_limit_the_answer_is_429_at_once() {
    let gateway = TestGateway::start_with(std::sync::Arc::new(inlet_gateway::SystemClock), |c| {
        c.limits.max_inflight_requests = 1;
    })
    .await;
    // A client that sent part of its body holds the only slot.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let slow = tokio::spawn(gateway.post("/v1/batch").body(reqwest::Body::wrap_stream(tokio_stream_from(rx))).send());
    tx.send(Ok(br#"{"batch":["#.to_vec())).await.unwrap();
    let mut refused = None;
    for _ in 0..100 {
        let response = gateway.post("/v1/batch").body(batch(vec![event(1)])).send().await.unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
        // Until the slow request has reached the handler, the slot is still free.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let refused = refused.expect("a request beyond the limit should be refused");
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "overloaded");
    assert_eq!(gateway.metric("inlet_ingest_inflight_requests"), 1.0);
    let ok = format!(r#"{{"type":"track","event":"e","userId":"u","messageId":"slow-1"}}],"writeKey":"{WEB_KEY}"}}"#);
    tx.send(Ok(ok.as_bytes().to_vec())).await.unwrap();
    drop(tx);
    assert_eq!(slow.await.unwrap().unwrap().status(), 200, "the slow request completes");
    assert_eq!(gateway.metric("inlet_ingest_inflight_requests"), 0.0);
    assert_eq!(gateway.post("/v1/batch").body(batch(vec![event(2)])).send().await.unwrap().status(), 200);
    assert!(gateway.stored().iter().any(|e| e.event["messageId"] == "slow-1"));
    gateway.stop().await;
}

#[tokio::test]
async fn over_the_disk_budget_the_answer_is_503_and_nothing_is_written() {
    let gateway = gateway_with_a_2_mib_wal_budget().await;
    let filler = large_events(60, 8000);
    let mut statuses = Vec::new();
    for chunk in filler.chunks(6).cycle().take(60) {
        let status = gateway.post("/v1/batch").body(batch(chunk.to_vec())).send().await.unwrap().status().as_u16();
        statuses.push(status);
        if status == 503 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    let response = gateway.post("/v1/batch").body(batch(vec![event(1)])).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "30");
    let stored_before = gateway.stored().len();
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "storage_full");
    assert_eq!(gateway.stored().len(), stored_before);
    gateway.stop().await;
}

/// A small WAL that one source may fill whole (no per-source share).
async fn gateway_with_a_2_mib_wal_budget() -> TestGateway {
    gateway_with_a_2_mib_wal(1.0).await
}

async fn gateway_with_a_2_mib_wal(source_share: f64) -> TestGateway {
    TestGateway::start_with(std::sync::Arc::new(inlet_gateway::SystemClock), |c| {
        c.wal.segment_bytes = 1024 * 1024;
        c.wal.max_disk_bytes = 2 * 1024 * 1024;
        c.limits.source_share = source_share;
    })
    .await
}

#[tokio::test]
async fn a_source_over_its_share_of_the_wal_gets_429_and_the_others_go_on() {
    let gateway = gateway_with_a_2_mib_wal(0.5).await;
    let filler = large_events(60, 8000);
    let mut statuses = Vec::new();
    for chunk in filler.chunks(6).cycle().take(60) {
        let status = gateway.post("/v1/batch").body(batch(chunk.to_vec())).send().await.unwrap().status().as_u16();
        statuses.push(status);
        if status != 200 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let refused = gateway.post("/v1/batch").body(batch(vec![event(1)])).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "30");
    assert_eq!(refused.json::<Value>().await.unwrap()["code"], "source_storage_full");
    let other = serde_json::to_vec(&json!({"batch": [event(2)], "writeKey": common::IOS_KEY})).unwrap();
    assert_eq!(gateway.post("/v1/batch").body(other).send().await.unwrap().status(), 200, "ios is untouched");
    assert_eq!(gateway.metric("inlet_ingest_requests_limited_total{code=\"source_storage_full\",source=\"web\"}"), 2.0);
    gateway.stop().await;
}

/// `count` track events of a little over `bytes` each.
fn large_events(count: usize, bytes: usize) -> Vec<Value> {
    (0..count)
        .map(|i| json!({"type": "track", "event": "e", "userId": "u", "properties": {"p": "z".repeat(bytes), "i": i}}))
        .collect()
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn beyond_the_connection_limit_new_clients_wait_until_one_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway = TestGateway::start_with(std::sync::Arc::new(inlet_gateway::SystemClock), |c| {
        c.server.max_connections = 1;
    })
    .await;
    let addr = gateway.url.trim_start_matches("http://").to_owned();
    let request = b"GET /healthz HTTP/1.1\r\nHost: inlet\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut answer = [0u8; 512];
    let read = first.read(&mut answer).await.unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..read]));
    assert_eq!(gateway.state.metrics.http_connections.get(), 1);

    // The first connection stays open (keep-alive): the second is not served meanwhile.
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let waited = tokio::time::timeout(std::time::Duration::from_millis(300), second.read(&mut answer)).await;
    assert!(waited.is_err(), "a connection beyond the limit was served");
    drop(first);
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), second.read(&mut answer))
        .await
        .expect("served once the first connection closed")
        .unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    drop(second);
    gateway.stop().await;
}

/// One request on a raw connection and its answer: status, lower-cased head, body.
async fn exchange(stream: &mut tokio::net::TcpStream, request: &[u8]) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.unwrap();
    let mut received = Vec::new();
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut chunk)).await;
        let read = read.expect("an answer within 10 s").expect("the connection is open");
        assert!(read > 0, "the connection closed before an answer: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse().unwrap());
    while received.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the connection closed inside the body");
        received.extend_from_slice(&chunk[..read]);
    }
    (status, head, received[head_end..head_end + length].to_vec())
}

fn raw_post(path: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: inlet\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[tokio::test]
async fn a_refusal_before_the_body_is_read_leaves_the_connection_usable() {
    use tokio::io::AsyncWriteExt;
    let gateway = gateway_with_a_2_mib_wal_budget().await;
    let big = batch(large_events(40, 10_000));
    for _ in 0..20 {
        if gateway.post("/v1/batch").body(big.clone()).send().await.unwrap().status() == 503 {
            break;
        }
    }
    let addr = gateway.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // The head and a little of the body; the refusal comes before the rest is sent, as it does
    // for a client on a slow network.
    let request = raw_post("/v1/batch", "", &big);
    let split = request.len() - big.len() + 1000;
    let (status, head, body) = exchange(&mut stream, &request[..split]).await;
    assert_eq!(status, 503, "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["code"], "storage_full");
    stream.write_all(&request[split..]).await.unwrap();
    // The same connection answers the next request.
    let (status, _, _) = exchange(&mut stream, b"GET /healthz HTTP/1.1\r\nHost: inlet\r\n\r\n").await;
    assert_eq!(status, 200);
    gateway.stop().await;
}

#[tokio::test]
async fn a_body_declared_over_the_limit_is_refused_and_the_connection_closed_with_notice() {
    use tokio::io::AsyncReadExt;
    let gateway = TestGateway::start().await;
    let addr = gateway.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: inlet\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"batch\":[",
        100 * 1024 * 1024
    );
    let (status, head, body) = exchange(&mut stream, request.as_bytes()).await;
    assert_eq!(status, 413);
    assert!(head.contains("connection: close"), "the client is told the connection ends: {head}");
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["code"], "request_too_large");
    let mut rest = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the server closes the connection: {read:?}");
    gateway.stop().await;
}
