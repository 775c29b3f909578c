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
pub mod profile;

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::{KeyRegistry, Scope};
use crate::ratelimit::RateSlot;
use crate::store::DynStore;
use error::{ApiError, REQUEST_ID};

/// Everything a handler may reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: DynStore,
    pub keys: KeyRegistry,
    pub accounts: crate::accounts::Accounts,
    pub contacts: crate::contacts::ContactSettings,
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
    router: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Routes {
    fn add(mut self, method: Method, path: &'static str, scope: Option<Scope>, handler: MethodRouter<AppState>) -> Self {
        self.table.push(RouteInfo { method, path, scope });
        self.router = self.router.route(path, handler);
        self
    }
}

fn routes() -> Routes {
    use account as a;
    use customer as c;
    use profile as p;
    use Scope::{CustomerRead as Read, CustomerWrite as Write};
    Routes { router: Router::new(), table: Vec::new() }
        .add(Method::POST, "/api/v1/customer/create", Some(Write), post(c::create))
        .add(Method::GET, "/api/v1/customer/detail", Some(Read), get(c::detail))
        .add(Method::POST, "/api/v1/customer/customer-match-customer", Some(Write), post(c::match_customer))
        .add(Method::GET, "/api/v1/customer/customer-match-list", Some(Read), get(c::match_list))
        .add(Method::POST, "/api/v1/customer/customer-match-remove", Some(Write), post(c::match_remove))
        .add(Method::POST, "/api/v1/customer/create-or-update", Some(Write), post(p::create_or_update))
        .add(Method::POST, "/api/v1/customer/credit-add", Some(Write), post(p::credit_add))
        .add(Method::POST, "/api/v1/customer/delete", Some(Write), post(p::delete))
        .add(Method::POST, "/api/v1/customer/import", Some(Scope::CustomerImport), post(import::import))
        .add(Method::POST, "/contact/v1/register-account", Some(Write), post(a::register))
        .add(Method::GET, "/contact/v1/confirm-account", Some(Write), get(a::confirm))
        .add(Method::POST, "/contact/v1/login", Some(Write), post(a::login))
        .add(Method::GET, "/contact/v1/get-account-info", Some(Read), get(a::account_info))
        .add(Method::POST, "/contact/v1/logout", Some(Write), post(a::logout))
        .add(Method::POST, "/api/v1/customer/register-account", Some(Write), post(a::register))
        .add(Method::GET, "/api/v1/customer/confirm-account", Some(Write), get(a::confirm))
        .add(Method::POST, "/api/v1/customer/login", Some(Write), post(a::login))
        .add(Method::GET, "/api/v1/customer/get-account-info", Some(Read), get(a::account_info))
        .add(Method::POST, "/api/v1/customer/logout", Some(Write), post(a::logout))
        .add(Method::GET, "/ping/v1", Some(Read), get(ops::ping))
        .add(Method::GET, "/healthz", None, get(ops::healthz))
        .add(Method::GET, "/readyz", None, get(ops::readyz))
        .add(Method::GET, "/openapi.yaml", None, get(ops::openapi))
        .add(Method::GET, "/docs", None, get(docs::page))
        .add(Method::GET, docs::BUNDLE_PATH, None, get(docs::bundle))
        .add(Method::POST, "/admin/v1/organisations", Some(Scope::Admin), post(admin::create_organisation))
        .add(Method::GET, "/admin/v1/organisations", Some(Scope::Admin), get(admin::list_organisations))
        .add(Method::POST, "/admin/v1/api-keys", Some(Scope::Admin), post(admin::create_key))
        .add(Method::GET, "/admin/v1/api-keys", Some(Scope::Admin), get(admin::list_keys))
        .add(Method::POST, "/admin/v1/api-keys/revoke", Some(Scope::Admin), post(admin::revoke_key))
        .add(Method::GET, "/admin/v1/audit", Some(Scope::Admin), get(admin::list_audit))
}

/// Every operation the server routes.
pub fn route_table() -> Vec<RouteInfo> {
    routes().table
}

/// The whole application, with no side effects.
pub fn app(state: AppState) -> Router {
    routes()
        .router
        .fallback(not_found)
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal("handler panicked".into()).into_response()))
        .layer(axum::middleware::from_fn_with_state(state.clone(), request_context))
        .with_state(state)
}

/// The application behind a CORS policy (`app` is the same with CORS off).
pub fn app_with(state: AppState, cors: &cors::CorsPolicy) -> Router {
    cors.apply(app(state))
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
/// identityIds), and turns the router's bare 405 into the error envelope.
async fn request_context(State(_): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let rate = RateSlot::default();
    req.extensions_mut().insert(rate.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED && !response.headers().contains_key("content-type") {
        let allow = response.headers().get("allow").cloned();
        response = ApiError::MethodNotAllowed(method.to_string()).into_response_with_id(&id);
        if let Some(allow) = allow {
            response.headers_mut().insert("allow", allow);
        }
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
    tracing::info!(
        request_id = %id,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}
