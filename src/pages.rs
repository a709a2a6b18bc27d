//! The server's own minimal storefront page: "New Password" at `/account/reset-password`.
//! Static files compiled into the binary; a strict Content-Security-Policy (no inline script,
//! nothing from other origins) and `Referrer-Policy: no-referrer`, so the token in the link
//! never leaks through a Referer header.

use axum::{
    Router,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/account/reset-password",
            get(|| async {
                page(
                    "text/html; charset=utf-8",
                    include_str!("../assets/reset-password.html"),
                )
            }),
        )
        .route(
            "/account/reset-password.js",
            get(|| async {
                page(
                    "text/javascript; charset=utf-8",
                    include_str!("../assets/reset-password.js"),
                )
            }),
        )
        .route(
            "/account/account.css",
            get(|| async {
                page(
                    "text/css; charset=utf-8",
                    include_str!("../assets/account.css"),
                )
            }),
        )
}
