//! The HTTP edge: routes, hardening of GraphQL over HTTP, and the tower layers.
//!
//! `POST /graphql` takes one JSON operation (`application/json` only: other content types are
//! 415, which also stops cross-site "simple request" CSRF; JSON arrays are 400, so batching
//! cannot multiply attempts). `GET /graphql` serves GraphiQL, or runs a query (never a
//! mutation: 405). Bodies over the limit are 413 before any parsing.
//!
//! Answers follow the GraphQL-over-HTTP specification: a client that accepts
//! `application/graphql-response+json` (Apollo Client 4, urql and graphql-http ask for it
//! first) gets that media type, and a request that never executed (a body that is not a
//! GraphQL request, a document that does not parse or validate, variables that do not coerce)
//! is a 400 without a `data` entry. A client that accepts only `application/json` (or sends no
//! `Accept`) gets `application/json` and, as before, 200 for GraphQL errors. An `Accept` that
//! allows neither is 406.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_graphql::{
    Request as GqlRequest, Response as GqlResponse, ServerError,
    parser::types::{DocumentOperations, OperationType},
};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, RawQuery, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use domain::customer::ClientInfo;
use graphql::{LatchkeySchema, RequestContext, codes};
use metrics_exporter_prometheus::PrometheusHandle;
use persistence::Connection;
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use tracing::{Instrument, Span};

use crate::client_ip::TrustedProxies;
use domain::kernel::bearer::BearerToken;

#[derive(Clone)]
pub struct AppState {
    pub schema: LatchkeySchema,
    pub db: Connection,
    pub proxies: Arc<TrustedProxies>,
    pub graphiql: bool,
    pub metrics: PrometheusHandle,
    /// SQL statements run by this server, exported as `latchkey_db_statements_total`.
    pub statements: Arc<std::sync::atomic::AtomicU64>,
    /// GraphQL operations running detached from their requests (see [`execute`]): bounded,
    /// and waited for at shutdown.
    pub operations: Operations,
    /// Signs and verifies tokens; its ring's public keys are the JWKS.
    pub tokens: domain::token::TokenCodec,
    /// `POST /introspect`.
    pub introspection: Arc<crate::introspect::Introspection>,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age_seconds: u64,
    /// `/.well-known/ssf-configuration`: the security-event transmitter's metadata.
    pub ssf_configuration: Arc<serde_json::Value>,
    /// The signed-in check's cache: a revoking operation answers once every replica's cache
    /// has applied its change.
    pub session_cache: persistence::Coherence,
}

/// The operations in flight, each in a task of its own so a client hanging up cannot cut one
/// off. Bounded: a client that sends and hangs up at once no longer holds a socket for its
/// work, so the number of detached operations is capped; past the cap a request is answered
/// 503 `RATE_LIMITED` and runs nothing. `serve` waits for them before closing the database.
/// `/introspect` needs only the introspection half of the state.
impl axum::extract::FromRef<AppState> for Arc<crate::introspect::Introspection> {
    fn from_ref(state: &AppState) -> Self {
        state.introspection.clone()
    }
}

#[derive(Clone)]
pub struct Operations {
    pub tracker: tokio_util::task::TaskTracker,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Operations {
    /// At most `max` at once (`LATCHKEY_MAX_OPERATIONS`; by default far above what the
    /// database pool and the hashing queue can serve at once, so only a flood of abandoned
    /// requests reaches it).
    pub fn new(max: usize) -> Self {
        Self {
            tracker: tokio_util::task::TaskTracker::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(max.max(1))),
        }
    }
}

pub struct HttpOptions {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub cors_origins: Vec<String>,
    /// The store's name in page titles and headers (the mail sender's display name).
    pub store_name: String,
}

