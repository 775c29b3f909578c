//! The HTTP surface: the route table, shared state and the middleware every request
//! passes (request id, access log, panic guard, error envelopes for 404/405).

pub mod account;
pub mod admin;
pub mod cors;
pub mod customer;
pub mod docs;
pub mod error;
pub mod extract;
pub mod import;
pub mod ops;
pub mod pagination;
pub mod profile;
pub mod serve;
pub mod wire;

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutBody, TimeoutLayer};

use crate::auth::{KeyRegistry, Scope};
use crate::ratelimit::RateSlot;
use crate::store::DynStore;
use error::{ApiError, REQUEST_ID};
use extract::Endpoint;

/// Everything a handler may reach. Extractors clone it for every request, so it is one
/// shared pointer.
#[derive(Clone)]
pub struct AppState(std::sync::Arc<Shared>);

/// What `AppState` shares.
pub struct Shared {
    pub store: DynStore,
    pub keys: KeyRegistry,
    pub accounts: crate::accounts::Accounts,
    pub contacts: crate::contacts::ContactSettings,
    /// Whether `/metrics` answers here; not when it has an address of its own.
    pub serve_metrics: bool,
    /// Which addresses webhook endpoints may have.
    pub webhook_reach: crate::webhooks::Reach,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(std::sync::Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// One routed operation: method, path, and the scope its key needs (None: no key).
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub scope: Option<Scope>,
}

/// The router and the list of operations it serves, kept together so the OpenAPI
/// document and the scope checks can be tested against what is really routed.
struct Routes {
    /// Operations answered within the request timeout.
    router: Router<AppState>,
    /// Operations that stream their body and their answer, bounded by the body's idle
    /// timeout alone.
    streaming: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Routes {
    /// An operation whose key needs the scope its input `E` declares.
    fn keyed<E: Endpoint>(self, method: Method, path: &'static str, handler: MethodRouter<AppState>) -> Self {
        self.add(method, path, Some(E::SCOPE), handler)
    }

    /// An operation that takes no key.
    fn open(self, method: Method, path: &'static str, handler: MethodRouter<AppState>) -> Self {
        self.add(method, path, None, handler)
    }

    /// As `keyed`, for an operation that streams (see `Routes::streaming`).
    fn keyed_streaming<E: Endpoint>(
        mut self,
        method: Method,
        path: &'static str,
        handler: MethodRouter<AppState>,
    ) -> Self {
        self.table.push(RouteInfo { method, path, scope: Some(E::SCOPE) });
        self.streaming = self.streaming.route(path, handler);
        self
    }

    fn add(
        mut self,
        method: Method,
        path: &'static str,
        scope: Option<Scope>,
        handler: MethodRouter<AppState>,
    ) -> Self {
        self.table.push(RouteInfo { method, path, scope });
        self.router = self.router.route(path, handler);
        self
    }
}

fn routes() -> Routes {
    use crate::contacts::ContactBody;
    use account as a;
    use admin as ad;
    use customer as c;
    use profile as p;
    use Method as M;
    // The storefront account endpoints answer under BizKitHub's two prefixes.
    Routes { router: Router::new(), streaming: Router::new(), table: Vec::new() }
        .keyed::<c::CreateBody>(M::POST, "/api/v1/customer/create", post(c::create))
        .keyed::<c::DetailQuery>(M::GET, "/api/v1/customer/detail", get(c::detail))
        .keyed::<c::MatchBody>(M::POST, "/api/v1/customer/customer-match-customer", post(c::match_customer))
        .keyed::<c::ListQuery>(M::GET, "/api/v1/customer/customer-match-list", get(c::match_list))
        .keyed::<c::RemoveBody>(M::POST, "/api/v1/customer/customer-match-remove", post(c::match_remove))
        .keyed::<c::SearchQuery>(M::GET, "/api/v1/customer/list", get(c::list))
        .keyed::<ContactBody>(M::POST, "/api/v1/customer/create-or-update", post(p::create_or_update))
        .keyed::<p::CreditBody>(M::POST, "/api/v1/customer/credit-add", post(p::credit_add))
        .keyed::<p::DeleteBody>(M::POST, "/api/v1/customer/delete", post(p::delete))
        .keyed::<p::MergeBody>(M::POST, "/api/v1/customer/merge", post(p::merge))
        .keyed_streaming::<import::ImportItems>(M::POST, "/api/v1/customer/import", post(import::import))
        .keyed::<a::RegisterBody>(M::POST, "/contact/v1/register-account", post(a::register))
        .keyed::<a::ConfirmQuery>(M::GET, "/contact/v1/confirm-account", get(a::confirm))
        .keyed::<a::LoginBody>(M::POST, "/contact/v1/login", post(a::login))
        .keyed::<a::AccountInfoQuery>(M::GET, "/contact/v1/get-account-info", get(a::account_info))
        .keyed::<a::LogoutBody>(M::POST, "/contact/v1/logout", post(a::logout))
        .keyed::<a::RegisterBody>(M::POST, "/api/v1/customer/register-account", post(a::register))
        .keyed::<a::ConfirmQuery>(M::GET, "/api/v1/customer/confirm-account", get(a::confirm))
        .keyed::<a::LoginBody>(M::POST, "/api/v1/customer/login", post(a::login))
        .keyed::<a::AccountInfoQuery>(M::GET, "/api/v1/customer/get-account-info", get(a::account_info))
        .keyed::<a::LogoutBody>(M::POST, "/api/v1/customer/logout", post(a::logout))
        .keyed::<ops::PingQuery>(M::GET, "/ping/v1", get(ops::ping))
        .open(M::GET, "/healthz", get(ops::healthz))
        .open(M::GET, "/readyz", get(ops::readyz))
        .open(M::GET, "/metrics", get(ops::metrics))
        .open(M::GET, "/openapi.yaml", get(ops::openapi))
        .open(M::GET, "/docs", get(docs::page))
        .open(M::GET, docs::BUNDLE_PATH, get(docs::bundle))
        .keyed::<ad::CreateOrganisationBody>(M::POST, "/admin/v1/organisations", post(ad::create_organisation))
        .keyed::<ad::ListOrganisationsQuery>(M::GET, "/admin/v1/organisations", get(ad::list_organisations))
        .keyed::<ad::CreateKeyBody>(M::POST, "/admin/v1/api-keys", post(ad::create_key))
        .keyed::<ad::ListKeysQuery>(M::GET, "/admin/v1/api-keys", get(ad::list_keys))
        .keyed::<ad::RevokeKeyBody>(M::POST, "/admin/v1/api-keys/revoke", post(ad::revoke_key))
        .keyed::<ad::AuditQuery>(M::GET, "/admin/v1/audit", get(ad::list_audit))
        .keyed::<ad::CreateWebhookBody>(M::POST, "/admin/v1/webhooks", post(ad::create_webhook))
        .keyed::<ad::ListWebhooksQuery>(M::GET, "/admin/v1/webhooks", get(ad::list_webhooks))
        .keyed::<ad::DeleteWebhookBody>(M::POST, "/admin/v1/webhooks/delete", post(ad::delete_webhook))
        .keyed::<ad::WebhookDeliveriesQuery>(M::GET, "/admin/v1/webhooks/deliveries", get(ad::webhook_deliveries))
        .keyed::<ad::ReplayBody>(M::POST, "/admin/v1/webhooks/replay", post(ad::replay_webhook_event))
}

/// Every operation the server routes.
pub fn route_table() -> Vec<RouteInfo> {
    routes().table
}

/// How long a request may take; see the README's settings table.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A request that does not stream is answered within this time (else 408).
    pub request_timeout: Duration,
    /// A request body may pause this long between two chunks (else 408).
    pub body_idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { request_timeout: Duration::from_secs(30), body_idle_timeout: Duration::from_secs(30) }
    }
}

