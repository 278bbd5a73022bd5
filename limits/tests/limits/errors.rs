use std::time::Duration;

use corral_limits::{
    BoxError, Maintenance, MemoryBudget, Overloaded, RateLimited, RuntimeBusy, TooManyStreams,
    error_response,
};

use crate::support::{id, ms};

fn render(err: impl Into<BoxError>) -> (u16, Option<String>, String) {
    let (status, headers, body) = error_response(&err.into()).unwrap();
    assert_eq!(headers["content-type"], "application/json");
    (
        status.as_u16(),
        headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[test]
fn stable_bodies_statuses_and_retry_after() {
    assert_eq!(
        render(Overloaded::new(id("a"), ms(250))),
        (
            429,
            Some("1".into()),
            r#"{"error":"overloaded","tenant":"a","retry_after_ms":250}"#.into()
        )
    );
    assert_eq!(
        render(RateLimited::new(id("shop-1"), ms(1500))),
        (
            429,
            Some("2".into()),
            r#"{"error":"rate_limited","tenant":"shop-1","retry_after_ms":1500}"#.into()
        )
    );
    assert_eq!(
        render(TooManyStreams::new(id("a"), 20, ms(1001))),
        (
            429,
            Some("2".into()),
            r#"{"error":"too_many_streams","tenant":"a","limit":20,"retry_after_ms":1001}"#.into()
        )
    );
    assert_eq!(
        render(RuntimeBusy::new(Duration::from_secs(3))),
        (
            503,
            Some("3".into()),
            r#"{"error":"runtime_busy","retry_after_ms":3000}"#.into()
        )
    );
    assert_eq!(
        render(Maintenance::new(None, None)),
        (503, None, r#"{"error":"maintenance"}"#.into())
    );
    let err = MemoryBudget::new(id("a"), 10).reserve(11).unwrap_err();
    assert_eq!(
        render(err),
        (
            503,
            None,
            r#"{"error":"memory_budget_exceeded","tenant":"a","used":0,"requested":11,"limit_bytes":10}"#
                .into()
        )
    );
    assert_eq!(
        render(length_limit_error()),
        (413, None, r#"{"error":"payload_too_large"}"#.into())
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
    assert_eq!(&body[..], br#"{"error":"missing_tenant"}"#);
    let other: BoxError = "not ours".into();
    assert!(error_response(&other).is_none());
}
