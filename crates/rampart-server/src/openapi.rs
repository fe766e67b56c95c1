//! The OpenAPI 3.1 description of the JSON API, built here from one table of operations and
//! served at `GET /api/openapi.json`. A copy is checked in at `docs/openapi.json`; a test fails
//! when they differ, and another requests every operation listed here from the running server so
//! the table cannot name a route that does not exist.

use serde_json::{json, Map, Value};

/// One operation of the API.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// HTTP method, lower case.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Summary.
    pub summary: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Request body schema name in `components.schemas`, if any.
    pub body: Option<&'static str>,
    /// Success status and response schema name (None: no body).
    pub ok: (u16, Option<&'static str>),
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A session or an API key.
    User,
    /// A session only.
    Session,
    /// An admin.
    Admin,
}

const fn op(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    access: Access,
    body: Option<&'static str>,
    ok: (u16, Option<&'static str>),
) -> Op {
    Op { method, path, summary, access, body, ok }
}

use Access::{Admin, Public, Session, User};

/// Every JSON API operation.
pub const OPS: &[Op] = &[
    op("get", "/healthz", "Liveness", Public, None, (200, Some("Status"))),
    op(
        "get",
        "/readyz",
        "Readiness of the database and Redis",
        Public,
        None,
        (200, Some("Status")),
    ),
    op(
        "get",
        "/api/setup",
        "Whether first-user setup is needed",
        Public,
        None,
        (200, Some("SetupNeeded")),
    ),
    op(
        "post",
        "/api/setup",
        "Create the first user as admin",
        Public,
        Some("Credentials"),
        (201, Some("UserEnvelope")),
    ),
    op(
        "post",
        "/api/auth/login",
        "Log in; sets the session cookie",
        Public,
        Some("Credentials"),
        (200, Some("LoginResult")),
    ),
    op("post", "/api/auth/logout", "Log out", Session, None, (204, None)),
    op("get", "/api/auth/me", "The caller and their session", Session, None, (200, Some("Me"))),
    op(
        "get",
        "/api/auth/csrf",
        "The session's CSRF token",
        Session,
        None,
        (200, Some("CsrfToken")),
    ),
    op(
        "post",
        "/api/auth/password",
        "Change the password; other sessions are revoked",
        Session,
        Some("PasswordChange"),
        (200, Some("CsrfToken")),
    ),
    op(
        "get",
        "/api/auth/sessions",
        "The caller's sessions",
        Session,
        None,
        (200, Some("SessionList")),
    ),
    op(
        "delete",
        "/api/auth/sessions",
        "Revoke all the caller's other sessions",
        Session,
        None,
        (200, Some("Revoked")),
    ),
    op(
        "delete",
        "/api/auth/sessions/{id}",
        "Revoke one of the caller's sessions",
        Session,
        None,
        (204, None),
    ),
    op(
        "post",
        "/api/auth/signup",
        "Open signup (when enabled)",
        Public,
        Some("Credentials"),
        (201, Some("UserEnvelope")),
    ),
    op("get", "/api/admin/users", "List users", Admin, None, (200, Some("UserList"))),
    op(
        "post",
        "/api/admin/users",
        "Create a user",
        Admin,
        Some("NewUser"),
        (201, Some("UserEnvelope")),
    ),
    op(
        "patch",
        "/api/admin/users/{id}",
        "Change role or disabled flag",
        Admin,
        Some("UserPatch"),
        (200, Some("UserEnvelope")),
    ),
    op("delete", "/api/admin/users/{id}", "Delete a user", Admin, None, (204, None)),
    op(
        "get",
        "/api/admin/users/{id}/sessions",
        "A user's sessions",
        Admin,
        None,
        (200, Some("SessionList")),
    ),
    op(
        "delete",
        "/api/admin/users/{id}/sessions",
        "Revoke a user's sessions",
        Admin,
        None,
        (200, Some("Revoked")),
    ),
    op(
        "get",
        "/api/admin/audit",
        "Query the audit log, newest first (each answered page is audited as audit_read)",
        Admin,
        None,
        (200, Some("AuditPage")),
    ),
    op(
        "get",
        "/api/admin/audit/verify",
        "Verify the audit log (audited as audit_read)",
        Admin,
        None,
        (200, Some("VerifyReport")),
    ),
    op("get", "/api/keys", "List API keys", User, None, (200, Some("KeyList"))),
    op(
        "post",
        "/api/keys",
        "Create an API key (the key is shown once)",
        User,
        Some("NewKey"),
        (201, Some("CreatedKey")),
    ),
    op("delete", "/api/keys/{id}", "Delete an API key", User, None, (204, None)),
    op(
        "put",
        "/api/vault/{provider}",
        "Store the caller's tokens for a provider",
        User,
        Some("VaultTokens"),
        (204, None),
    ),
    op(
        "get",
        "/api/vault/{provider}/token",
        "A valid access token, refreshed when needed",
        User,
        None,
        (200, Some("VaultToken")),
    ),
    op(
        "delete",
        "/api/vault/{provider}",
        "Forget the caller's tokens for a provider",
        User,
        None,
        (204, None),
    ),
    op(
        "post",
        "/api/pseudonymize",
        "Keyed pseudonyms for a purpose",
        Admin,
        Some("PseudonymizeRequest"),
        (200, Some("Pseudonyms")),
    ),
    op("get", "/api/openapi.json", "This document", Public, None, (200, None)),
];

fn obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

fn open_obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required})
}

