//! Tenants, bundles, KV quota, bad input, usage sink, config, export/import, migrations.

use corral_metering::{Period, Usage, UsageSink};
use corral_storage::{
    AppKind, Bundle, ExportedBlob, InvalidKey, StorageError, Store, StoreConfig, TenantRecord,
};

use crate::{Backend, both, tid};

fn tenants_crud(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(&dir);
    let a = TenantRecord::new(tid("alpha"), "free".parse().unwrap(), AppKind::Js);
    let b = TenantRecord::new(tid("beta"), "pro".parse().unwrap(), AppKind::Wasm)
        .with_storage_limit(Some(1000));
    store.create_tenant(&b).unwrap();
    store.create_tenant(&a).unwrap();
    assert!(
        matches!(store.create_tenant(&a), Err(StorageError::TenantExists { tenant }) if tenant == a.id)
    );
    // Each is in an account of its own, of its name.
    assert_eq!(
        store.list_tenants().unwrap(),
        [
            a.clone().in_account(tid("alpha")),
            b.clone().in_account(tid("beta"))
        ]
    );
    store
        .set_tenant_tier(&a.id, &"scale".parse().unwrap())
        .unwrap();
    assert_eq!(store.tenant(&a.id).unwrap().unwrap().tier.as_str(), "scale");
    assert!(matches!(
        store.set_tenant_tier(&tid("ghost"), &"x".parse().unwrap()),
        Err(StorageError::TenantNotFound { .. })
    ));
    store.kv_put(&b.id, "k", b"v").unwrap();
    store
        .put_bundle(&b.id, &Bundle::new(AppKind::Wasm, b"\0asm".to_vec()))
        .unwrap();
    assert!(store.delete_tenant(&b.id).unwrap());
    assert!(store.tenant(&b.id).unwrap().is_none());
    assert!(store.kv_get(&b.id, "k").unwrap().is_none());
    assert!(store.bundle_info(&b.id).unwrap().is_none());
    assert_eq!(store.kv_bytes(&b.id).unwrap(), 0);
    assert!(!store.delete_tenant(&b.id).unwrap());
}

fn bundle_replace_is_atomic_and_validated(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(&dir);
    let t = tid("acme");
    let v1 = Bundle::new(AppKind::Js, b"v1".to_vec())
        .with_static("a.css", b"a".to_vec())
        .with_static("img/logo.png", vec![1, 2, 3]);
    let info = store.put_bundle(&t, &v1).unwrap();
    assert_eq!(
        (info.version, info.files, info.bytes, info.kind),
        (1, 2, 6, AppKind::Js)
    );
    assert_eq!(info.code_crc32, crc32fast::hash(b"v1"));
    assert_eq!(
        store.list_static_files(&t).unwrap(),
        ["a.css", "img/logo.png"]
    );

    // A bad path anywhere rejects the whole bundle before anything is written.
    let bad = Bundle::new(AppKind::Js, b"v2".to_vec())
        .with_static("b.css", b"b".to_vec())
        .with_static("../escape", b"x".to_vec());
    assert!(matches!(
        store.put_bundle(&t, &bad),
        Err(StorageError::InvalidKey(InvalidKey::DotSegment))
    ));
    assert_eq!(&store.bundle_code(&t).unwrap().unwrap().bytes[..], b"v1");
    assert_eq!(
        store.list_static_files(&t).unwrap(),
        ["a.css", "img/logo.png"]
    );

    let v2 = Bundle::new(AppKind::Js, b"v2".to_vec()).with_static("b.css", b"bb".to_vec());
    assert_eq!(store.put_bundle(&t, &v2).unwrap().version, 2);
    assert_eq!(store.list_static_files(&t).unwrap(), ["b.css"]);
    assert!(store.static_file(&t, "a.css").unwrap().is_none());
    let f = store.static_file(&t, "b.css").unwrap().unwrap();
    assert_eq!(
        (&f.bytes[..], f.crc32),
        (&b"bb"[..], crc32fast::hash(b"bb"))
    );
    let m = store.static_file_meta(&t, "b.css").unwrap().unwrap();
    assert_eq!((m.len, m.crc32), (2, f.crc32));
}

