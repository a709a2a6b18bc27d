//! `POST /introspect` (RFC 7662): the store's other services ask whether a token is live now.
//! A JWT checked against the JWKS alone stays valid until it expires; this answer reflects
//! sign-out, Force Sign In and password resets on the next call.
//!
//! - The caller authenticates with HTTP Basic: a service credential's name and secret
//!   (`latchkey service create NAME`). Anything else is 401 `invalid_client`, the same for an
//!   unknown name, a wrong secret and a revoked credential.
//! - The body is `application/x-www-form-urlencoded` with `token` (and an optional
//!   `token_type_hint`, which changes nothing: both kinds are tried).
//! - An inactive token is `{"active": false}` and nothing else: the answer never says why.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use domain::{
    auth::{Authenticated, Principal},
    services::Services,
    token::TokenKind,
};
use serde_json::{Value, json};

/// What the handler needs.
pub struct Introspection {
    pub auth: Arc<domain::auth::Authenticator>,
    pub services: Services,
}

fn refuse(status: StatusCode, error: &str) -> Response {
    let mut res = (status, axum::Json(json!({ "error": error }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"latchkey-introspect\""),
        );
    }
    res
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || encoded.len() > 512 {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (name, secret) = decoded.split_once(':')?;
    Some((name.to_owned(), secret.to_owned()))
}

pub async fn introspect(
    State(this): State<Arc<Introspection>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let this = &*this;
    let Some((name, secret)) = basic(&headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    let credential = match this.services.authenticate(&name, &secret).await {
        Ok(Some(credential)) => credential,
        Ok(None) => return refuse(StatusCode::UNAUTHORIZED, "invalid_client"),
        Err(e) => {
            tracing::error!(error = %e, "service credential look-up failed");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
        }
    };
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request");
    }
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let answer = match answer(this, &token, credential.admin_tokens).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::error!(error = %e, "introspection failed");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
        }
    };
    let active = answer["active"] == true;
    metrics::counter!("latchkey_introspections_total", "active" => if active { "true" } else { "false" })
        .increment(1);
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response()
}

/// What `token` is to a service; admin tokens only to a credential made with
/// `--admin-tokens` (to any other, an admin token is not active).
async fn answer(this: &Introspection, token: &str, admin_tokens: bool) -> domain::Result<Value> {
    let bearer = domain::kernel::bearer::BearerToken::new(token);
    Ok(match this.auth.authenticate(&bearer).await? {
        Some(Authenticated {
            token,
            principal: Principal::Customer(_),
        }) => claims(TokenKind::Customer, &token, None),
        Some(Authenticated {
            token,
            principal: Principal::Admin(admin),
        }) if admin_tokens => claims(TokenKind::Admin, &token, Some(admin.admin.role.as_str())),
        _ => json!({ "active": false }),
    })
}

fn claims(kind: TokenKind, v: &domain::token::VerifiedToken, role: Option<&str>) -> Value {
    let mut out = json!({
        "active": true,
        "token_type": "Bearer",
        "iss": "latchkey",
        "aud": kind.audience(),
        "sub": v.subject.to_string(),
        "jti": v.session_id.to_string(),
        "iat": v.issued_at,
        "exp": v.expires_at,
    });
    if let Some(role) = role {
        out["role"] = json!(role);
    }
    out
}

/// The service credentials of `config`'s database, for `latchkey service`.
pub async fn services(config: &crate::config::Config) -> anyhow::Result<Services> {
    let (db, _) = crate::prepare_database(config).await?;
    Ok(Services::new(
        persistence::Stores::new(db).services,
        Arc::new(domain::clock::SystemClock),
    ))
}
