use std::time::Duration;

use corral_metering::{ErrorKind, HostReport, Meter, Probe};

use crate::id;

fn line_value(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(str::to_string)
}

#[test]
fn hundred_thousand_tenants_make_fifty_tenant_series() {
    let meter = Meter::builder().export_tenants([id("quiet")]).build();
    for i in 0..100_000u64 {
        let t = meter.tenant(&id(&format!("t{i}")));
        t.request();
        if i >= 99_950 {
            // The 50 busiest: 2 + (i − 99 950) requests each.
            for _ in 0..(1 + i - 99_950) {
                t.request();
            }
        }
    }
    meter.tenant(&id("quiet"));
    let text = meter.render();
    let series = text
        .lines()
        .filter(|l| l.starts_with("corral_tenant_requests_total{"))
        .count();
    assert_eq!(series, 51, "top 50 plus the opt-in tenant");
    assert_eq!(
        line_value(&text, "corral_tenant_requests_total{tenant=\"t99999\"}").as_deref(),
        Some("51")
    );
    assert_eq!(
        line_value(&text, "corral_tenant_requests_total{tenant=\"t99950\"}").as_deref(),
        Some("2")
    );
    assert_eq!(
        line_value(&text, "corral_tenant_requests_total{tenant=\"quiet\"}").as_deref(),
        Some("0")
    );
    assert!(line_value(&text, "corral_tenant_requests_total{tenant=\"t5\"}").is_none());
    // 100 000 + (1 + 2 + … + 50)
    assert_eq!(
        line_value(&text, "corral_requests_total").as_deref(),
        Some("101275")
    );
    assert_eq!(
        line_value(&text, "corral_tenants").as_deref(),
        Some("100001")
    );
}

#[test]
fn exact_series_for_a_small_meter() {
    let meter = Meter::builder()
        .export_top(0)
        .export_tenants([id("b")])
        .build();
    let a = meter.tenant(&id("a"));
    let b = meter.tenant(&id("b"));
    for (t, status, ms) in [(&a, 200, 3), (&a, 200, 7), (&b, 429, 30)] {
        t.request();
        t.response(http::StatusCode::from_u16(status).unwrap());
        t.latency(Duration::from_millis(ms));
    }
    b.error(ErrorKind::Rate);
    a.bytes_out(100);
    let _s = a.open_stream();
    meter.record_host(HostReport::new(
        Probe {
            ram_total: 4 << 30,
            ram_available: 1 << 30,
            cpus: 2,
            load_1: 0.5,
            ..Probe::default()
        },
        false,
        true,
    ));
    let text = meter.render();
    let expect = [
        ("corral_requests_total", "3"),
        ("corral_responses_total{class=\"2xx\"}", "2"),
        ("corral_responses_total{class=\"4xx\"}", "1"),
        ("corral_errors_total{kind=\"rate\"}", "1"),
        ("corral_errors_total{kind=\"fuel\"}", "0"),
        ("corral_request_duration_seconds_count", "3"),
        ("corral_request_duration_seconds_sum", "0.04"),
        ("corral_request_duration_seconds_bucket{le=\"0.001\"}", "0"),
        ("corral_request_duration_seconds_bucket{le=\"0.005\"}", "1"),
        ("corral_request_duration_seconds_bucket{le=\"0.01\"}", "2"),
        ("corral_request_duration_seconds_bucket{le=\"0.025\"}", "2"),
        ("corral_request_duration_seconds_bucket{le=\"0.05\"}", "3"),
        ("corral_request_duration_seconds_bucket{le=\"+Inf\"}", "3"),
        ("corral_bytes_out_total", "100"),
        ("corral_streams_open", "1"),
        ("corral_host_memory_total_bytes", "4294967296"),
        ("corral_host_memory_available_bytes", "1073741824"),
        ("corral_host_cpus", "2"),
        ("corral_host_load1", "0.5"),
        ("corral_host_accepting_new_tenants", "0"),
        ("corral_host_maintenance_required", "1"),
        ("corral_tenant_requests_total{tenant=\"b\"}", "1"),
        (
            "corral_tenant_responses_total{tenant=\"b\",class=\"4xx\"}",
            "1",
        ),
        (
            "corral_tenant_errors_total{tenant=\"b\",kind=\"rate\"}",
            "1",
        ),
    ];
    for (series, value) in expect {
        assert_eq!(
            line_value(&text, series).as_deref(),
            Some(value),
            "{series} in\n{text}"
        );
    }
    assert!(
        !text.contains("tenant=\"a\""),
        "a is neither top-N (0) nor opted in"
    );
    assert!(text.contains("# TYPE corral_request_duration_seconds histogram"));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn collector_goes_into_an_application_registry() {
    let meter = Meter::new();
    meter.request(&id("a"));
    let mut registry = prometheus_client::registry::Registry::with_prefix("app");
    registry.register_collector(Box::new(meter.collector()));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    assert!(out.contains("\napp_corral_requests_total 1\n"), "{out}");
}
