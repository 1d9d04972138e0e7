use serde_json::{Value, json};

use super::*;

fn plan(file: Value) -> TrackingPlan {
    let file: PlanFile = serde_json::from_value(file).expect("a plan file");
    TrackingPlan::compile(&file, "test.json").expect("compiles")
}

fn order_plan() -> TrackingPlan {
    plan(json!({
        "allow_unplanned_events": false,
        "events": {
            "Order Completed": {
                "type": "object",
                "required": ["order_id", "total"],
                "properties": {
                    "order_id": {"type": "string", "pattern": "^ord-[0-9]+$"},
                    "total": {"type": "number", "minimum": 0, "exclusiveMaximum": 100000000},
                    "currency": {"enum": ["KRW", "USD"]},
                    "coupon": {"type": ["string", "null"], "minLength": 3, "maxLength": 12},
                    "email": {"type": "string", "format": "email"},
                    "placed_at": {"type": "string", "format": "date-time"},
                    "items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"$ref": "#/$defs/item"}},
                    "channel": {"const": "app"},
                    "quantity": {"type": "integer", "maximum": 10},
                    "pack": {"type": "integer", "multipleOf": 6}
                },
                "additionalProperties": false,
                "$defs": {"item": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}}}
            },
            "Signed Up": {"type": "object", "properties": {"profession": {"oneOf": [{"const": "doctor"}, {"const": "dentist"}]}}}
        },
        "identify": {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}},
        "page": {"type": "object", "required": ["path"]},
        "screen": {"type": "object", "properties": {"name": {"type": "string"}}},
        "group": {"type": "object", "required": ["name"]}
    }))
}

fn track(plan: &TrackingPlan, event: &str, properties: Value) -> Vec<(String, String)> {
    plan.check(Call::Track { event }, Some(&properties)).into_iter().map(|v| (v.kind, v.property)).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, p)| ((*k).to_owned(), (*p).to_owned())).collect()
}

#[test]
fn a_valid_event_has_no_violations() {
    let plan = order_plan();
    let valid = json!({
        "order_id": "ord-1", "total": 12.5, "currency": "KRW", "coupon": null, "email": "a@b.kr",
        "placed_at": "2026-12-05T10:00:00Z", "items": [{"sku": "x"}], "channel": "app", "quantity": 2
    });
    assert_eq!(track(&plan, "Order Completed", valid), pairs(&[]));
    assert_eq!(track(&plan, "Signed Up", json!({"profession": "dentist"})), pairs(&[]));
}

#[test]
fn each_keyword_reports_its_kind_and_property() {
    let plan = order_plan();
    let base = || json!({"order_id": "ord-1", "total": 1});
    let with = |key: &str, value: Value| {
        let mut properties = base();
        properties[key] = value;
        properties
    };
    let cases: Vec<(Value, (&str, &str))> = vec![
        (json!({"total": 1}), ("required", "/order_id")),
        (with("total", json!("12")), ("type", "/total")),
        (with("total", json!(-1)), ("minimum", "/total")),
        (with("total", json!(100000000)), ("exclusiveMaximum", "/total")),
        (with("order_id", json!("order-1")), ("pattern", "/order_id")),
        (with("currency", json!("EUR")), ("enum", "/currency")),
        (with("coupon", json!("ab")), ("minLength", "/coupon")),
        (with("coupon", json!("abcdefghijklm")), ("maxLength", "/coupon")),
        (with("email", json!("not an address")), ("format", "/email")),
        (with("placed_at", json!("yesterday")), ("format", "/placed_at")),
        (with("items", json!([])), ("minItems", "/items")),
        (with("items", json!([{"sku": "a"}, {"sku": "b"}, {"sku": "c"}, {"sku": "d"}])), ("maxItems", "/items")),
        (with("items", json!([{"name": "no sku"}])), ("required", "/items/0/sku")),
        (with("channel", json!("web")), ("const", "/channel")),
        (with("quantity", json!(1.5)), ("type", "/quantity")),
        (with("quantity", json!(11)), ("maximum", "/quantity")),
        (with("pack", json!(8)), ("multipleOf", "/pack")),
        (with("gift/wrap", json!(true)), ("additionalProperties", "/gift~1wrap")),
    ];
    for (properties, expected) in cases {
        assert_eq!(track(&plan, "Order Completed", properties.clone()), pairs(&[expected]), "{properties}");
    }
    assert_eq!(track(&plan, "Signed Up", json!({"profession": "nurse"})), pairs(&[("oneOf", "/profession")]));
}

#[test]
fn several_violations_are_all_reported() {
    let plan = order_plan();
    let mut found = track(&plan, "Order Completed", json!({"total": "x", "extra": 1}));
    found.sort();
    assert_eq!(found, pairs(&[("additionalProperties", "/extra"), ("required", "/order_id"), ("type", "/total")]));
}

#[test]
fn unplanned_events_follow_the_plan_setting() {
    let strict = order_plan();
    assert_eq!(track(&strict, "Cart Viewed", json!({})), pairs(&[("unplanned_event", "")]));
    let open = plan(json!({"events": {}}));
    assert_eq!(track(&open, "Cart Viewed", json!({"anything": 1})), pairs(&[]));
}