fn kv_quota_figures(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open_cfg(
        &dir,
        "db",
        StoreConfig::default()
            .default_storage_limit(Some(100))
            .max_kv_value(64),
    );
    let t = tid("acme");
    store.kv_put(&t, "a", &[0; 39]).unwrap(); // 40
    store.kv_put(&t, "b", &[0; 39]).unwrap(); // 80
    assert_eq!(store.kv_bytes(&t).unwrap(), 80);
    match store.kv_put(&t, "c", &[0; 20]) {
        Err(StorageError::StorageQuotaExceeded {
            limit,
            used,
            needed,
        }) => {
            assert_eq!((limit, used, needed), (100, 80, 21));
        }
        other => panic!("{other:?}"),
    }
    // Replacing a value counts only the difference; shrinking always works.
    store.kv_put(&t, "a", &[0; 59]).unwrap(); // 100
    assert_eq!(store.kv_bytes(&t).unwrap(), 100);
    store.kv_put(&t, "a", &[0; 9]).unwrap(); // 50
    assert_eq!(store.kv_bytes(&t).unwrap(), 50);
    // A stored per-tenant limit beats the default; an explicit limit beats both.
    store
        .create_tenant(
            &TenantRecord::new(t.clone(), "free".parse().unwrap(), AppKind::Js)
                .with_storage_limit(Some(55)),
        )
        .unwrap();
    assert!(matches!(
        store.kv_put(&t, "d", &[0; 9]),
        Err(StorageError::StorageQuotaExceeded {
            limit: 55,
            used: 50,
            needed: 10
        })
    ));
    store
        .kv_put_with_limit(&t, "d", &[0; 9], Some(1000))
        .unwrap();
    assert!(store.kv_delete(&t, "d").unwrap());
    assert!(!store.kv_delete(&t, "d").unwrap());
    assert_eq!(store.kv_bytes(&t).unwrap(), 50);
    // Oversize values.
    assert!(matches!(
        store.kv_put(&t, "e", &[0; 65]),
        Err(StorageError::ValueTooLarge { len: 65, max: 64 })
    ));
    // Tenants are isolated.
    assert!(store.kv_get(&tid("other"), "a").unwrap().is_none());
    assert_eq!(
        store.kv_list(&tid("other"), "", 10).unwrap(),
        Vec::<String>::new()
    );
}

fn bad_input_is_a_typed_error(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(&dir);
    let t = tid("acme");
    let cases: Vec<(Vec<u8>, InvalidKey)> = vec![
        (b"".to_vec(), InvalidKey::Empty),
        (b"..".to_vec(), InvalidKey::DotSegment),
        (b"a/../b".to_vec(), InvalidKey::DotSegment),
        (b"./a".to_vec(), InvalidKey::DotSegment),
        (b"a\0b".to_vec(), InvalidKey::Nul { at: 1 }),
        (b"a\nb".to_vec(), InvalidKey::Control { at: 1 }),
        (
            vec![b'k', 0xc3, 0x28],
            InvalidKey::NotUtf8 { valid_up_to: 1 },
        ),
        (vec![b'x'; 513], InvalidKey::TooLong { len: 513, max: 512 }),
        (b"/abs".to_vec(), InvalidKey::EmptySegment),
        (b"a//b".to_vec(), InvalidKey::EmptySegment),
        (b"a\\b".to_vec(), InvalidKey::Backslash),
    ];
    for (key, want) in cases {
        match store.kv_put(&t, &key, b"v") {
            Err(StorageError::InvalidKey(got)) => assert_eq!(got, want, "{key:?}"),
            other => panic!("{key:?}: {other:?}"),
        }
        assert!(matches!(
            store.kv_get(&t, &key),
            Err(StorageError::InvalidKey(_))
        ));
        assert!(matches!(
            store.kv_delete(&t, &key),
            Err(StorageError::InvalidKey(_))
        ));
    }
    assert!(matches!(
        store.kv_list(&t, b"a\0", 1),
        Err(StorageError::InvalidKey(InvalidKey::Nul { at: 1 }))
    ));
    assert!(matches!(
        store.static_file(&t, "../x"),
        Err(StorageError::InvalidKey(InvalidKey::DotSegment))
    ));
    assert!(matches!(
        store.config_set("", &1),
        Err(StorageError::InvalidKey(InvalidKey::Empty))
    ));
    // 512 bytes is fine; unicode is fine.
    store.kv_put(&t, vec![b'x'; 512], b"v").unwrap();
    store.kv_put(&t, "ünïcødé/ключ", b"v").unwrap();
    assert_eq!(store.kv_list(&t, "ü", 10).unwrap(), ["ünïcødé/ключ"]);
    // Bad configs.
    assert!(matches!(
        Store::open(dir.path().join("x"), StoreConfig::default().readers(0)),
        Err(StorageError::InvalidConfig(_))
    ));
    assert!(matches!(
        Store::open(
            dir.path().join("y"),
            StoreConfig::default().chunk_threshold(10)
        ),
        Err(StorageError::InvalidConfig(_))
    ));
}