/// The whole application with the default limits and CORS off, with no side effects.
pub fn app(state: AppState) -> Router {
    app_configured(state, &cors::CorsPolicy::Off, &HttpLimits::default())
}

/// The application behind a CORS policy, with the default limits.
pub fn app_with(state: AppState, cors: &cors::CorsPolicy) -> Router {
    app_configured(state, cors, &HttpLimits::default())
}

/// The application behind a CORS policy and within `limits`.
pub fn app_configured(state: AppState, cors: &cors::CorsPolicy, limits: &HttpLimits) -> Router {
    let Routes { router, streaming, .. } = routes();
    let body_idle = ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.body_idle_timeout))
        .map_request(|req: axum::http::Request<TimeoutBody<axum::body::Body>>| req.map(axum::body::Body::new));
    let app = router
        .route_layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
        .merge(streaming)
        .fallback(not_found)
        .layer(body_idle)
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal("handler panicked".into()).into_response()))
        .layer(axum::middleware::from_fn_with_state(state.clone(), request_context))
        .with_state(state);
    cors.apply(app)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::RouteNotFound(req.uri().path().to_owned())
}

/// A client's request id is echoed when it is short and plain; otherwise one is made.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()))
}

/// Gives each request its id, logs it without its query string (which may hold keys and
/// identityIds), and turns the bare 405 of the router and 408 of the request timeout into
/// the error envelope.
async fn request_context(State(_): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let rate = RateSlot::default();
    req.extensions_mut().insert(rate.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req.headers().get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    let started = Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    let bare = !response.headers().contains_key("content-type");
    if bare && response.status() == StatusCode::REQUEST_TIMEOUT {
        response = ApiError::RequestTimeout.into_response_with_id(&id);
    }
    if bare && response.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = response.headers().get("allow").cloned();
        response = ApiError::MethodNotAllowed(method.to_string()).into_response_with_id(&id);
        if let Some(allow) = allow {
            response.headers_mut().insert("allow", allow);
        }
    }
    // Refused before its body was read, the connection cannot carry another request:
    // saying so keeps the client from sending its next one down it.
    if has_body && matches!(response.status().as_u16(), 401 | 403 | 408 | 413 | 415 | 429) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if let Some(info) = rate.get() {
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", HeaderValue::from(info.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(info.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(info.reset));
    }
    let elapsed = started.elapsed();
    crate::telemetry::http_request(&method, route, response.status().as_u16(), elapsed);
    tracing::info!(
        request_id = %id,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        micros = elapsed.as_micros() as u64,
        "request"
    );
    response
}
