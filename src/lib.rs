//! bizkit-mirror: BizKitHub's customer API, served from SQLite or PostgreSQL.

/// Storefront accounts: settings, password hashing, confirmation mail, sign-up and sign-in rules.
pub mod accounts;
/// Administration (organisations, keys, audit) shared by the admin endpoints and the CLI.
pub mod admin;
/// The key pipeline: format, registry (cached), expiry, revocation, rate limit, scope.
pub mod auth;
/// Every setting, from flags and environment.
pub mod config;
/// Profiles written: create-or-update (and its item format), credit, erasure.
pub mod contacts;
/// BizKitHub's customer endpoints as rules: create, detail, relations and their pages.
pub mod customers;
/// Input fields read into validated values, and every field's limits, in one place.
pub mod fields;
/// Routes, handlers, extractors, the error envelope and middleware.
pub mod http;
/// Bulk import: streamed items validated and written in batches, for the endpoint and the CLI.
pub mod import;
/// Sending the mail outbox over SMTP when configured.
pub mod mail;
/// Pure normalisation of every input (e-mail, IP, phone, text, slugs, passwords, tokens).
pub mod normalize;
/// Per-key rate limits (GCRA with a burst) and the state behind the X-RateLimit-* headers.
pub mod ratelimit;
/// The demo data set used by `--demo`.
pub mod seed;
/// Start-up: logging, migrations, first-run keys, demo seed, serving with graceful shutdown.
pub mod server;
/// The `Store` trait and its PostgreSQL and SQLite implementations.
pub mod store;
/// Metrics in Prometheus text: the series `/metrics` serves.
pub mod telemetry;
/// Change events sent as signed webhooks: the endpoints' rules and the delivery worker.
pub mod webhooks;

pub use http::{app, app_with, AppState};