fn kv_list_prefix_edges(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(&dir);
    let t = tid("acme");
    let u = tid("acme2");
    for k in ["a", "a/b", "a/c", "ab", "b", "a~"] {
        store.kv_put(&t, k, b"1").unwrap();
    }
    store.kv_put(&u, "a", b"1").unwrap();
    assert_eq!(
        store.kv_list(&t, "a", 100).unwrap(),
        ["a", "a/b", "a/c", "ab", "a~"]
    );
    assert_eq!(store.kv_list(&t, "a/", 100).unwrap(), ["a/b", "a/c"]);
    assert_eq!(store.kv_list(&t, "", 100).unwrap().len(), 6);
    assert_eq!(store.kv_list(&t, "a", 2).unwrap(), ["a", "a/b"]);
    assert_eq!(store.kv_list(&t, "zz", 100).unwrap(), Vec::<String>::new());
}

fn usage(t: &str, y: i32, m: u8, requests: u64) -> Usage {
    let mut u = Usage::zero(tid(t), Period::new(y, m).unwrap());
    u.requests = requests;
    u.errors = 2;
    u.exec_time_ms = 3;
    u.fuel = u64::MAX;
    u.peak_memory = 5;
    u.peak_streams = 6;
    u.storage_bytes = 7;
    u.bytes_in = 8;
    u.bytes_out = 9;
    u.cold_starts = 10;
    u.cpu_us = 11;
    u
}

fn usage_sink_upserts_totals(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(&dir);
    let sink: &dyn UsageSink = &store;
    let nov = Period::new(2026, 11).unwrap();
    sink.store(&[
        usage("b", 2026, 11, 5),
        usage("a", 2026, 11, 1),
        usage("a", 2026, 10, 9),
    ])
    .unwrap();
    // Same totals again: idempotent. Newer totals replace.
    sink.store(&[usage("b", 2026, 11, 5), usage("a", 2026, 11, 4)])
        .unwrap();
    let got = sink.load(nov).unwrap();
    assert_eq!(got, [usage("a", 2026, 11, 4), usage("b", 2026, 11, 5)]);
    assert_eq!(got[0].fuel, u64::MAX);
    assert_eq!(
        sink.load(Period::new(2026, 10).unwrap()).unwrap(),
        [usage("a", 2026, 10, 9)]
    );
    assert!(sink.load(Period::new(2025, 1).unwrap()).unwrap().is_empty());
    // Survives reopen.
    drop(store);
    let store = b.open(&dir);
    assert_eq!(store.load_usage(nov).unwrap().len(), 2);
    assert_eq!(store.tenant_usage(&tid("a")).unwrap().len(), 2);
}

fn config_is_typed(b: Backend) {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Probe {
        cache_bytes: u64,
        slots: u32,
    }
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(&dir);
    store
        .config_set(
            "probe",
            &Probe {
                cache_bytes: 1 << 30,
                slots: 8,
            },
        )
        .unwrap();
    store
        .config_set(
            "probe",
            &Probe {
                cache_bytes: 1 << 20,
                slots: 4,
            },
        )
        .unwrap();
    assert_eq!(
        store.config_get::<Probe>("probe").unwrap(),
        Some(Probe {
            cache_bytes: 1 << 20,
            slots: 4
        })
    );
    assert!(
        matches!(store.config_get::<String>("probe"), Err(StorageError::Config { key, .. }) if key == "probe")
    );
    assert!(store.config_delete("probe").unwrap());
    assert_eq!(store.config_get::<Probe>("probe").unwrap(), None);
}

