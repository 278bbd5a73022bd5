//! Accounts and scoped tokens on the real binary: `max_apps`, an account's
//! shared monthly quota, and account tokens that reach their own apps only.

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::common::{CONFIG, Server};

/// The Pro preset with a month of 4 requests, so the test can use it up;
/// everything else as the preset says (10 apps). The free preset (one app)
/// is used as it is.
const TIERS: &str = r#"
[tiers.pro]
compute_shares = 2
memory_bytes = 268435456
fuel_per_request = 1000000000
wall_clock = "5s"
burst = 0
requests_per_month = 4
max_apps = 10
max_body_bytes = 1024
max_bundle_bytes = 65536
idle_timeout = "10m"
max_streams = 1
"#;

const HELLO: &[u8] = b"export default { fetch() { return new Response('hi') } }";

/// A request with `token` (or none) as the bearer.
async fn call(
    s: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    ct: &str,
) -> (StatusCode, Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(s.url(path))
        .header("content-type", ct);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let (status, _, body) = s
        .send(
            b.body(Full::new(bytes::Bytes::copy_from_slice(body)))
                .unwrap(),
        )
        .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn tier(t: &str) -> Vec<u8> {
    json!({ "tier": t }).to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_share_quota_and_app_limit_and_tokens_reach_their_own_apps_only() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!("{CONFIG}{TIERS}");
    let s = Server::start_with(tmp.path(), None, &config);
    let admin_token = s.token.clone();
    let admin = Some(admin_token.as_str());
    let put_app = |path: String, token: Option<&str>| {
        let token = token.map(str::to_owned);
        let s = &s;
        async move {
            call(
                s,
                Method::PUT,
                &path,
                token.as_deref(),
                HELLO,
                "application/javascript",
            )
            .await
        }
    };

    // A free account (one app): its second app is refused with app_limit.
    let (st, v) = call(
        &s,
        Method::PUT,
        "/api/accounts/solo1",
        admin,
        &tier("free"),
        "application/json",
    )
    .await;
    assert_eq!((st, &v["max_apps"]), (StatusCode::OK, &json!(1)), "{v}");
    assert_eq!(
        put_app("/api/apps/one?account=solo1".into(), admin).await.0,
        200
    );
    let (st, v) = put_app("/api/apps/two?account=solo1".into(), admin).await;
    assert_eq!(
        (st, &v["error"]),
        (StatusCode::FORBIDDEN, &json!("app_limit")),
        "{v}"
    );
    assert_eq!((&v["apps"], &v["max_apps"]), (&json!(1), &json!(1)));
    assert_eq!(s.get("/apps/two/").await.0, 404);

    // Two apps of one Pro account share its 4 requests a month.
    call(
        &s,
        Method::PUT,
        "/api/accounts/acme",
        admin,
        &tier("pro"),
        "application/json",
    )
    .await;
    for app in ["acme-a", "acme-b"] {
        let (st, v) = put_app(format!("/api/apps/{app}?account=acme"), admin).await;
        assert_eq!((st, &v["tier"]), (StatusCode::OK, &json!("pro")), "{v}");
    }
    for app in ["acme-a", "acme-b", "acme-a", "acme-b"] {
        assert_eq!(s.get(&format!("/apps/{app}/")).await.0, 200);
    }
    let (st, body) = s.get("/apps/acme-a/").await;
    assert_eq!(st, 429);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "quota_exceeded", "{v}");
    let (_, usage) = call(
        &s,
        Method::GET,
        "/api/accounts/acme/usage",
        admin,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(
        (&usage["usage"]["requests"], &usage["requests_quota"]),
        (&json!(4), &json!(4)),
        "{usage}"
    );
    // Another account's month is its own.
    assert_eq!(s.get("/apps/one/").await.0, 200);

    // Tokens: shown once, one per account.
    let issue = |account: &'static str| {
        let s = &s;
        async move {
            let (st, v) = call(
                s,
                Method::POST,
                &format!("/api/accounts/{account}/tokens"),
                admin,
                b"",
                "text/plain",
            )
            .await;
            assert_eq!(st, 200, "{v}");
            (
                v["token"].as_str().unwrap().to_owned(),
                v["id"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (acme_token, acme_id) = issue("acme").await;
    let (solo_token, solo_id) = issue("solo1").await;
    let (_, listed) = call(
        &s,
        Method::GET,
        "/api/accounts/acme/tokens",
        admin,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(listed[0]["id"], json!(acme_id));
    assert!(
        listed[0].get("token").is_none() && listed[0].get("hash").is_none(),
        "{listed}"
    );

    // The other account's token on every guarded route of the spec, aimed at
    // acme's app, account or token: 403, and nothing ran.
    let (_, doc) = call(
        &s,
        Method::GET,
        "/api/openapi.json",
        admin,
        b"",
        "text/plain",
    )
    .await;
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["x-corral-scope"] == "public" {
                continue;
            }
            let name = if path.starts_with("/api/apps/") {
                "acme-a"
            } else if path.starts_with("/api/tokens/") {
                acme_id.as_str()
            } else {
                "acme"
            };
            let uri = path.replace("{name}", name);
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            if uri == "/api/apps" {
                continue; // lists the token's own apps: below
            }
            for token in [None, Some(solo_token.as_str())] {
                let (st, v) = call(
                    &s,
                    method.clone(),
                    &uri,
                    token,
                    HELLO,
                    "application/javascript",
                )
                .await;
                let want = if token.is_none() { 401 } else { 403 };
                assert_eq!(st, want, "{method} {uri} with {token:?}: {v}");
                if token.is_some() {
                    assert_eq!(
                        (&v["error"], &v["account"]),
                        (&json!("forbidden"), &json!("solo1"))
                    );
                }
            }
            walked += 1;
        }
    }
    let guarded = corral_server::routes::ROUTES
        .iter()
        .filter(|r| r.auth)
        .count();
    assert_eq!(walked, guarded - 1);
    // Still there, untouched.
    let (_, apps) = call(&s, Method::GET, "/api/apps", admin, b"", "text/plain").await;
    let names: Vec<_> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme-a", "acme-b", "demo", "one"]);

    // Its own account: list, deploy (into acme), read, delete.
    let acme = Some(acme_token.as_str());
    let (_, apps) = call(&s, Method::GET, "/api/apps", acme, b"", "text/plain").await;
    let names: Vec<_> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme-a", "acme-b"]);
    let (st, v) = put_app("/api/apps/acme-c".into(), acme).await;
    assert_eq!(st, 200, "{v}");
    let (_, app) = call(&s, Method::GET, "/api/apps/acme-c", acme, b"", "text/plain").await;
    assert_eq!(
        (&app["account"], &app["tier"]),
        (&json!("acme"), &json!("pro"))
    );
    let (st, _) = call(
        &s,
        Method::GET,
        "/api/apps/acme-a/usage",
        acme,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(st, 200);
    let (st, v) = call(
        &s,
        Method::GET,
        "/api/apps/acme-c/logs",
        acme,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // A tier, another account, an admin route: not a token's to choose.
    for path in [
        "/api/apps/acme-d?tier=test",
        "/api/apps/acme-d?account=solo1",
    ] {
        assert_eq!(put_app(path.into(), acme).await.0, 403, "{path}");
    }
    assert_eq!(
        call(&s, Method::GET, "/api/host", acme, b"", "text/plain")
            .await
            .0,
        403
    );
    let (st, _) = call(
        &s,
        Method::DELETE,
        "/api/apps/acme-c",
        acme,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(st, 200);
    // A wrong secret for a known id is a wrong token.
    let forged = format!("{}0", &acme_token[..acme_token.len() - 1]);
    let forged = if forged == acme_token {
        format!("{}1", &acme_token[..acme_token.len() - 1])
    } else {
        forged
    };
    assert_eq!(
        call(
            &s,
            Method::GET,
            "/api/apps",
            Some(&forged),
            b"",
            "text/plain"
        )
        .await
        .0,
        401
    );

    // Revoked: 401 from then on.
    let (st, _) = call(
        &s,
        Method::DELETE,
        &format!("/api/tokens/{solo_id}"),
        admin,
        b"",
        "text/plain",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        call(
            &s,
            Method::GET,
            "/api/apps",
            Some(&solo_token),
            b"",
            "text/plain"
        )
        .await
        .0,
        401
    );

    // Tokens, accounts and the account's month survive a restart.
    let admin_token = s.token.clone();
    s.stop();
    let s = Server::start_with(tmp.path(), Some(&admin_token), &config);
    let (st, apps) = call(&s, Method::GET, "/api/apps", acme, b"", "text/plain").await;
    assert_eq!(
        (st, apps.as_array().map(Vec::len)),
        (StatusCode::OK, Some(2)),
        "{apps}"
    );
    assert_eq!(
        s.get("/apps/acme-b/").await.0,
        429,
        "the account's month survives"
    );
    assert_eq!(
        call(
            &s,
            Method::GET,
            "/api/apps",
            Some(&solo_token),
            b"",
            "text/plain"
        )
        .await
        .0,
        401
    );
}
