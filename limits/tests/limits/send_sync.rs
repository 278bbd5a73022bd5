//! Every public layer, service and future is Send + Sync.

use std::convert::Infallible;
use std::future::Ready;

use corral_limits::*;
use http::Response;

fn send_sync<T: Send + Sync>() {}

type Inner = tower_test::mock::Mock<http::Request<String>, Response<String>>;
type Fut = Ready<Result<Response<String>, Infallible>>;

struct Usage;
impl UsageSource for Usage {
    fn requests_this_month(&self, _: &TenantId) -> u64 {
        0
    }
}

#[test]
fn layers_services_futures_and_guards_are_send_sync() {
    send_sync::<TenantConcurrencyLayer>();
    send_sync::<concurrency::TenantConcurrency<Inner>>();
    send_sync::<concurrency::ResponseFuture<Fut, String>>();

    send_sync::<RuntimeSlotsLayer>();
    send_sync::<runtime::RuntimeLimit<Inner>>();
    send_sync::<runtime::ResponseFuture<Fut, String>>();
    send_sync::<RuntimeSlots>();
    send_sync::<RuntimeSlot>();

    send_sync::<RateLimitLayer>();
    send_sync::<rate::TenantRateLimit<Inner>>();
    send_sync::<rate::ResponseFuture<Fut>>();

    send_sync::<QuotaLayer<Usage>>();
    send_sync::<quota::TenantQuota<Inner, Usage>>();
    send_sync::<quota::ResponseFuture<Fut>>();

    send_sync::<MaintenanceLayer>();
    send_sync::<maintenance::MaintenanceGate<Inner>>();
    send_sync::<maintenance::ResponseFuture<Fut>>();
    send_sync::<MaintenanceSwitch>();

    send_sync::<TenantStreamsLayer>();
    send_sync::<streams::TenantStreams<Inner>>();
    send_sync::<streams::ResponseFuture<Fut>>();

    send_sync::<GuardedBody<String, tokio::sync::OwnedSemaphorePermit>>();
    send_sync::<GuardedBody<String, RuntimeSlot>>();
    send_sync::<TenantLimits>();
    send_sync::<TenantContext>();
    send_sync::<Tier>();
    send_sync::<TierName>();
    send_sync::<TierError>();
    send_sync::<Overloaded>();
    send_sync::<RateLimited>();
    send_sync::<QuotaExceeded>();
    send_sync::<RuntimeBusy>();
    send_sync::<Maintenance>();
    send_sync::<MissingTenant>();
    send_sync::<Refused>();
    send_sync::<TooManyStreams>();
    send_sync::<Detached>();
}