pub fn router(state: AppState, options: &HttpOptions) -> anyhow::Result<Router> {
    let request_id = HeaderName::from_static("x-request-id");
    let origins = options
        .cors_origins
        .iter()
        .map(|o| {
            HeaderValue::from_str(o)
                .map_err(|_| anyhow::anyhow!("LATCHKEY_CORS_ORIGINS: {o:?} is not a valid origin"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600));
    // One ServiceBuilder applied once: every separate `Router::layer` call wraps each route in
    // another boxed service, and each level clones everything below it per request (measured:
    // a third of the signed-in `customer` query's throughput, BENCHMARKS.md). Outermost first;
    // three levels instead of eleven.
    let outer = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), SequentialRequestId::new()))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(
            // Method and path only: query strings can carry reset tokens.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(CatchPanicLayer::custom(|_| {
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL_SERVER_ERROR,
                "internal server error",
            )
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            options.request_timeout,
        ));
    // `from_fn` needs axum's own body types on both sides, so it sits between two stacks.
    let inner = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Without configured origins there is nothing to allow: no layer, no per-request cost.
        .option_layer((!options.cors_origins.is_empty()).then_some(cors))
        .map_response(IntoResponse::into_response)
        .layer(RequestBodyLimitLayer::new(options.max_body_bytes))
        .layer(DefaultBodyLimit::max(options.max_body_bytes));
    Ok(Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/.well-known/ssf-configuration",
            get(|State(state): State<AppState>| async move {
                Json(state.ssf_configuration.as_ref().clone())
            }),
        )
        .route(
            "/introspect",
            axum::routing::post(crate::introspect::introspect),
        )
        .with_state(state)
        .merge(crate::pages::routes(crate::pages::Pages::new(
            options.store_name.clone(),
        )?))
        .layer(inner)
        .layer(HttpMetricsLayer::default())
        .layer(outer))
}

/// Request ids without a system call per request: a random per-process prefix and a counter
/// (unique across replicas with overwhelming probability; they identify, they do not protect).
#[derive(Clone)]
struct SequentialRequestId {
    prefix: u64,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl SequentialRequestId {
    fn new() -> Self {
        let prefix = getrandom::u64().unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Self {
            prefix,
            next: Arc::default(),
        }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:016x}{n:016x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// The public signing keys (RFC 7517), from memory: a cache in front may keep them for the
/// max-age, which a rotation waits out before its key signs.
async fn jwks(State(state): State<AppState>) -> Response {
    let ring = state.tokens.ring();
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json".to_owned()),
            (
                header::CACHE_CONTROL,
                format!("public, max-age={}", state.jwks_max_age_seconds),
            ),
        ],
        ring.jwks().to_owned(),
    )
        .into_response()
}

/// The body of an error the HTTP edge answers itself (nothing executed).
fn error_body(code: &str, message: &str) -> serde_json::Value {
    json!({"errors": [{"message": message, "extensions": {"code": code}}]})
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(error_body(code, message))).into_response()
}

/// The media type of a GraphQL answer, from the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Json,
    GraphqlResponse,
}

impl Media {
    const GRAPHQL_RESPONSE: &'static str = "application/graphql-response+json";

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
        }
    }

    /// `None`: the client accepts neither (406).
    fn negotiate(headers: &HeaderMap) -> Option<Self> {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Some(Self::Json);
        };
        let mut json = None;
        let mut response = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let mime = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let slot = match mime.as_str() {
                Self::GRAPHQL_RESPONSE => &mut response,
                "application/json" | "application/*" | "*/*" => &mut json,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
        }
        match (response.filter(|q| *q > 0.0), json.filter(|q| *q > 0.0)) {
            (Some(r), Some(j)) if j > r => Some(Self::Json),
            (Some(_), _) => Some(Self::GraphqlResponse),
            (None, Some(_)) => Some(Self::Json),
            (None, None) => None,
        }
    }

    /// A request that never executed: 400, `errors` only.
    fn request_error(self, code: &str, message: &str) -> Response {
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, self.content_type())],
            error_body(code, message).to_string(),
        )
            .into_response()
    }
}

fn not_acceptable() -> Response {
    error_response(
        StatusCode::NOT_ACCEPTABLE,
        codes::BAD_USER_INPUT,
        "accept application/graphql-response+json or application/json",
    )
}

/// A GraphQL request body, read strictly: `query` must be a string, `variables` and
/// `extensions` maps, `operationName` a string (or absent).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpRequest {
    query: String,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    #[allow(dead_code)]
    extensions: Option<serde_json::Map<String, serde_json::Value>>,
}

