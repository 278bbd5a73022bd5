use std::time::Duration;

use corral_limits::{
    BoxError, Maintenance, Overloaded, RateLimited, Refusal, Refused, RuntimeBusy, TooManyStreams,
    error_response,
};

use crate::support::{body_fields, id, ms};

/// Status, `Retry-After` and the JSON body without its `message`
/// ([`body_fields`]), re-serialized with sorted keys.
fn render(err: impl Into<BoxError>) -> (u16, Option<String>, String) {
    let (status, headers, body) = error_response(&err.into()).unwrap();
    assert_eq!(headers["content-type"], "application/json");
    (
        status.as_u16(),
        headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
        body_fields(&body).to_string(),
    )
}

/// `json` with sorted keys, as [`render`] prints bodies.
fn sorted(json: &str) -> String {
    crate::support::json(json).to_string()
}

#[test]
fn stable_bodies_statuses_and_retry_after() {
    assert_eq!(
        render(Overloaded::new(id("a"), ms(250))),
        (
            429,
            Some("1".into()),
            sorted(r#"{"error":"overloaded","tenant":"a","retry_after_ms":250}"#)
        )
    );
    assert_eq!(
        render(RateLimited::new(id("shop-1"), ms(1500))),
        (
            429,
            Some("2".into()),
            sorted(r#"{"error":"rate_limited","tenant":"shop-1","retry_after_ms":1500}"#)
        )
    );
    assert_eq!(
        render(TooManyStreams::new(id("a"), 20, ms(1001))),
        (
            429,
            Some("2".into()),
            sorted(r#"{"error":"too_many_streams","tenant":"a","limit":20,"retry_after_ms":1001}"#)
        )
    );
    assert_eq!(
        render(RuntimeBusy::new(Duration::from_secs(3))),
        (
            503,
            Some("3".into()),
            sorted(r#"{"error":"runtime_busy","retry_after_ms":3000}"#)
        )
    );
    assert_eq!(
        render(Maintenance::new(None, None)),
        (503, None, sorted(r#"{"error":"maintenance"}"#))
    );
    assert_eq!(
        render(Refused::payload_too_large(Some(id("a")), 10, Some(11))),
        (
            413,
            None,
            sorted(r#"{"error":"payload_too_large","tenant":"a","limit":10,"size":11}"#)
        )
    );
    assert_eq!(
        render(length_limit_error()),
        (413, None, sorted(r#"{"error":"payload_too_large"}"#))
    );
}

/// `LengthLimitError` has no public constructor: get a real one from a body.
fn length_limit_error() -> BoxError {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(String::from("12345"), 4);
    futures_util::FutureExt::now_or_never(limited.collect())
        .unwrap()
        .unwrap_err()
}

#[derive(Debug, thiserror::Error)]
#[error("the sandbox refused")]
struct Wrapper(#[source] Overloaded);

#[test]
fn errors_are_found_down_the_source_chain() {
    let err: BoxError = Wrapper(Overloaded::new(id("a"), ms(2000))).into();
    let (status, headers, _) = error_response(&err).unwrap();
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "2");
}

#[test]
fn missing_tenant_is_a_500_and_foreign_errors_are_none() {
    // `MissingTenant` is `#[non_exhaustive]`: get one the way a layer does.
    let missing = corral_limits::TenantContext::of(&http::Request::new(())).unwrap_err();
    let err: BoxError = Box::new(missing);
    let (status, _, body) = error_response(&err).unwrap();
    assert_eq!(status, 500);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "missing_tenant");
    assert_eq!(Refused::of(&*err), None);
    let other: BoxError = "not ours".into();
    assert!(error_response(&other).is_none());
}

#[test]
fn every_kind_has_one_code_and_one_status() {
    let mut codes = std::collections::HashSet::new();
    for kind in Refusal::ALL {
        assert!(codes.insert(kind.code()), "{} twice", kind.code());
        assert!(kind.status().is_client_error() || kind.status().is_server_error());
    }
    assert_eq!(
        Refusal::of(&*length_limit_error()),
        Some(Refusal::PayloadTooLarge)
    );
}
