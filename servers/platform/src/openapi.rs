//! The OpenAPI 3.1 document of the admin and system API, built from
//! [`ROUTES`](crate::routes::ROUTES), the same table the router matches.
//!
//! ```
//! let doc = corral_server::openapi::document();
//! assert_eq!(doc["openapi"], "3.1.0");
//! assert!(doc["paths"]["/api/apps/{name}"]["put"].is_object());
//! assert_eq!(doc["paths"]["/healthz"]["get"]["security"], serde_json::json!([]));
//! ```

use serde_json::{Map, Value, json};

use crate::routes::ROUTES;

/// The document as JSON.
pub fn document() -> Value {
    let mut paths = Map::new();
    for spec in ROUTES {
        let mut params = Vec::new();
        if spec.path.contains("{name}") {
            params.push(json!({
                "name": "name", "in": "path", "required": true,
                "description": "App, account or token id: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'",
                "schema": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}
            }));
        }
        for (name, description) in spec.query {
            params.push(json!({
                "name": name, "in": "query", "required": false,
                "description": description, "schema": {"type": "string"}
            }));
        }
        let mut op = json!({
            "operationId": format!("{:?}", spec.op),
            "summary": spec.summary,
            "parameters": params,
            "responses": responses(spec.auth, spec.produces),
            // Which token a route needs: none, the admin token, or an
            // account token (for its own apps and account) or the admin's.
            "x-corral-scope": scope(spec.auth, spec.account),
        });
        if !spec.auth {
            op["security"] = json!([]);
        }
        if !spec.body.is_empty() {
            let content: Map<String, Value> = spec
                .body
                .iter()
                .map(|t| {
                    let schema = if *t == "application/json" {
                        json!({"type": "object"})
                    } else {
                        json!({"type": "string", "format": "binary"})
                    };
                    (t.to_string(), json!({ "schema": schema }))
                })
                .collect();
            op["requestBody"] = json!({"required": true, "content": content});
        }
        let item = paths
            .entry(spec.path.to_string())
            .or_insert_with(|| json!({}));
        item[spec.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Corral platform server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Admin API of corral-server. Every route says the token it needs in x-corral-scope: \
                            public (none), admin (the operator's admin token) or account (an account token, \
                            for its own account and apps, or the admin token). Tenant apps are served at <app>.<base_domain>, \
                            under /apps/<app>/ (unless routing.path = false), or with the X-Corral-App \
                            header. When routing.admin_host is set, /api/* answers only on that host \
                            (404 elsewhere), except /api/tls-ask."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {
                "type": "object", "required": ["error"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"}}
            }}
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

/// The scope name of a route: `public`, `admin` or `account`.
pub fn scope(auth: bool, account: bool) -> &'static str {
    match (auth, account) {
        (false, _) => "public",
        (true, false) => "admin",
        (true, true) => "account",
    }
}

fn responses(auth: bool, produces: &str) -> Value {
    let err = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut r = json!({
        "200": {"description": "Success", "content": {produces: {}}},
        "400": {"description": "Invalid request", "content": err["content"]},
        "404": {"description": "Not found", "content": err["content"]},
    });
    if auth {
        r["401"] =
            json!({"description": "Missing, wrong or revoked token", "content": err["content"]});
        r["403"] = json!({
            "description": "An account token outside its account (`forbidden`): another account's app, a tier, or an admin-only route",
            "content": err["content"],
        });
        r["429"] = json!({
            "description": "Too many admin token attempts from this address (`too_many_attempts`, with Retry-After)",
            "content": err["content"],
        });
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{Route, route};

    /// Every operation of the document routes to the operation it names, with
    /// the document's security; and the document has every table row.
    #[test]
    fn document_matches_router() {
        let doc = document();
        let mut count = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                count += 1;
                let uri = path.replace("{name}", "demo");
                let req = http::Request::builder()
                    .method(method.to_ascii_uppercase().as_str())
                    .uri(&uri)
                    .body(())
                    .unwrap();
                let routed = route(&req.into_parts().0, Some("example.com")).unwrap();
                let Route::Api {
                    op: got,
                    auth,
                    name,
                } = routed
                else {
                    panic!("{method} {path} routed to a tenant");
                };
                assert_eq!(format!("{got:?}"), op["operationId"].as_str().unwrap());
                assert_eq!(auth, op.get("security") != Some(&json!([])), "{path}");
                assert_eq!(name.is_some(), path.contains("{name}"));
                assert_eq!(op["responses"].get("401").is_some(), auth);
                assert_eq!(op["responses"].get("429").is_some(), auth);
                let spec = crate::routes::spec_of(got);
                assert_eq!(op["x-corral-scope"], scope(spec.auth, spec.account));
            }
        }
        assert_eq!(count, ROUTES.len());
        assert_eq!(count, 31);
    }
}