impl From<HttpRequest> for GqlRequest {
    fn from(r: HttpRequest) -> Self {
        let mut request = GqlRequest::new(r.query);
        if let Some(name) = r.operation_name {
            request = request.operation_name(name);
        }
        if let Some(variables) = r.variables {
            request = request.variables(async_graphql::Variables::from_json(
                serde_json::Value::Object(variables),
            ));
        }
        request
    }
}

async fn graphql_post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || mime.eq_ignore_ascii_case("application/graphql-response+json")
        });
    if !json_body {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::BAD_USER_INPUT,
            "send GraphQL requests as Content-Type: application/json",
        );
    }
    let Some(media) = Media::negotiate(&headers) else {
        return not_acceptable();
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return media.request_error(
            codes::BAD_USER_INPUT,
            "batched requests are not supported: send one operation per request",
        );
    }
    let request: HttpRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            // Position only: serde's message could echo part of the body (a password).
            let message = format!(
                "the body is not a GraphQL request in JSON: {{\"query\": string, \"variables\"?: \
                 object, \"operationName\"?: string}} (line {}, column {})",
                e.line(),
                e.column()
            );
            return media.request_error(codes::BAD_USER_INPUT, &message);
        }
    };
    execute(&state, request.into(), peer, &headers, media).await
}

async fn graphql_get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let media = Media::negotiate(&headers);
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        if state.graphiql {
            return Html(
                async_graphql::http::GraphiQLSource::build()
                    .endpoint("/graphql")
                    .title("Latchkey GraphiQL")
                    .finish(),
            )
            .into_response();
        }
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::BAD_USER_INPUT,
            "POST GraphQL requests to this endpoint",
        );
    };
    let Some(media) = media else {
        return not_acceptable();
    };
    let request = match async_graphql::http::parse_query_string(&query) {
        Ok(r) => r,
        Err(_) => {
            return media.request_error(
                codes::BAD_USER_INPUT,
                "the query string is not a GraphQL request",
            );
        }
    };
    if is_mutation(&request) {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::BAD_USER_INPUT,
            "mutations must be sent with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, request, peer, &headers, media).await
}

/// Whether the operation a GET would run is a mutation (or a subscription). Unparseable
/// documents are left to execution, which reports the syntax error without running anything.
fn is_mutation(request: &GqlRequest) -> bool {
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let writes = |ty: OperationType| ty != OperationType::Query;
    match &doc.operations {
        DocumentOperations::Single(op) => writes(op.node.ty),
        DocumentOperations::Multiple(ops) => match &request.operation_name {
            Some(name) => ops.get(name.as_str()).is_some_and(|op| writes(op.node.ty)),
            None => ops.values().any(|op| writes(op.node.ty)),
        },
    }
}