fn export_import_round_trip_and_tamper_rejection(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let src = b.open_cfg(&dir, "src.db", StoreConfig::default());
    let t = tid("acme");
    src.create_tenant(
        &TenantRecord::new(t.clone(), "pro".parse().unwrap(), AppKind::Js)
            .with_storage_limit(Some(10_000)),
    )
    .unwrap();
    src.put_bundle(
        &t,
        &Bundle::new(AppKind::Js, b"code".to_vec()).with_static("i.html", b"hi".to_vec()),
    )
    .unwrap();
    src.kv_put(&t, "k1", b"v1").unwrap();
    src.kv_put(&t, "k2", b"v22").unwrap();
    src.store_usage(&[usage("acme", 2026, 11, 3)]).unwrap();
    let ex = src.export_tenant(&t).unwrap();
    assert_eq!(
        ex.kv,
        [
            ExportedBlob::new("k1", b"v1".to_vec()),
            ExportedBlob::new("k2", b"v22".to_vec())
        ]
    );
    let bundle = ex.bundle.as_ref().unwrap();
    assert_eq!(bundle.code, ExportedBlob::new("code", b"code".to_vec()));
    assert_eq!(
        bundle.static_files,
        [ExportedBlob::new("i.html", b"hi".to_vec())]
    );
    assert_eq!(ex.usage, [usage("acme", 2026, 11, 3)]);

    let dst = b.open_cfg(&dir, "dst.db", StoreConfig::default());
    // A tampered KV value: rejected, nothing written.
    let mut bad = ex.clone();
    bad.kv[1].bytes[0] ^= 1;
    match dst.import_tenant(&bad) {
        Err(StorageError::Integrity {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(key, "kv/acme/k2");
            assert_eq!(expected, crc32fast::hash(b"v22"));
            assert_eq!(actual, crc32fast::hash(&bad.kv[1].bytes));
        }
        other => panic!("{other:?}"),
    }
    assert!(dst.tenant(&t).unwrap().is_none());
    assert!(dst.kv_get(&t, "k1").unwrap().is_none());
    // A tampered static file: rejected too.
    let mut bad = ex.clone();
    bad.bundle.as_mut().unwrap().static_files[0]
        .bytes
        .push(b'!');
    assert!(
        matches!(dst.import_tenant(&bad), Err(StorageError::Integrity { key, .. }) if key == "bundle/acme/static/i.html")
    );
    assert!(dst.tenant(&t).unwrap().is_none());

    dst.import_tenant(&ex).unwrap();
    assert_eq!(dst.tenant(&t).unwrap(), Some(ex.tenant.clone()));
    assert_eq!(&dst.kv_get(&t, "k2").unwrap().unwrap().bytes[..], b"v22");
    assert_eq!(dst.kv_bytes(&t).unwrap(), 2 + 2 + 2 + 3);
    assert_eq!(
        &dst.static_file(&t, "i.html").unwrap().unwrap().bytes[..],
        b"hi"
    );
    assert_eq!(
        dst.load_usage(Period::new(2026, 11).unwrap()).unwrap(),
        ex.usage
    );
    assert_eq!(dst.export_tenant(&t).unwrap(), ex);
    // The meter that restores the imported month flushes the same totals:
    // they are not counted a second time (on PostgreSQL, where flushes add).
    dst.store_usage(&ex.usage).unwrap();
    dst.store_account_usage(&ex.usage).unwrap();
    assert_eq!(dst.tenant_usage(&t).unwrap(), ex.usage);
    let nov = Period::new(2026, 11).unwrap();
    assert_eq!(dst.load_account_usage(nov).unwrap(), ex.usage);
    assert!(matches!(
        dst.import_tenant(&ex),
        Err(StorageError::TenantExists { .. })
    ));
}

fn migrations_are_versioned(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = b.location(&dir, "m.db");
    {
        let store = Store::open(&path, StoreConfig::default()).unwrap();
        assert_eq!(store.schema_version().unwrap(), 5);
        store.kv_put(&tid("a"), "k", b"v").unwrap();
    }
    // Reopening applies nothing twice and keeps the data.
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(store.schema_version().unwrap(), 5);
    assert_eq!(
        &store.kv_get(&tid("a"), "k").unwrap().unwrap().bytes[..],
        b"v"
    );
    drop(store);
    // A database from a newer build is refused.
    b.set_schema_version(&path, 99);
    assert!(matches!(
        Store::open(&path, StoreConfig::default()),
        Err(StorageError::SchemaTooNew {
            found: 99,
            supported: 5
        })
    ));
}

/// Takes a fresh file back to schema version 2 (before accounts, before
/// version 4's CPU time and version 5's journal marks).
const DROP_V3: &str = "
    DROP TABLE usage_marks;
    ALTER TABLE usage DROP COLUMN cpu_us;
    DROP INDEX tenants_by_account;
    ALTER TABLE tenants DROP COLUMN account;
    DROP TABLE accounts;
    DROP TABLE account_usage;
    DROP TABLE account_tokens;";

#[test]
fn a_version_2_database_gives_every_app_an_account_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        let store = Store::open(&path, StoreConfig::default()).unwrap();
        drop(store);
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(DROP_V3).unwrap();
        c.execute(
            "INSERT INTO tenants (name, tier, kind, created) VALUES ('old', 'pro', 'js', 5)",
            [],
        )
        .unwrap();
        c.pragma_update(None, "user_version", 2).unwrap();
    }
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(store.schema_version().unwrap(), 5);
    let rec = store.tenant(&tid("old")).unwrap().unwrap();
    assert_eq!(rec.account.as_ref().map(|a| a.as_str()), Some("old"));
    let acct = store.account(&tid("old")).unwrap().unwrap();
    assert_eq!((acct.tier.as_str(), acct.created), ("pro", 5));
    assert_eq!(store.account_apps(&tid("old")).unwrap(), [tid("old")]);
}

