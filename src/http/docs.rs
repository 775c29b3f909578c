//! The browsable API documentation: `GET /docs`, a page rendering `/openapi.yaml` with
//! the Redoc bundle vendored in `assets/docs/` and served from the binary, so it works
//! with no internet access.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::IntoResponse;

/// The page; it loads nothing but the bundle below and the spec.
const PAGE: &str = include_str!("../../assets/docs/index.html");

/// Redoc's standalone bundle, byte for byte as published (see `assets/docs/README.md`).
const BUNDLE: &[u8] = include_bytes!("../../assets/docs/redoc.standalone.js");

/// Where the bundle is served. The version is in the path so a year-long immutable
/// cache is safe: an upgrade is a new URL.
pub const BUNDLE_PATH: &str = "/docs/redoc-2.5.4.standalone.js";

/// Only this server may be reached from the page: the bundle's one remote reference (a
/// logo in its sidebar footer) is then refused by the browser instead of leaking the
/// visit to a third party, or hanging offline. Redoc needs inline styles (styled
/// components), `eval` (its schema compiler) and a blob worker (search).
const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'self'";

pub async fn page() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, CSP),
            // The page is tiny and names the bundle's versioned URL: revalidate it so an
            // upgraded server is picked up at once.
            (CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

pub async fn bundle() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/javascript; charset=utf-8"), (CACHE_CONTROL, "public, max-age=31536000, immutable")], BUNDLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_the_served_bundle_and_nothing_remote() {
        assert!(PAGE.contains(&format!("src=\"{BUNDLE_PATH}\"")), "index.html must load {BUNDLE_PATH}");
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"), "the page must not reference another host");
    }

    #[test]
    fn bundle_is_the_vendored_version() {
        let head = std::str::from_utf8(&BUNDLE[..BUNDLE.len().min(4096)]).unwrap_or("");
        assert!(head.contains("redoc.standalone.js.LICENSE.txt"), "not Redoc's standalone bundle");
        let version = BUNDLE_PATH.trim_start_matches("/docs/redoc-").trim_end_matches(".standalone.js");
        let needle = format!("Version: \"{version}\"");
        let notices = include_str!("../../assets/docs/redoc.standalone.js.LICENSE.txt");
        assert!(notices.contains(&needle), "served path says {version}, the vendored notices do not");
    }
}