fn schemas() -> Value {
    let s = |t: &str| json!({"type": t});
    let dt = json!({"type": "string", "format": "date-time"});
    let user = open_obj(
        json!({"id": s("string"), "email": s("string"), "role": {"enum": ["admin", "user"]}, "disabled": s("boolean"), "created_at": {"type": ["string", "null"], "format": "date-time"}}),
        &["id", "email", "role", "disabled"],
    );
    let session = open_obj(
        json!({"id": s("string"), "created_at": dt, "last_seen_at": dt, "ip": {"type": ["string", "null"]}, "user_agent": {"type": ["string", "null"]}, "current": s("boolean")}),
        &["id", "created_at", "last_seen_at"],
    );
    json!({
        "Error": obj(json!({"error": obj(json!({"code": s("string"), "message": s("string"), "request_id": s("string")}), &["code", "message", "request_id"])}), &["error"]),
        "Status": open_obj(json!({"status": s("string"), "failing": {"type": "array", "items": s("string")}}), &["status"]),
        "SetupNeeded": obj(json!({"needed": s("boolean")}), &["needed"]),
        "Credentials": obj(json!({"email": {"type": "string", "maxLength": 254}, "password": {"type": "string", "maxLength": 256}}), &["email", "password"]),
        "User": user,
        "UserEnvelope": obj(json!({"user": {"$ref": "#/components/schemas/User"}}), &["user"]),
        "UserList": obj(json!({"users": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}}), &["users"]),
        "LoginResult": obj(json!({"user": {"$ref": "#/components/schemas/User"}, "csrf_token": s("string")}), &["user", "csrf_token"]),
        "CsrfToken": obj(json!({"csrf_token": s("string")}), &["csrf_token"]),
        "Me": obj(json!({"user": {"$ref": "#/components/schemas/User"}, "session": open_obj(json!({"id": s("string"), "created_at": dt, "last_seen_at": dt, "idle_expires_at": dt, "absolute_expires_at": dt}), &["id", "created_at", "last_seen_at", "idle_expires_at", "absolute_expires_at"])}), &["user", "session"]),
        "PasswordChange": obj(json!({"current_password": {"type": "string", "maxLength": 1024}, "new_password": {"type": "string", "maxLength": 256}}), &["current_password", "new_password"]),
        "Session": session,
        "SessionList": obj(json!({"sessions": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}}}), &["sessions"]),
        "Revoked": obj(json!({"revoked": {"type": "integer", "minimum": 0}}), &["revoked"]),
        "NewUser": obj(json!({"email": {"type": "string", "maxLength": 254}, "password": {"type": "string", "maxLength": 256}, "role": {"enum": ["admin", "user"]}}), &["email", "password", "role"]),
        "UserPatch": obj(json!({"role": {"enum": ["admin", "user"]}, "disabled": s("boolean")}), &[]),
        "AuditPage": obj(json!({"events": {"type": "array", "items": s("object")}, "next_cursor": {"type": ["string", "null"]}}), &["events", "next_cursor"]),
        "VerifyReport": obj(json!({"ok": s("boolean"), "checked": {"type": "integer", "minimum": 0}, "first_failure": {"type": ["object", "null"]}}), &["ok", "checked", "first_failure"]),
        "Key": open_obj(json!({"id": s("string"), "name": s("string"), "prefix": s("string"), "created_by": s("string"), "created_at": dt, "expires_at": {"type": ["string", "null"]}, "last_used_at": {"type": ["string", "null"]}}), &["id", "name", "prefix"]),
        "KeyList": obj(json!({"keys": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}}), &["keys"]),
        "NewKey": obj(json!({"name": {"type": "string", "maxLength": 100}, "expires_in_days": {"type": ["integer", "null"], "minimum": 1}}), &["name"]),
        "CreatedKey": open_obj(json!({"id": s("string"), "name": s("string"), "key": s("string")}), &["id", "name", "key"]),
        "VaultTokens": obj(json!({"access_token": s("string"), "refresh_token": s("string"), "expires_at": dt, "token_endpoint": {"type": ["string", "null"]}}), &["access_token", "refresh_token", "expires_at"]),
        "VaultToken": obj(json!({"access_token": s("string"), "expires_at": dt}), &["access_token", "expires_at"]),
        "PseudonymizeRequest": obj(json!({"purpose": s("string"), "values": {"type": "array", "items": s("string")}}), &["purpose", "values"]),
        "Pseudonyms": obj(json!({"pseudonyms": {"type": "array", "items": s("string")}}), &["pseudonyms"]),
    })
}