/// The usage table as schema version 1 wrote it (before `refused`).
const USAGE_V1: &str = "
    CREATE TABLE usage (
        tenant        TEXT    NOT NULL,
        year          INTEGER NOT NULL,
        month         INTEGER NOT NULL,
        requests      INTEGER NOT NULL,
        errors        INTEGER NOT NULL,
        exec_time_ms  INTEGER NOT NULL,
        fuel          INTEGER NOT NULL,
        peak_memory   INTEGER NOT NULL,
        peak_streams  INTEGER NOT NULL,
        storage_bytes INTEGER NOT NULL,
        bytes_in      INTEGER NOT NULL,
        bytes_out     INTEGER NOT NULL,
        cold_starts   INTEGER NOT NULL,
        PRIMARY KEY (tenant, year, month)
    );";

#[test]
fn a_version_1_database_gains_refused_counts_and_keeps_its_usage() {
    use corral_limits::Refusal;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // A file written by the build before refused counts: schema 1, with the
    // real table layout of version 1 and one usage row.
    {
        let store = Store::open(&path, StoreConfig::default()).unwrap();
        drop(store);
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(DROP_V3).unwrap();
        c.execute_batch("DROP TABLE usage;").unwrap();
        c.execute_batch(USAGE_V1).unwrap();
        c.execute(
            "INSERT INTO usage VALUES ('old', 2026, 11, 42, 1, 7, 900, 1024, 1, 0, 10, 20, 2)",
            [],
        )
        .unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
    }
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(store.schema_version().unwrap(), 5);
    let nov = Period::new(2026, 11).unwrap();
    let rows = store.load_usage(nov).unwrap();
    assert_eq!(rows.len(), 1);
    let mut want = Usage::zero(tid("old"), nov);
    want.requests = 42;
    want.errors = 1;
    want.exec_time_ms = 7;
    want.fuel = 900;
    want.peak_memory = 1024;
    want.peak_streams = 1;
    want.bytes_in = 10;
    want.bytes_out = 20;
    want.cold_starts = 2;
    assert_eq!(
        rows[0], want,
        "old row read back, with no refusals and no CPU time"
    );

    // New rows carry their refused counts and CPU time through a round trip.
    let mut u = want.clone();
    u.cpu_us = 123_456;
    u.refused.insert(Refusal::RateLimited, 10_000);
    u.refused.insert(Refusal::Overloaded, 3);
    store.store_usage(&[u.clone()]).unwrap();
    assert_eq!(store.load_usage(nov).unwrap(), vec![u.clone()]);
    drop(store);
    let raw: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT refused FROM usage WHERE tenant = 'old'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(raw, r#"{"rate_limited":10000,"overloaded":3}"#);

    // A code from a newer build is skipped, not an error; garbage is corrupt.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute(
        r#"UPDATE usage SET refused = '{"rate_limited":5,"from_the_future":9}'"#,
        [],
    )
    .unwrap();
    drop(c);
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    let rows = store.load_usage(nov).unwrap();
    assert_eq!(
        rows[0]
            .refused
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect::<Vec<_>>(),
        vec![(Refusal::RateLimited, 5)]
    );
    drop(store);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute("UPDATE usage SET refused = 'not json'", [])
        .unwrap();
    drop(c);
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    assert!(matches!(
        store.load_usage(nov),
        Err(StorageError::Corrupt {
            what: "invalid refused counts",
            ..
        })
    ));
}

