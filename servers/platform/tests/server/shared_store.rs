//! Two nodes on one PostgreSQL database (`[storage] url`): an app deployed
//! through one is served by the other from the shared store, and each
//! node's usage figures (what the monthly quota reads) include the other's
//! requests after a flush. Needs `CORRAL_TEST_PG_URL` (`scripts/test` starts
//! a throwaway server); skipped without it, failed without it under `CI=true`.

use http::Method;

use crate::common::{CONFIG, Server, js_text};

/// A fresh database on the test server; `None` (skip) when there is none.
async fn fresh_database(tag: &str) -> Option<String> {
    let base = match std::env::var("CORRAL_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but CORRAL_TEST_PG_URL is unset (scripts/test sets it)")
        }
        _ => {
            use std::io::Write;
            let _ = std::io::stderr().write_all(
                b"\n*** SKIPPING the shared-store test: CORRAL_TEST_PG_URL is unset ***\n\n",
            );
            return None;
        }
    };
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let db = format!("srv_{tag}_{}", std::process::id());
    // One statement per call: neither may run inside a transaction block.
    for sql in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    drop(client);
    let _ = driver.await;
    let (head, query) = base.split_once('?').unwrap_or((&base, ""));
    let (server, _) = head.rsplit_once('/').unwrap();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Some(format!("{server}/{db}{query}"))
}

/// The app's requests this month as `s` reports them.
async fn requests(s: &Server) -> u64 {
    let (status, usage) = s
        .admin(Method::GET, "/api/apps/hello/usage", b"", "text/plain")
        .await;
    assert_eq!(status, 200, "{usage}");
    usage["usage"]["requests"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_node_serves_an_app_of_the_first_and_sees_its_usage() {
    let Some(url) = fresh_database("two_nodes").await else {
        return;
    };
    let config = format!("{CONFIG}\n[storage]\nurl = {url:?}\n");
    let tmp = tempfile::tempdir().unwrap();
    let a = Server::start_with(&tmp.path().join("a"), None, &config);
    let (status, info) = a.deploy_js("hello", "test", &js_text("shared")).await;
    assert_eq!(status, 200, "{info}");
    // Node B starts on its own data dir: the app, its bundle and its
    // artifact come from the shared store.
    let b = Server::start_with(&tmp.path().join("b"), None, &config);
    for s in [&a, &b, &b] {
        let (status, body) = s.get("/apps/hello/").await;
        assert_eq!((status.as_u16(), &body[..]), (200, &b"shared"[..]));
    }
    // usage_flush_interval is 1 s in CONFIG: within two intervals each node's
    // figures hold all three requests (1 on A, 2 on B), counted once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (ra, rb) = (requests(&a).await, requests(&b).await);
        if (ra, rb) == (3, 3) {
            break;
        }
        assert!(ra <= 3 && rb <= 3, "counted twice: A {ra}, B {rb}");
        assert!(
            std::time::Instant::now() < deadline,
            "A {ra}, B {rb} after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