fn params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "maxLength": 128}}))
        .collect()
}

fn security(access: Access) -> Value {
    match access {
        Access::Public => json!([]),
        Access::Session => json!([{"session": []}]),
        Access::User | Access::Admin => json!([{"session": []}, {"apiKey": []}]),
    }
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for o in OPS {
        let mut responses = Map::new();
        let ok = match o.ok.1 {
            Some(schema) => {
                json!({"description": "success", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
            }
            None => json!({"description": "success"}),
        };
        responses.insert(o.ok.0.to_string(), ok);
        responses.insert(
            "default".into(),
            json!({"description": "an error in the shared shape", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
        let mut operation = json!({
            "summary": o.summary,
            "operationId": format!("{}_{}", o.method, o.path.trim_start_matches('/').replace(['/', '{', '}', '.'], "_")),
            "security": security(o.access),
            "responses": responses,
        });
        let p = params(o.path);
        if !p.is_empty() {
            operation["parameters"] = Value::Array(p);
        }
        if let Some(body) = o.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}});
        }
        let entry = paths.entry(o.path.to_owned()).or_insert_with(|| json!({}));
        entry[o.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Rampart", "version": env!("CARGO_PKG_VERSION"), "description": "Security gateway API. Unsafe requests need an Origin (or Sec-Fetch-Site: same-origin); session-authenticated unsafe requests also need X-CSRF-Token."},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "rampart_session"},
                "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "rk_<id>_<secret>"},
            }
        }
    })
}

/// The route serving the document.
pub fn routes() -> axum::Router<crate::state::AppState> {
    axum::Router::new()
        .route("/api/openapi.json", axum::routing::get(|| async { axum::Json(document()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_document_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let want = serde_json::to_string_pretty(&document()).unwrap() + "\n";
        if std::env::var_os("RAMPART_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(have == want, "docs/openapi.json is stale: run `RAMPART_UPDATE_OPENAPI=1 cargo test -p rampart-server openapi`");
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            assert!(doc["components"]["schemas"].get(&name).is_some(), "dangling $ref {name}");
        }
    }
}
