//! Operational endpoints: ping (keyed), liveness, readiness and the OpenAPI document.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Endpoint, KeyedQuery};
use super::wire::{success, Success};
use super::AppState;
use crate::auth::Scope;

/// The OpenAPI document, embedded at build time so the binary serves what it was built with.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

#[derive(Deserialize)]
pub struct PingQuery {}

impl Endpoint for PingQuery {
    const SCOPE: Scope = Scope::CustomerRead;
}

#[derive(Serialize)]
pub struct Pong {
    organisation: String,
    mode: &'static str,
}

pub async fn ping(KeyedQuery { caller, .. }: KeyedQuery<PingQuery>) -> Json<Success<Pong>> {
    Json(success(Pong { organisation: caller.organisation, mode: caller.mode.as_str() }))
}

#[derive(Serialize)]
pub struct Status {
    status: &'static str,
}

pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

pub async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    state.store.ping().await.map_err(|_| ApiError::Unavailable)?;
    Ok(Json(Status { status: "ready" }))
}

/// The metrics in Prometheus' text format, where this listener serves them.
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if !state.serve_metrics {
        return Err(ApiError::RouteNotFound("/metrics".into()));
    }
    Ok(metrics_text(&state.store))
}

/// The metrics, with the pool's state read now.
pub fn metrics_text(store: &crate::store::DynStore) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::telemetry::render(store.pool_stats()))
}

pub async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}
