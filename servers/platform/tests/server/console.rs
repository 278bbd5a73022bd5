//! The operator console on the real binary: embedded assets with a strict
//! CSP, login with the admin token or an account token, the session cookie,
//! CSRF-checked writes through the admin API's own operations and scoping,
//! the bounded live feed, and the simulator's endpoint.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::common::Server;

/// A console request: `cookie` as the session, `csrf` as `X-CSRF-Token`.
async fn call(
    s: &Server,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
    body: &[u8],
    ct: &str,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(s.url(path))
        .header("content-type", ct);
    if let Some(c) = cookie {
        b = b.header("cookie", format!("corral_console={c}"));
    }
    if let Some(t) = csrf {
        b = b.header("x-csrf-token", t);
    }
    let (status, headers, body) = s
        .send(b.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await;
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// Logs in with `token`: the session id (from `Set-Cookie`) and CSRF token.
async fn login(s: &Server, token: &str) -> (String, String) {
    let body = json!({ "token": token }).to_string();
    let (status, h, v) = call(
        s,
        Method::POST,
        "/console/login",
        None,
        None,
        body.as_bytes(),
        "application/json",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let cookie = h["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let id = cookie
        .strip_prefix("corral_console=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    (id.to_owned(), v["csrf"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_assets_login_csrf_scoping_and_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);

    // Assets: from the binary, with a strict CSP and an ETag that revalidates.
    let (status, h, body) = s
        .send(
            Request::get(s.url("/console/"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("Corral console")
    );
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(h["x-frame-options"], "DENY");
    let etag = h["etag"].clone();
    let (status, _, body) = s
        .send(
            Request::get(s.url("/console/"))
                .header("if-none-match", etag)
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
    let (status, h, _) = s
        .send(
            Request::get(s.url("/console"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(
        (status, &h["location"]),
        (
            StatusCode::PERMANENT_REDIRECT,
            &"/console/".parse().unwrap()
        )
    );
    let (status, _) = s.get("/console/app.js").await;
    assert_eq!(status, 200);

    // No session: 401; a wrong token makes none.
    let (status, _, _) = call(
        &s,
        Method::GET,
        "/console/api/apps",
        None,
        None,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(status, 401);
    let (status, h, _) = call(
        &s,
        Method::POST,
        "/console/login",
        None,
        None,
        br#"{"token": "corral_0000"}"#,
        "application/json",
    )
    .await;
    assert_eq!(status, 401);
    assert!(h.get("set-cookie").is_none());

    // A login from another origin is refused before the token is looked at.
    let req = Request::post(s.url("/console/login"))
        .header("origin", "http://evil.test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({"token": s.token}).to_string(),
        )))
        .unwrap();
    assert_eq!(s.send(req).await.0, 403);

    // The admin's session.
    let (sid, csrf) = login(&s, &s.token).await;
    let (status, _, who) = call(
        &s,
        Method::GET,
        "/console/session",
        Some(&sid),
        None,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(
        (status, &who["principal"]["admin"]),
        (StatusCode::OK, &json!(true))
    );
    assert_eq!(who["csrf"], csrf.as_str());

    // Writes need the CSRF token (and no foreign Origin).
    let js = b"export default { fetch() { return new Response('console') } }";
    let (status, _, v) = call(
        &s,
        Method::PUT,
        "/console/api/apps/web?tier=test",
        Some(&sid),
        None,
        js,
        "application/javascript",
    )
    .await;
    assert_eq!(
        (status, &v["error"]),
        (StatusCode::FORBIDDEN, &json!("csrf"))
    );
    let (status, _, v) = call(
        &s,
        Method::PUT,
        "/console/api/apps/web?tier=test",
        Some(&sid),
        Some("0".repeat(64).as_str()),
        js,
        "application/javascript",
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert!(
        s.app_names().await.iter().all(|n| n != "web"),
        "refused writes wrote nothing"
    );
    let (status, _, v) = call(
        &s,
        Method::PUT,
        "/console/api/apps/web?tier=test",
        Some(&sid),
        Some(&csrf),
        js,
        "application/javascript",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        s.get("/apps/web/").await,
        (StatusCode::OK, Bytes::from("console"))
    );

    // The list with figures, from the API's own operation.
    let (status, _, list) = call(
        &s,
        Method::GET,
        "/console/api/apps?stats=1",
        Some(&sid),
        None,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(status, 200);
    let web = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "web")
        .unwrap();
    assert_eq!(web["requests"], 1, "{web}");
    assert_eq!(web["state"], "warm", "{web}");

    // An account token: its own apps only, no host figures.
    let (_, _, acct) = call(
        &s,
        Method::PUT,
        "/console/api/accounts/acme",
        Some(&sid),
        Some(&csrf),
        br#"{"tier":"test"}"#,
        "application/json",
    )
    .await;
    assert_eq!(acct["name"], "acme", "{acct}");
    let (_, _, tok) = call(
        &s,
        Method::POST,
        "/console/api/accounts/acme/tokens",
        Some(&sid),
        Some(&csrf),
        b"",
        "text/plain",
    )
    .await;
    let acct_token = tok["token"].as_str().unwrap().to_owned();
    let (asid, acsrf) = login(&s, &acct_token).await;
    let (status, _, v) = call(
        &s,
        Method::PUT,
        "/console/api/apps/acme-site",
        Some(&asid),
        Some(&acsrf),
        js,
        "application/javascript",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (_, _, v) = call(
        &s,
        Method::GET,
        "/console/api/apps/acme-site",
        Some(&sid),
        None,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(
        v["account"], "acme",
        "deployed into the token's account: {v}"
    );
    let (_, _, list) = call(
        &s,
        Method::GET,
        "/console/api/apps",
        Some(&asid),
        None,
        b"",
        "text/plain",
    )
    .await;
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme-site"]);
    let (status, _, _) = call(
        &s,
        Method::DELETE,
        "/console/api/apps/web",
        Some(&asid),
        Some(&acsrf),
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(status, 403, "not its app");
    for path in ["/console/api/host", "/console/events"] {
        let (status, _, _) =
            call(&s, Method::GET, path, Some(&asid), None, b"", "text/plain").await;
        assert_eq!(status, 403, "{path}");
    }
    // Revoking the token ends its session.
    let id = tok["id"].as_str().unwrap();
    let (status, _, _) = call(
        &s,
        Method::DELETE,
        &format!("/console/api/tokens/{id}"),
        Some(&sid),
        Some(&csrf),
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(
        &s,
        Method::GET,
        "/console/api/apps",
        Some(&asid),
        None,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(status, 401);

    // The live feed: a frame a second with the gauges and the overview; at
    // most two per session.
    let open = |sid: String| {
        let req = Request::get(s.url("/console/events"))
            .header("cookie", format!("corral_console={sid}"))
            .body(Full::default())
            .unwrap();
        s.client.request(req)
    };
    let mut a = open(sid.clone()).await.unwrap();
    assert_eq!(a.status(), 200);
    assert_eq!(a.headers()["content-type"], "text/event-stream");
    let b = open(sid.clone()).await.unwrap();
    assert_eq!(b.status(), 200);
    let c = open(sid.clone()).await.unwrap();
    assert_eq!(c.status(), 429);
    let frame = a
        .body_mut()
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    let text = std::str::from_utf8(&frame).unwrap();
    let v: Value = serde_json::from_str(text.strip_prefix("data: ").unwrap().trim()).unwrap();
    assert!(
        v["gauges"]["probe"]["ram_total"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(
        v["overview"]["host"]["runtime_slots"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(v["overview"]["totals"]["errors"]["fuel"].is_u64(), "{v}");
    drop((a, b));

    // Maintenance from the console: tenants get 503, the console still answers.
    let (status, _, _) = call(
        &s,
        Method::POST,
        "/console/api/admin/maintenance",
        Some(&sid),
        Some(&csrf),
        br#"{"on":true}"#,
        "application/json",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(s.get("/apps/web/").await.0, 503);
    assert_eq!(s.get("/console/").await.0, 200);
    let (status, _, _) = call(
        &s,
        Method::GET,
        "/console/api/apps",
        Some(&sid),
        None,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(status, 200);
    call(
        &s,
        Method::POST,
        "/console/api/admin/maintenance",
        Some(&sid),
        Some(&csrf),
        br#"{"on":false}"#,
        "application/json",
    )
    .await;

    // Logout ends the session.
    let (status, _, _) = call(
        &s,
        Method::POST,
        "/console/logout",
        Some(&sid),
        Some(&csrf),
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(
        &s,
        Method::GET,
        "/console/api/apps",
        Some(&sid),
        None,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_is_the_probes_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);
    let (_, host) = s.admin(Method::GET, "/api/host", b"", "text/plain").await;
    let (ram, cpus) = (&host["probe"]["ram_total"], &host["probe"]["cpus"]);
    let (status, sim) = s
        .admin(
            Method::GET,
            &format!("/api/admin/simulate?ram={ram}&cpus={cpus}"),
            b"",
            "text/plain",
        )
        .await;
    assert_eq!(status, 200, "{sim}");
    assert_eq!(
        sim["budget"], host["budget"],
        "this host's figures give this host's budget"
    );

    // A bigger box gets more; an override past it is flagged.
    let (_, big) = s
        .admin(
            Method::GET,
            "/api/admin/simulate?ram=68719476736&cpus=16&apps=10",
            b"",
            "text/plain",
        )
        .await;
    assert_eq!(big["budget"]["runtime_slots"], 64, "{big}");
    assert_eq!(big["warnings"], json!([]));
    let (_, over) = s
        .admin(
            Method::GET,
            "/api/admin/simulate?ram=1073741824&cpus=1&runtime_slots=1000&apps=100000",
            b"",
            "text/plain",
        )
        .await;
    assert_eq!(over["warnings"].as_array().unwrap().len(), 2, "{over}");
    let (status, _) = s
        .admin(Method::GET, "/api/admin/simulate?cpus=2", b"", "text/plain")
        .await;
    assert_eq!(status, 400);
    let (status, fresh) = s
        .admin(
            Method::GET,
            "/api/admin/simulate?probe=1",
            b"",
            "text/plain",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(fresh["input"]["cpus"], host["probe"]["cpus"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_history_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path(), None);
    let js = "export default { fetch() { return new Response('h') } }";
    assert_eq!(s.deploy_js("hist", "test", js).await.0, 200);
    for _ in 0..3 {
        assert_eq!(s.get("/apps/hist/").await.0, 200);
    }
    let sum = |v: &Value| -> u64 {
        v["hours"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["requests"].as_u64().unwrap())
            .sum()
    };
    let (status, h) = s
        .admin(Method::GET, "/api/apps/hist/history", b"", "text/plain")
        .await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(sum(&h), 3, "{h}");
    let hour = h["hours"][0]["hour"].as_i64().unwrap();
    assert_eq!(hour % 3600, 0);

    let (dir, token) = s.stop();
    let s = Server::start(&dir, Some(&token));
    let (_, h) = s
        .admin(Method::GET, "/api/apps/hist/history", b"", "text/plain")
        .await;
    assert_eq!(
        sum(&h),
        3,
        "kept across the restart, not counted twice: {h}"
    );
    assert_eq!(s.get("/apps/hist/").await.0, 200);
    let (_, h) = s
        .admin(Method::GET, "/api/apps/hist/history", b"", "text/plain")
        .await;
    assert_eq!(sum(&h), 4, "{h}");
    let (status, _) = s
        .admin(Method::GET, "/api/apps/nope/history", b"", "text/plain")
        .await;
    assert_eq!(status, 404);
}