fn an_accounts_apps_share_its_storage_quota_and_its_app_limit(b: Backend) {
    use corral_storage::AccountRecord;
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(&dir);
    store
        .create_account(&AccountRecord::new(tid("acme"), "pro".parse().unwrap()))
        .unwrap();
    let app = |n: &str| {
        TenantRecord::new(tid(n), "free".parse().unwrap(), AppKind::Js).in_account(tid("acme"))
    };
    store.create_tenant_within(&app("one"), Some(2)).unwrap();
    store.create_tenant_within(&app("two"), Some(2)).unwrap();
    assert!(matches!(
        store.create_tenant_within(&app("three"), Some(2)),
        Err(StorageError::AppLimit {
            apps: 2,
            max: 2,
            ..
        })
    ));
    // The app took its account's tier, not the record's.
    assert_eq!(
        store.tenant(&tid("one")).unwrap().unwrap().tier.as_str(),
        "pro"
    );

    // 100 bytes for the account: 60 in one leave 40 for two.
    store
        .kv_put_with_limit(&tid("one"), "k", &[0; 59], Some(100))
        .unwrap();
    let err = store
        .kv_put_with_limit(&tid("two"), "k", &[0; 40], Some(100))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::StorageQuotaExceeded {
                limit: 100,
                used: 60,
                needed: 41
            }
        ),
        "{err:?}"
    );
    store
        .kv_put_with_limit(&tid("two"), "k", &[0; 39], Some(100))
        .unwrap();
    // An app of its own account is not charged for acme's bytes.
    store
        .create_tenant(&TenantRecord::new(
            tid("solo"),
            "pro".parse().unwrap(),
            AppKind::Js,
        ))
        .unwrap();
    store
        .kv_put_with_limit(&tid("solo"), "k", &[0; 99], Some(100))
        .unwrap();

    assert!(matches!(
        store.delete_account(&tid("acme")),
        Err(StorageError::AccountNotEmpty { apps: 2, .. })
    ));
    assert!(store.delete_tenant(&tid("one")).unwrap());
    assert!(store.delete_tenant(&tid("two")).unwrap());
    assert!(store.delete_account(&tid("acme")).unwrap());
    assert!(store.account(&tid("acme")).unwrap().is_none());
}

/// A meter with a usage journal on a real store: what a killed node counted
/// but never flushed is in the store, once, after the next process opens
/// the journal — apps and accounts alike.
fn a_journal_hands_a_killed_nodes_counts_to_the_store_once(b: Backend) {
    use corral_metering::{Journal, Meter};
    let dir = tempfile::tempdir().unwrap();
    let jdir = tempfile::tempdir().unwrap();
    let store = b.open(&dir);
    let accounts = store.account_usage_sink();
    let sinks: [(&dyn UsageSink, &str); 2] =
        [(&store, "usage.journal"), (&accounts, "account.journal")];
    for (sink, file) in sinks {
        let (journal, got) = Journal::open(jdir.path(), file, sink).unwrap();
        assert!(got.usage.is_empty());
        let meter = Meter::builder().journal(journal).build();
        meter.restore(sink).unwrap();
        let shop = tid("shop");
        for _ in 0..25 {
            meter.request(&shop);
        }
        meter.flush(sink).unwrap();
        for _ in 0..17 {
            meter.request(&shop);
        }
        // As a SIGKILL leaves it: no last flush (dropping a meter writes
        // nothing to the sink or the file, and closes the file).
        drop(meter);
        let p = Period::containing(std::time::SystemTime::now());
        let stored = |s: &dyn UsageSink| s.load(p).unwrap().iter().map(|u| u.requests).sum::<u64>();
        assert_eq!(stored(sink), 25);
        let (_, got) = Journal::open(jdir.path(), file, sink).unwrap();
        assert_eq!(got.requests(), 17);
        assert_eq!(stored(sink), 42);
        let (_, got) = Journal::open(jdir.path(), file, sink).unwrap();
        assert!(got.usage.is_empty());
        assert_eq!(stored(sink), 42);
    }
}

both!(
    a_journal_hands_a_killed_nodes_counts_to_the_store_once,
    tenants_crud,
    bundle_replace_is_atomic_and_validated,
    kv_quota_figures,
    bad_input_is_a_typed_error,
    kv_list_prefix_edges,
    usage_sink_upserts_totals,
    config_is_typed,
    export_import_round_trip_and_tamper_rejection,
    migrations_are_versioned,
    an_accounts_apps_share_its_storage_quota_and_its_app_limit,
);