async fn execute(
    state: &AppState,
    request: GqlRequest,
    peer: SocketAddr,
    headers: &HeaderMap,
    media: Media,
) -> Response {
    let ip = state.proxies.client_ip(peer.ip(), headers);
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let context = RequestContext::new(bearer_token(headers), ClientInfo::new(Some(ip), user_agent));
    // The operation runs in a task of its own, to completion: if the client hangs up (hyper
    // then drops this handler) or the request timeout fires, the caller loses the answer but a
    // use case is never cut off between its steps. (Each transaction is also run to its end by
    // the store, see `persistence::unit`.)
    let Ok(slot) = state.operations.slots.clone().try_acquire_owned() else {
        metrics::counter!("latchkey_operations_rejected_total").increment(1);
        let mut response = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::RATE_LIMITED,
            "the server is busy; try again in a moment",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let schema = state.schema.clone();
    let cache = state.session_cache.clone();
    let operation = state.operations.tracker.spawn(
        async move {
            let (response, committed) =
                persistence::tracking_commits(schema.execute(request.data(context))).await;
            // A change the signed-in check reads answers only once it counts: on every
            // replica for a revocation (bounded by the cache's lease), here for any other.
            if committed.revoked {
                cache.confirm().await;
            } else if committed.wrote {
                cache.wait_local().await;
            }
            let response = with_codes(response);
            drop(slot);
            response
        }
        .instrument(Span::current()),
    );
    let response = match operation.await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "a GraphQL operation panicked");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL_SERVER_ERROR,
                "internal server error",
            );
        }
    };
    // Nothing ran: the document did not parse or validate, or its variables did not coerce
    // (every such error is the request's, with no path; an executed operation that failed at
    // its root has `data: null` and errors with paths).
    let never_executed = media == Media::GraphqlResponse
        && response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let (status, body) = if never_executed {
        let mut body = json!({ "errors": response.errors });
        if !response.extensions.is_empty() {
            body["extensions"] = json!(response.extensions);
        }
        (StatusCode::BAD_REQUEST, body.to_string().into_bytes())
    } else {
        // Serialized as is (not through a map), so `data` comes before `errors`.
        let body = serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec());
        (StatusCode::OK, body)
    };
    (
        status,
        [
            (header::CONTENT_TYPE, media.content_type()),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn bearer_token(headers: &HeaderMap) -> Option<BearerToken> {
    BearerToken::from_header(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// Every error leaves with a code: resolver errors carry theirs; parse and validation errors
/// (unknown fields, depth, complexity, wrong argument types) are the client's to fix.
fn with_codes(mut response: GqlResponse) -> GqlResponse {
    for error in &mut response.errors {
        let code = error
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(|v| match v {
                async_graphql::Value::String(s) => Some(s.clone()),
                _ => None,
            });
        let code = match code {
            Some(code) => code,
            None => {
                set_code(error, codes::BAD_USER_INPUT);
                codes::BAD_USER_INPUT.to_owned()
            }
        };
        metrics::counter!("latchkey_graphql_errors_total", "code" => code).increment(1);
    }
    response
}

fn set_code(error: &mut ServerError, code: &str) {
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
}

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => Json(json!({"status": "ready"})).into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "database unreachable"})),
        )
            .into_response(),
    }
}

/// The metrics listener's routes (`LATCHKEY_METRICS_LISTEN`): `/metrics` only. Never on the
/// API port.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    metrics::counter!("latchkey_db_statements_total")
        .absolute(state.statements.load(std::sync::atomic::Ordering::Relaxed));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Counts requests and their durations by method, route pattern and status
/// (`latchkey_http_requests_total`, `latchkey_http_request_duration_seconds`).
///
/// A plain tower layer rather than `middleware::from_fn`, which boxes and clones the whole inner
/// stack per request; and the counters and histograms are looked up once per (route, method,
/// status) and kept, instead of building labelled keys (five strings) on every request.
#[derive(Clone, Default)]
struct HttpMetricsLayer {
    handles: Arc<std::sync::RwLock<HttpHandles>>,
}

type HttpHandles =
    std::collections::HashMap<(String, Method, u16), (metrics::Counter, metrics::Histogram)>;

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics {
            inner,
            handles: self.handles.clone(),
        }
    }
}

#[derive(Clone)]
struct HttpMetrics<S> {
    inner: S,
    handles: Arc<std::sync::RwLock<HttpHandles>>,
}

impl<S> tower::Service<Request> for HttpMetrics<S>
where
    S: tower::Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, S::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let path = req
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "unmatched".to_owned());
        let method = req.method().clone();
        let started = std::time::Instant::now();
        let handles = self.handles.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            let status = response.status().as_u16();
            let key = (path, method, status);
            let cached = handles.read().ok().and_then(|h| h.get(&key).cloned());
            let (requests, duration) = match cached {
                Some(found) => found,
                None => {
                    let (path, method, status) = &key;
                    let made = (
                        metrics::counter!("latchkey_http_requests_total", "method" => method.to_string(), "path" => path.clone(), "status" => status.to_string()),
                        metrics::histogram!("latchkey_http_request_duration_seconds", "method" => method.to_string(), "path" => path.clone()),
                    );
                    if let Ok(mut h) = handles.write() {
                        // Unmatched paths share one label, so the map stays as small as the
                        // route table times methods times statuses.
                        h.insert(key, made.clone());
                    }
                    made
                }
            };
            requests.increment(1);
            duration.record(started.elapsed());
            Ok(response)
        })
    }
}
