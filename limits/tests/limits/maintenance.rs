use std::convert::Infallible;
use std::time::Duration;

use corral_limits::{Maintenance, MaintenanceLayer, MaintenanceSwitch, error_response};
use http::{Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::support::{id, req, tier};

#[tokio::test]
async fn switch_on_refuses_with_503_and_off_serves_again() {
    let switch = MaintenanceSwitch::new();
    let mut svc = ServiceBuilder::new()
        .layer(MaintenanceLayer::new(switch.clone()).retry_after(Duration::from_secs(30)))
        .service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(())) });
    let t = tier(|_| ());

    assert!(svc.ready().await.unwrap().call(req("a", &t)).await.is_ok());
    switch.enable();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(req("a", &t))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<Maintenance>(),
        Some(&Maintenance::new(
            Some(id("a")),
            Some(Duration::from_secs(30))
        ))
    );
    let (status, headers, body) = error_response(&err).unwrap();
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "30");
    assert_eq!(
        crate::support::body_fields(&body),
        crate::support::json(r#"{"error":"maintenance","tenant":"a","retry_after_ms":30000}"#)
    );
    // Without a tenant context (the layer does not need one) it still refuses.
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(String::new()))
        .await
        .unwrap_err();
    assert_eq!(err.downcast_ref::<Maintenance>().unwrap().tenant, None);
    switch.disable();
    assert!(svc.ready().await.unwrap().call(req("a", &t)).await.is_ok());
}