#[test]
fn other_call_types_use_their_schemas() {
    let plan = order_plan();
    let kinds = |call, payload: Option<Value>| -> Vec<(String, String)> {
        plan.check(call, payload.as_ref()).into_iter().map(|v| (v.kind, v.property)).collect()
    };
    assert_eq!(kinds(Call::Identify, Some(json!({"age": "old"}))), pairs(&[("type", "/age")]));
    assert_eq!(kinds(Call::Identify, Some(json!({"age": 40}))), pairs(&[]));
    // A missing object is checked as `{}`.
    assert_eq!(kinds(Call::Page, None), pairs(&[("required", "/path")]));
    assert_eq!(kinds(Call::Screen, Some(json!({"name": 3}))), pairs(&[("type", "/name")]));
    assert_eq!(kinds(Call::Group, Some(json!({}))), pairs(&[("required", "/name")]));
    let no_schemas = plan_without_others();
    assert_eq!(no_schemas.check(Call::Identify, Some(&json!({"age": "old"}))), vec![]);
}

fn plan_without_others() -> TrackingPlan {
    plan(json!({"events": {"A": {"type": "object"}}}))
}

#[test]
fn violations_per_event_are_capped_and_messages_cut() {
    let plan = plan(json!({"events": {"Wide": {"type": "object", "additionalProperties": {"type": "integer"}}}}));
    let properties: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("p{i}"), json!("x".repeat(500)))).collect();
    let found = plan.check(Call::Track { event: "Wide" }, Some(&Value::Object(properties)));
    assert_eq!(found.len(), MAX_VIOLATIONS);
    assert!(found.iter().all(|v| v.message.chars().count() <= 201), "{:?}", found[0].message);
}

#[test]
fn broken_plans_name_the_file_the_part_and_the_reason() {
    let error = |file: Value| {
        let file: PlanFile = serde_json::from_value(file).expect("a plan file");
        TrackingPlan::compile(&file, "plans/web.yaml").expect_err("refused").to_string()
    };
    let bad_type = error(json!({"events": {"Order Completed": {"type": "strnig"}}}));
    assert!(bad_type.starts_with("tracking plan plans/web.yaml: event \"Order Completed\": "), "{bad_type}");
    assert!(bad_type.contains("strnig"), "{bad_type}");
    let remote = error(json!({"identify": {"$ref": "https://example.com/traits.json"}}));
    assert!(remote.starts_with("tracking plan plans/web.yaml: identify: "), "{remote}");
}

#[test]
fn plan_files_are_read_as_yaml_or_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = dir.path().join("web.yaml");
    std::fs::write(
        &yaml,
        "allow_unplanned_events: false\nevents:\n  Order Completed:\n    type: object\n    required: [order_id]\n",
    )
    .expect("write");
    let plan = TrackingPlan::load(&yaml).expect("yaml plan");
    assert_eq!(track(&plan, "Order Completed", json!({})), pairs(&[("required", "/order_id")]));
    let json_file = dir.path().join("app.json");
    std::fs::write(&json_file, r#"{"events": {"Opened": {"type": "object"}}}"#).expect("write");
    assert_eq!(TrackingPlan::load(&json_file).expect("json plan").event_names().collect::<Vec<_>>(), ["Opened"]);

    let typo = dir.path().join("typo.yaml");
    std::fs::write(&typo, "event:\n  A: {}\n").expect("write");
    let message = TrackingPlan::load(&typo).expect_err("unknown key").to_string();
    assert!(message.contains("typo.yaml: not a valid plan") && message.contains("event"), "{message}");
    let missing = TrackingPlan::load(&dir.path().join("none.yaml")).expect_err("no file").to_string();
    assert!(missing.contains("none.yaml"), "{missing}");
}

#[test]
fn an_inferred_plan_accepts_the_events_it_was_drafted_from() {
    let events = vec![
        (Call::Track { event: "Order Completed" }, Some(json!({"order_id": "a", "total": 3, "items": [{"sku": "x"}]}))),
        (Call::Track { event: "Order Completed" }, Some(json!({"order_id": "b", "total": 2.5, "coupon": null}))),
        (Call::Identify, Some(json!({"profession": "dentist"}))),
        (Call::Page, None),
    ];
    let inferred = infer(events.clone());
    assert_eq!(inferred.calls.get("track"), Some(&2));
    let schema = &inferred.plan.events["Order Completed"];
    assert_eq!(schema["required"], json!(["order_id", "total"]));
    assert_eq!(schema["properties"]["total"]["type"], json!("number"));
    assert_eq!(schema["properties"]["coupon"]["type"], json!("null"));
    assert_eq!(schema["properties"]["items"]["items"]["properties"]["sku"]["type"], json!("string"));
    // The draft round-trips through YAML and accepts every event it came from.
    let reread: PlanFile = serde_yaml_ng::from_str(&inferred.plan.to_yaml()).expect("yaml");
    let plan = TrackingPlan::compile(&reread, "draft").expect("compiles");
    for (call, payload) in &events {
        assert_eq!(plan.check(*call, payload.as_ref()), vec![], "{call:?}");
    }
    assert_eq!(track(&plan, "Order Completed", json!({"order_id": 7, "total": 1})), pairs(&[("type", "/order_id")]));
}
