//! Cross-origin access for browser clients: which origins may call the API, and the
//! layer answering their preflights and marking the responses they may read.

use std::time::Duration;

use axum::extract::Request;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::Router;
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Who may call the API from a browser page of another origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsPolicy {
    /// No CORS headers at all: browsers keep other origins out.
    #[default]
    Off,
    /// These exact origins, with credentials allowed.
    Origins(Vec<HeaderValue>),
    /// Any origin (`*`), never with credentials: the Fetch standard forbids the pair.
    Any,
}

impl CorsPolicy {
    /// Reads `CORS_ALLOWED_ORIGINS`: `None` (unset) means `*` under `--demo`, else off;
    /// an empty list means off. `*` is refused unless `--demo` or `allow_any` says so,
    /// because it opens the API to every page on the web.
    pub fn parse(list: Option<&str>, demo: bool, allow_any: bool) -> Result<CorsPolicy, String> {
        let Some(list) = list else {
            return Ok(if demo { CorsPolicy::Any } else { CorsPolicy::Off });
        };
        let entries: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if entries.is_empty() {
            return Ok(CorsPolicy::Off);
        }
        if entries.contains(&"*") {
            if entries.len() > 1 {
                return Err("CORS_ALLOWED_ORIGINS: `*` cannot be combined with other origins".into());
            }
            if !(demo || allow_any) {
                return Err("CORS_ALLOWED_ORIGINS=* lets any web page call the API; it is allowed only with --demo \
                            or with CORS_ALLOW_ANY_ORIGIN=1. List exact origins instead, e.g. http://localhost:5173"
                    .into());
            }
            return Ok(CorsPolicy::Any);
        }
        entries.into_iter().map(exact_origin).collect::<Result<_, _>>().map(CorsPolicy::Origins)
    }

    fn allows(&self, origin: Option<&HeaderValue>) -> bool {
        match self {
            CorsPolicy::Off => false,
            CorsPolicy::Any => true,
            CorsPolicy::Origins(list) => origin.is_some_and(|o| list.contains(o)),
        }
    }

    fn layer(&self) -> Option<CorsLayer> {
        let base = CorsLayer::new()
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                AUTHORIZATION,
                CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("x-ratelimit-limit"),
                HeaderName::from_static("x-ratelimit-remaining"),
                HeaderName::from_static("x-ratelimit-reset"),
                RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600));
        match self {
            CorsPolicy::Off => None,
            // Keys, not cookies, authenticate; credentials are allowed only so that pages
            // using `credentials: 'include'` (common in storefront code) are not refused.
            CorsPolicy::Origins(list) => {
                Some(base.allow_origin(AllowOrigin::list(list.clone())).allow_credentials(true))
            }
            CorsPolicy::Any => Some(base.allow_origin(AllowOrigin::any())),
        }
    }

    /// `app` behind this policy. The layer wraps the whole application, so error
    /// envelopes (401, 404, 429) are readable by the page too. Requests from origins not
    /// allowed bypass it: tower-http would still send its other `Access-Control-*`
    /// headers to them, and answer their OPTIONS itself.
    pub fn apply(&self, app: Router) -> Router {
        let Some(layer) = self.layer() else {
            return app;
        };
        let with_cors = app.clone().layer(layer);
        let policy = self.clone();
        Router::new().fallback_service(tower::service_fn(move |req: Request| {
            let service = if policy.allows(req.headers().get(ORIGIN)) { with_cors.clone() } else { app.clone() };
            service.oneshot(req)
        }))
    }
}

/// An origin as browsers send it in `Origin`, compared byte for byte: a trailing slash,
/// a path or an upper-case host would silently never match, so they are refused here.
fn exact_origin(entry: &str) -> Result<HeaderValue, String> {
    let parsed =
        url::Url::parse(entry).map_err(|e| format!("CORS_ALLOWED_ORIGINS: {entry:?} is not an origin ({e})"))?;
    let serialised = parsed.origin().ascii_serialization();
    if !matches!(parsed.scheme(), "http" | "https") || serialised != entry {
        return Err(format!(
            "CORS_ALLOWED_ORIGINS: {entry:?} is not an exact origin; write scheme://host[:port] with no path, \
             e.g. {}",
            if serialised == "null" { "http://localhost:5173".to_owned() } else { serialised }
        ));
    }
    HeaderValue::from_str(entry).map_err(|e| format!("CORS_ALLOWED_ORIGINS: {entry:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> CorsPolicy {
        CorsPolicy::Origins(list.iter().map(|o| HeaderValue::from_str(o).unwrap()).collect())
    }

    #[test]
    fn unset_is_off_except_under_demo() {
        assert_eq!(CorsPolicy::parse(None, false, false), Ok(CorsPolicy::Off));
        assert_eq!(CorsPolicy::parse(None, true, false), Ok(CorsPolicy::Any));
        assert_eq!(CorsPolicy::parse(Some(" , "), true, false), Ok(CorsPolicy::Off), "set but empty turns it off");
    }

    #[test]
    fn exact_origins_are_listed() {
        let got = CorsPolicy::parse(Some("http://localhost:5173, https://shop.example.com"), false, false);
        assert_eq!(got, Ok(origins(&["http://localhost:5173", "https://shop.example.com"])));
    }

    #[test]
    fn inexact_origins_are_refused_with_the_fix() {
        for (entry, hint) in [
            ("http://localhost:5173/", "http://localhost:5173"),
            ("https://Shop.example.com", "https://shop.example.com"),
            ("https://shop.example.com:443", "https://shop.example.com"),
            ("https://shop.example.com/app", "https://shop.example.com"),
            ("localhost:5173", "http://localhost:5173"),
            ("file:///tmp/x.html", "http://localhost:5173"),
        ] {
            let err = CorsPolicy::parse(Some(entry), false, false).expect_err(entry);
            assert!(err.contains(hint), "{entry}: {err}");
        }
    }

    #[test]
    fn wildcard_needs_demo_or_explicit_consent() {
        let err = CorsPolicy::parse(Some("*"), false, false).unwrap_err();
        assert!(err.contains("CORS_ALLOW_ANY_ORIGIN=1"), "{err}");
        assert_eq!(CorsPolicy::parse(Some("*"), true, false), Ok(CorsPolicy::Any));
        assert_eq!(CorsPolicy::parse(Some("*"), false, true), Ok(CorsPolicy::Any));
        assert!(CorsPolicy::parse(Some("*, http://localhost:5173"), true, true).is_err());
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let policy = origins(&["http://localhost:5173"]);
        assert!(policy.allows(Some(&HeaderValue::from_static("http://localhost:5173"))));
        assert!(!policy.allows(Some(&HeaderValue::from_static("http://localhost:5174"))));
        assert!(!policy.allows(None));
        assert!(CorsPolicy::Any.allows(None));
        assert!(!CorsPolicy::Off.allows(Some(&HeaderValue::from_static("http://localhost:5173"))));
    }
}