/// Two nodes on one PostgreSQL database flush their meters' totals for the
/// same app and month: the shared row is the sum of both nodes' requests
/// (each adds what it counted since its last write), not the last writer's.
#[test]
fn two_nodes_add_up_their_usage_on_postgres() {
    if crate::pg_base().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = Backend::Postgres.location(&dir, "shared");
    let node_a = Store::open(&url, StoreConfig::default()).unwrap();
    let node_b = Store::open(&url, StoreConfig::default()).unwrap();
    let nov = Period::new(2026, 11).unwrap();
    // Each node restores (nothing yet), then counts on its own.
    assert!(node_a.load_usage(nov).unwrap().is_empty());
    assert!(node_b.load_usage(nov).unwrap().is_empty());
    let mut a = usage("acme", 2026, 11, 10);
    a.peak_memory = 50;
    node_a.store_usage(&[a.clone()]).unwrap();
    let mut b = usage("acme", 2026, 11, 7);
    b.peak_memory = 80;
    b.storage_bytes = 123;
    node_b.store_usage(&[b.clone()]).unwrap();
    let row = &node_a.tenant_usage(&tid("acme")).unwrap()[0];
    assert_eq!(row.requests, 17);
    assert_eq!((row.errors, row.cold_starts, row.cpu_us), (4, 20, 22));
    assert_eq!((row.peak_memory, row.storage_bytes), (80, 123));
    // The same totals again change nothing; node A's next 5 requests add 5.
    node_a.store_usage(&[a.clone()]).unwrap();
    node_b.store_usage(&[b.clone()]).unwrap();
    assert_eq!(node_b.tenant_usage(&tid("acme")).unwrap()[0].requests, 17);
    a.requests = 15;
    node_a.store_usage(&[a]).unwrap();
    assert_eq!(node_b.tenant_usage(&tid("acme")).unwrap()[0].requests, 22);
    // A third node restores the shared total and continues from it.
    let node_c = Store::open(&url, StoreConfig::default()).unwrap();
    let mut c = node_c.load_usage(nov).unwrap().remove(0);
    assert_eq!(c.requests, 22);
    c.requests += 3;
    node_c.store_usage(&[c]).unwrap();
    assert_eq!(node_a.load_usage(nov).unwrap()[0].requests, 25);
    // Accounts' rows merge the same way.
    node_a
        .store_account_usage(&[usage("acme", 2026, 11, 2)])
        .unwrap();
    node_b
        .store_account_usage(&[usage("acme", 2026, 11, 3)])
        .unwrap();
    assert_eq!(node_c.load_account_usage(nov).unwrap()[0].requests, 5);
}

/// Two nodes' meters over one PostgreSQL database: after a node's flush its
/// meter holds the whole cluster's month (what the monthly quota reads),
/// its own counts never lost or counted twice.
#[test]
fn two_nodes_meters_see_each_others_requests_after_a_flush() {
    if crate::pg_base().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = Backend::Postgres.location(&dir, "shared");
    let (store_a, store_b) = (
        Store::open(&url, StoreConfig::default()).unwrap(),
        Store::open(&url, StoreConfig::default()).unwrap(),
    );
    let (meter_a, meter_b) = (corral_metering::Meter::new(), corral_metering::Meter::new());
    meter_a.restore(&store_a).unwrap();
    meter_b.restore(&store_b).unwrap();
    let t = tid("acme");
    let requests = |m: &corral_metering::Meter| m.usage(&t).map_or(0, |u| u.requests);
    for _ in 0..10 {
        meter_a.request(&t);
    }
    meter_a.flush(&store_a).unwrap();
    for _ in 0..7 {
        meter_b.request(&t);
    }
    meter_b.flush(&store_b).unwrap();
    // B flushed last: it sees A's 10 beside its own 7.
    assert_eq!(requests(&meter_b), 17);
    assert_eq!(requests(&meter_a), 10);
    // A's next flush (nothing new of its own) reads B's 7 back.
    meter_a.flush(&store_a).unwrap();
    assert_eq!(requests(&meter_a), 17);
    for _ in 0..3 {
        meter_a.request(&t);
    }
    assert_eq!(requests(&meter_a), 20);
    meter_a.flush(&store_a).unwrap();
    meter_b.flush(&store_b).unwrap();
    assert_eq!((requests(&meter_a), requests(&meter_b)), (20, 20));
    assert_eq!(store_a.tenant_usage(&t).unwrap()[0].requests, 20);
    // Nothing new anywhere: flushes write nothing and change nothing.
    assert_eq!(meter_a.flush(&store_a).unwrap(), 0);
    assert_eq!(meter_b.flush(&store_b).unwrap(), 0);
    assert_eq!(store_b.tenant_usage(&t).unwrap()[0].requests, 20);
}

