//! The HTTP surface besides ingestion rules: settings, CORS, health, metrics, TLS.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{TestGateway, WEB_KEY, test_config};
use inlet_gateway::SystemClock;
use serde_json::{Value, json};

#[tokio::test]
async fn settings_point_sdks_at_this_gateway_and_turn_off_remote_metrics() {
    let gateway = TestGateway::start_with(Arc::new(SystemClock), |c| {
        c.server.public_url = Some("https://events.example.com".into());
    })
    .await;
    let response = gateway.client.get(format!("{}/v1/projects/{WEB_KEY}/settings", gateway.url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let settings: Value = response.json().await.unwrap();
    assert_eq!(settings["integrations"]["Segment.io"]["apiHost"], "events.example.com/v1");
    assert_eq!(settings["integrations"]["Segment.io"]["protocol"], "https");
    assert_eq!(settings["metrics"]["sampleRate"], 0);
    let unknown = gateway.client.get(format!("{}/v1/projects/nope/settings", gateway.url)).send().await.unwrap();
    assert_eq!(unknown.status(), 401);
    assert_eq!(unknown.json::<Value>().await.unwrap()["code"], "invalid_write_key");
    gateway.stop().await;
}

#[tokio::test]
async fn browsers_get_preflight_answers_with_the_origin_reflected() {
    let gateway = TestGateway::start().await;
    let response = gateway
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/v1/t", gateway.url))
        .header("origin", "https://dentists.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,x-retry-count,content-type")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], "https://dentists.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("x-retry-count"), "{allowed}");
    let post = gateway
        .post("/v1/t")
        .header("origin", "https://dentists.example.com")
        .body(json!({"writeKey": WEB_KEY, "userId": "u", "event": "e"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    assert_eq!(post.headers()["access-control-allow-origin"], "https://dentists.example.com");
    gateway.stop().await;
}

#[tokio::test]
async fn health_readiness_metrics_and_the_discarded_metrics_route() {
    let gateway = TestGateway::start().await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(gateway.client.get(format!("{}{path}", gateway.url)).send().await.unwrap().status(), 200, "{path}");
    }
    let m = gateway
        .post("/v1/m")
        .body(r#"{"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    assert!(gateway.stored().is_empty(), "/v1/m is not stored");
    let ok =
        gateway.post("/v1/identify/").basic_auth(WEB_KEY, None::<&str>).body(r#"{"userId":"u"}"#).send().await.unwrap();
    assert_eq!(ok.status(), 200, "a trailing slash is accepted");
    let wrong_method = gateway.client.get(format!("{}/v1/batch", gateway.url)).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.json::<Value>().await.unwrap()["code"], "method_not_allowed");
    let public_metrics = gateway.client.get(format!("{}/metrics", gateway.url)).send().await.unwrap();
    assert_eq!(public_metrics.status(), 404, "metrics are on the admin listener only");
    let text = gateway.client.get(format!("{}/metrics", gateway.admin_url)).send().await.unwrap().text().await.unwrap();
    for name in [
        "inlet_http_requests_total{route=\"/v1/identify\",status=\"200\"} 1",
        "inlet_ingest_events_accepted_total{source=\"web\"} 1",
        "inlet_wal_fsync_duration_seconds_count",
        "inlet_wal_disk_bytes",
        "inlet_dedupe_entries 1",
    ] {
        assert!(text.contains(name), "metrics lack {name}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn tls_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut config = test_config(dir.path());
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.tls = Some(inlet_gateway::config::TlsConfig { cert: cert_path, key: key_path });
    let tls = inlet_gateway::tls_server_config(config.server.tls.as_ref().unwrap()).unwrap();
    let gateway = TestGateway::start_in(dir, config, Arc::new(SystemClock), Some(tls)).await;
    assert!(gateway.url.starts_with("https://"));
    let response = gateway
        .post("/v1/b")
        .body(
            json!({"writeKey": WEB_KEY, "batch": [{"type": "track", "event": "Secure", "anonymousId": "a"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(gateway.stored()[0].event["event"], "Secure");
    gateway.stop().await;
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), a.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), b.signing_key.serialize_pem()).unwrap();
    let tls = inlet_gateway::config::TlsConfig { cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem") };
    let error = inlet_gateway::tls_server_config(&tls).unwrap_err();
    assert!(format!("{error:#}").contains("do not match"), "{error:#}");
    let missing =
        inlet_gateway::config::TlsConfig { cert: dir.path().join("nope.pem"), key: dir.path().join("key.pem") };
    assert!(format!("{:#}", inlet_gateway::tls_server_config(&missing).unwrap_err()).contains("nope.pem"));
}

#[tokio::test]
async fn shutdown_stops_accepting_but_finishes_requests_in_flight() {
    let mut gateway = TestGateway::start().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let mut rx = rx;
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let request = gateway.post("/v1/batch").body(reqwest::Body::wrap_stream(body)).send();
    let request = tokio::spawn(request);
    let payload =
        json!({"writeKey": WEB_KEY, "batch": [{"type": "track", "event": "Late", "userId": "u"}]}).to_string();
    let (first, second) = payload.as_bytes().split_at(20);
    tx.send(Ok(first.to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    gateway.begin_stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let fresh = common::client().get(format!("{}/healthz", gateway.url)).send().await;
    assert!(fresh.is_err(), "new connections are refused once shutdown began");
    tx.send(Ok(second.to_vec())).await.unwrap();
    drop(tx);
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200, "the request in flight completes");
    gateway.finish_stop().await;
    assert_eq!(gateway.stored().len(), 1);
}

#[tokio::test]
async fn the_admin_listener_serves_operators_and_the_public_one_tells_nothing_internal() {
    const TOKEN: &str = "operator-token-of-some-length";
    let gateway = TestGateway::start_with(std::sync::Arc::new(inlet_gateway::SystemClock), |c| {
        c.admin.token = Some(TOKEN.into());
    })
    .await;
    let status = format!("{}/admin/status", gateway.admin_url);
    let refused = gateway.client.get(&status).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.json::<Value>().await.unwrap()["code"], "invalid_operator_token");
    let wrong = gateway.client.get(&status).bearer_auth("operator-token-of-some-lengtH").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let report: Value = gateway.client.get(&status).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(report["ready"], true);
    assert_eq!(report["sources"]["web"]["wal_bytes"], 0);
    // The operator API is not on the public listener, and the probes there carry no CORS.
    let public = gateway.client.get(format!("{}/admin/status", gateway.url)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let probe = gateway
        .client
        .get(format!("{}/readyz", gateway.url))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(probe.headers().get("access-control-allow-origin").is_none(), "probes are not for browsers");
    assert_eq!(probe.json::<Value>().await.unwrap(), json!({"status": "ready"}), "no internal detail");
    gateway.stop().await;
}

#[tokio::test]
async fn a_client_guessing_write_keys_is_throttled_and_others_are_not() {
    let gateway = TestGateway::start_with(std::sync::Arc::new(inlet_gateway::SystemClock), |c| {
        c.limits.failed_auth_per_minute = 5;
    })
    .await;
    let mut statuses = Vec::new();
    for guess in 0..8 {
        let url = format!("{}/v1/projects/guess-{guess}/settings", gateway.url);
        statuses.push(gateway.client.get(url).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429], "the sixth failure starts the block");
    // While blocked, even a right key is not confirmed to this client: the oracle is closed.
    let right = format!("{}/v1/projects/{WEB_KEY}/settings", gateway.url);
    let blocked = gateway.client.get(&right).send().await.unwrap();
    assert_eq!(blocked.status(), 429);
    assert_eq!(blocked.json::<Value>().await.unwrap()["code"], "auth_throttled");
    let ingest = gateway.post("/v1/track").basic_auth("another-guess", None::<&str>).body("{}").send().await.unwrap();
    assert_eq!(ingest.status(), 429, "ingestion routes share the block");
    gateway.stop().await;
}

#[tokio::test]
async fn suppressed_ids_are_acknowledged_but_not_stored_until_unsuppressed() {
    const TOKEN: &str = "operator-token-of-some-length";
    let gateway = TestGateway::start_with(Arc::new(SystemClock), |c| c.admin.token = Some(TOKEN.into())).await;
    let regulations = format!("{}/admin/privacy/regulations", gateway.admin_url);
    let regulate = |body: Value| gateway.client.post(&regulations).bearer_auth(TOKEN).json(&body).send();
    let created = regulate(json!({"kind": "suppress", "user_ids": ["gone"], "anonymous_ids": ["gone-device"]}));
    let created = created.await.unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["regulation"]["id"].as_str().unwrap().to_owned();
    for (body, code) in [
        (json!({"kind": "suppress"}), "invalid_regulation"),
        (json!({"kind": "forget", "user_ids": ["x"]}), "invalid_regulation"),
        (json!({"kind": "delete", "user_ids": [""]}), "invalid_regulation"),
    ] {
        let refused = regulate(body).await.unwrap();
        assert_eq!(refused.status(), 400);
        assert_eq!(refused.json::<Value>().await.unwrap()["code"], code);
    }
    let unauthorised = gateway.client.get(&regulations).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);

    let batch = |n: u32| {
        json!({"writeKey": WEB_KEY, "batch": [
            {"type": "track", "event": "e", "userId": "gone", "messageId": format!("a{n}")},
            {"type": "track", "event": "e", "anonymousId": "gone-device", "messageId": format!("b{n}")},
            {"type": "track", "event": "e", "userId": "stays", "messageId": format!("c{n}")},
        ]})
        .to_string()
    };
    let answer: Value = gateway.post("/v1/batch").body(batch(1)).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["accepted"], 3, "suppressed events are answered as stored: {answer}");
    let stored: Vec<String> = gateway.stored().iter().map(|e| e.message_id().unwrap().to_owned()).collect();
    assert_eq!(stored, ["c1"]);
    assert_eq!(gateway.metric("inlet_ingest_events_suppressed_total{source=\"web\"}"), 2.0);
    // Only suppressed messages: still a success, nothing stored.
    let only = json!({"writeKey": WEB_KEY, "userId": "gone", "event": "e"}).to_string();
    assert_eq!(gateway.post("/v1/track").body(only).send().await.unwrap().status(), 200);
    assert_eq!(gateway.stored().len(), 1);

    let listed: Value = gateway.client.get(&regulations).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["regulations"][0]["id"], id.as_str());
    let one = gateway.client.get(format!("{regulations}/{id}")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(one.json::<Value>().await.unwrap()["user_ids"], json!(["gone"]));
    let missing = gateway.client.get(format!("{regulations}/nope")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let lifted = regulate(json!({"kind": "unsuppress", "user_ids": ["gone"], "anonymous_ids": ["gone-device"]}));
    assert_eq!(lifted.await.unwrap().status(), 201);
    gateway.post("/v1/batch").body(batch(2)).send().await.unwrap();
    let stored: Vec<String> = gateway.stored().iter().map(|e| e.message_id().unwrap().to_owned()).collect();
    assert_eq!(stored, ["c1", "a2", "b2", "c2"]);
    // The source's default IP policy: the client's address cut to its network.
    assert_eq!(gateway.stored()[0].event["context"]["ip"], "127.0.0.0");
    gateway.stop().await;
}
