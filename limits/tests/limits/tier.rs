use std::time::Duration;

use corral_limits::{GIB, MB, MIB, PRESET_NAMES, Tier, TierError, TierName};

/// (name, shares, memory, requests/month, apps, storage, dedicated)
type Row = (
    &'static str,
    u32,
    u64,
    Option<u64>,
    Option<u32>,
    Option<u64>,
    bool,
);
/// An edit that zeroes one field, and the field's name.
type ZeroCase = (fn(&mut Tier), &'static str);

#[test]
fn presets_carry_the_design_table_figures() {
    let table: [Row; 6] = [
        (
            "free",
            1,
            64 * MIB,
            Some(10_000),
            Some(1),
            Some(10 * MB),
            false,
        ),
        (
            "pro",
            2,
            256 * MIB,
            Some(100_000),
            Some(10),
            Some(100 * MB),
            false,
        ),
        (
            "scale",
            4,
            GIB,
            Some(1_000_000),
            None,
            Some(1_000 * MB),
            false,
        ),
        ("pilot", 1, 512 * MIB, None, None, None, false),
        ("sovereign", 4, 4 * GIB, None, None, None, false),
        ("omni-core", 16, 32 * GIB, None, None, None, true),
    ];
    let presets = Tier::presets();
    assert_eq!(presets.len(), 6);
    for ((name, tier), row) in presets.iter().zip(table) {
        assert_eq!(name.as_str(), row.0);
        let got = (
            name.as_str(),
            tier.compute_shares,
            tier.memory_bytes,
            tier.requests_per_month,
            tier.max_apps,
            tier.storage_bytes,
            tier.dedicated,
        );
        assert_eq!(got, row);
        assert_eq!(&Tier::preset(row.0).unwrap(), tier);
        tier.validate().unwrap();
    }
    assert_eq!(
        PRESET_NAMES,
        ["free", "pro", "scale", "pilot", "sovereign", "omni-core"]
    );
    let free = Tier::free();
    assert_eq!(free.rate_per_minute, Some(60));
    assert_eq!(free.burst, 20);
    assert_eq!(free.wall_clock, Duration::from_secs(5));
    assert_eq!(free.max_body_bytes, MIB);
}

#[test]
fn every_preset_round_trips_through_toml() {
    for (_, tier) in Tier::presets() {
        let text = tier.to_toml();
        assert_eq!(Tier::from_toml(&text).unwrap(), tier, "{text}");
    }
    let text = Tier::pro().to_toml();
    assert!(text.contains("wall_clock = \"10s\""), "{text}");
    assert!(text.contains("idle_timeout = \"15m\""), "{text}");
    assert!(!Tier::pilot().to_toml().contains("requests_per_month"));
}

const CUSTOM: &str = r#"
compute_shares = 3
memory_bytes = 100663296
fuel_per_request = 5000
wall_clock = "1s 500ms"
rate_per_minute = 120
burst = 10
requests_per_month = 50000
max_apps = 3
storage_bytes = 5000000
max_body_bytes = 1024
max_bundle_bytes = 2048
idle_timeout = "90s"
max_streams = 4
"#;

#[test]
fn custom_tier_from_toml() {
    let t = Tier::from_toml(CUSTOM).unwrap();
    assert_eq!(t.compute_shares, 3);
    assert_eq!(t.wall_clock, Duration::from_millis(1500));
    assert_eq!(t.idle_timeout, Duration::from_secs(90));
    assert_eq!(t.rate_per_minute, Some(120));
    assert!(!t.dedicated);
    assert_eq!(t.instance_memory_bytes(), 32 * MIB);
}

/// A tier file written before the stream budgets existed still loads: each
/// stream budget follows its per-request figure. Written out, both are
/// explicit, and an explicit figure wins over the default.
#[test]
fn stream_budgets_default_from_the_per_request_figures() {
    let t = Tier::from_toml(CUSTOM).unwrap();
    assert_eq!(t.stream_fuel, 50_000);
    assert_eq!(t.max_stream_duration, Duration::from_secs(90));
    let text = t.to_toml();
    assert!(text.contains("stream_fuel = 50000"), "{text}");
    assert!(text.contains("max_stream_duration = \"1m 30s\""), "{text}");

    let set = format!("{CUSTOM}stream_fuel = 7\nmax_stream_duration = \"2s\"\n");
    let t = Tier::from_toml(&set).unwrap();
    assert_eq!(
        (t.stream_fuel, t.max_stream_duration),
        (7, Duration::from_secs(2))
    );

    let zero = format!("{CUSTOM}stream_fuel = 0\n");
    let msg = format!("{:?}", Tier::from_toml(&zero).unwrap_err());
    assert!(
        msg.contains("tier field `stream_fuel` must not be zero"),
        "{msg}"
    );

    // The presets are the same rule written out.
    for (name, tier) in Tier::presets() {
        assert_eq!(tier.stream_fuel, tier.fuel_per_request * 10, "{name}");
        assert_eq!(tier.max_stream_duration, tier.wall_clock * 60, "{name}");
    }
}

#[test]
fn toml_refuses_unknown_missing_and_invalid_fields() {
    let typo = CUSTOM.replace("max_streams", "max_stream");
    let msg = match Tier::from_toml(&typo) {
        Err(TierError::Toml(e)) => e.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(msg.contains("unknown field `max_stream`"), "{msg}");

    let missing = CUSTOM.replace("burst = 10\n", "");
    let msg = Tier::from_toml(&missing).unwrap_err();
    assert!(
        format!("{:?}", msg).contains("missing field `burst`"),
        "{msg:?}"
    );

    let zero = CUSTOM.replace("compute_shares = 3", "compute_shares = 0");
    let msg = Tier::from_toml(&zero).unwrap_err();
    assert!(
        format!("{msg:?}").contains("tier field `compute_shares` must not be zero"),
        "{msg:?}"
    );

    let bad_duration = CUSTOM.replace("\"90s\"", "\"soon\"");
    assert!(matches!(
        Tier::from_toml(&bad_duration),
        Err(TierError::Toml(_))
    ));
}

#[test]
fn validation_names_the_field() {
    let cases: [ZeroCase; 11] = [
        (|t| t.compute_shares = 0, "compute_shares"),
        (|t| t.fuel_per_request = 0, "fuel_per_request"),
        (|t| t.wall_clock = Duration::ZERO, "wall_clock"),
        (|t| t.rate_per_minute = Some(0), "rate_per_minute"),
        (|t| t.burst = 0, "burst"),
        (|t| t.requests_per_month = Some(0), "requests_per_month"),
        (|t| t.max_apps = Some(0), "max_apps"),
        (|t| t.max_bundle_bytes = 0, "max_bundle_bytes"),
        (|t| t.idle_timeout = Duration::ZERO, "idle_timeout"),
        (|t| t.stream_fuel = 0, "stream_fuel"),
        (
            |t| t.max_stream_duration = Duration::ZERO,
            "max_stream_duration",
        ),
    ];
    for (edit, field) in cases {
        let mut t = Tier::free();
        edit(&mut t);
        match t.validate() {
            Err(TierError::Zero { field: f }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    // Burst may be zero when there is no rate.
    let mut t = Tier::free();
    t.rate_per_minute = None;
    t.burst = 0;
    t.validate().unwrap();

    let mut t = Tier::scale();
    t.memory_bytes = 4 * MIB - 1;
    assert!(matches!(
        t.validate(),
        Err(TierError::MemoryTooSmall {
            memory_bytes,
            compute_shares: 4,
            min
        }) if memory_bytes == 4 * MIB - 1 && min == MIB
    ));
}

#[test]
fn names_and_presets() {
    assert!(matches!(
        Tier::preset("gold"),
        Err(TierError::UnknownPreset { name }) if name == "gold"
    ));
    for bad in ["", "-a", "a-", "Pro", "a_b", &"x".repeat(64)] {
        assert!(
            matches!(TierName::new(bad), Err(TierError::InvalidName { .. })),
            "{bad:?}"
        );
    }
    let name: TierName = serde_json::from_str("\"team-2\"").unwrap();
    assert_eq!(name.as_str(), "team-2");
    assert!(!name.is_preset());
    assert!(serde_json::from_str::<TierName>("\"Team\"").is_err());
}