/// A proxy in front of the PostgreSQL server's Unix socket that can lose the
/// answer to a COMMIT: once armed, it passes the next `COMMIT` on to the
/// server, drops that connection before the server's answer comes back, and
/// with `outage` also cuts every other connection and refuses new ones for
/// a while, as a network partition would.
struct LossyProxy {
    dir: tempfile::TempDir,
    /// 0: pass everything; 1: lose the next COMMIT's answer; 2: and an outage.
    armed: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

impl LossyProxy {
    fn start(server_url: &str) -> (LossyProxy, String) {
        use std::io::{Read, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
        use std::sync::{Arc, Mutex};
        use std::time::{Duration, Instant};
        // postgres://user@%2Fsocket%2Fdir/db?query
        let (head, rest) = server_url.split_once('@').unwrap();
        let (host, tail) = rest.split_once('/').unwrap();
        let socket_dir = host.replace("%2F", "/").replace("%2f", "/");
        let target = std::path::Path::new(&socket_dir).join(".s.PGSQL.5432");
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join(".s.PGSQL.5432")).unwrap();
        let armed = Arc::new(AtomicU8::new(0));
        let live: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let down_until: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (a, l, d) = (armed.clone(), live.clone(), down_until.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if d.lock().unwrap().is_some_and(|t| Instant::now() < t) {
                    continue; // dropped: the partition
                }
                let server = UnixStream::connect(&target).unwrap();
                l.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let cut = Arc::new(AtomicBool::new(false));
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_in, mut c_out) = (server, client);
                let (a, l, d, cut2) = (a.clone(), l.clone(), d.clone(), cut.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = c_in.read(&mut buf) {
                        let chunk = &buf[..n];
                        let commit = chunk.windows(7).any(|w| w == b"COMMIT\0");
                        let mode = if commit { a.swap(0, SeqCst) } else { 0 };
                        if mode != 0 {
                            cut2.store(true, SeqCst);
                        }
                        if s_out.write_all(chunk).is_err() {
                            break;
                        }
                        if mode != 0 {
                            // Long enough for the server to commit.
                            std::thread::sleep(Duration::from_millis(300));
                            if mode == 2 {
                                *d.lock().unwrap() = Some(Instant::now() + Duration::from_secs(2));
                                for s in l.lock().unwrap().drain(..) {
                                    let _ = s.shutdown(std::net::Shutdown::Both);
                                }
                            }
                            let _ = s_out.shutdown(std::net::Shutdown::Both);
                            let _ = c_in.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                    }
                });
                std::thread::spawn(move || {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = s_in.read(&mut buf) {
                        if cut.load(SeqCst) || c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let encoded = dir.path().to_string_lossy().replace('/', "%2F");
        let url = format!("{head}@{encoded}/{tail}");
        (LossyProxy { dir, armed }, url)
    }

    fn lose_next_commit_answer(&self, outage: bool) {
        let mode = if outage { 2 } else { 1 };
        self.armed.store(mode, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A meter's flush to PostgreSQL whose COMMIT went through but whose answer
/// was lost is not counted twice: the store reads the journal's mark back
/// (at once, or before its next write when the database was unreachable
/// then) and learns the rows are in. Before, the node kept its old baseline
/// and its next flush added the same requests again.
#[test]
fn a_flush_whose_commit_answer_was_lost_is_not_counted_twice_on_postgres() {
    use corral_metering::{Journal, Meter};
    if crate::pg_base().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = Backend::Postgres.location(&dir, "lossy");
    let (proxy, via) = LossyProxy::start(&url);
    let store = Store::open(&via, StoreConfig::default()).unwrap();
    let truth = Store::open(&url, StoreConfig::default()).unwrap();
    let jdir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(jdir.path(), "usage.journal", &store).unwrap();
    let meter = Meter::builder().journal(journal).build();
    meter.restore(&store).unwrap();
    let shop = tid("shop");
    let p = Period::containing(std::time::SystemTime::now());
    let stored = || {
        truth
            .load_usage(p)
            .unwrap()
            .iter()
            .map(|u| u.requests)
            .sum::<u64>()
    };
    let hit = |n| (0..n).for_each(|_| meter.request(&shop));

    hit(10);
    meter.flush(&store).unwrap();
    assert_eq!(stored(), 10);

    // The answer is lost, the database still reachable: the mark says the
    // rows are in, so the flush is a success.
    hit(20);
    proxy.lose_next_commit_answer(false);
    meter.flush(&store).unwrap();
    assert_eq!(stored(), 30);
    hit(5);
    meter.flush(&store).unwrap();
    assert_eq!(stored(), 35, "the 20 were not added a second time");

    // The answer is lost and the database unreachable for a while: the
    // flush fails, and the next one first asks whether that write is in.
    hit(7);
    proxy.lose_next_commit_answer(true);
    assert!(meter.flush(&store).is_err());
    assert_eq!(stored(), 42, "the commit went through");
    std::thread::sleep(std::time::Duration::from_millis(2300));
    hit(3);
    meter.flush(&store).unwrap();
    assert_eq!(stored(), 45, "the 7 were not added a second time");
    drop(proxy.dir);
}
