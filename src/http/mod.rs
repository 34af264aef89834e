//! The HTTP surface: `/metrics` for Prometheus, `/livez` and `/readyz` for the kubelet,
//! `/healthz`, the node verdict for people and smoke checks, the status page at `/`, and
//! `POST /checks/<name>/run`, the one endpoint that acts (off unless the config enables it).

pub mod run;
pub mod server;
pub mod status_page;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRef, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::agent::on_demand::OnDemand;
use crate::agent::state::AgentState;
use crate::agent::Handles;
use crate::diagnose::table;
use server::Limits;

use crate::diagnose::verdict::Status;

pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub(crate) const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

pub fn router(handles: Handles) -> Router {
    Router::new()
        .route("/", get(status_page::page))
        .route("/status.js", get(status_page::script))
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .route("/checks/{name}/run", post(run::run_check))
        .with_state(handles)
}

/// Every read handler takes only the state; only `run` takes the runner.
impl FromRef<Handles> for Arc<AgentState> {
    fn from_ref(handles: &Handles) -> Arc<AgentState> {
        handles.state.clone()
    }
}

impl FromRef<Handles> for Arc<OnDemand> {
    fn from_ref(handles: &Handles) -> Arc<OnDemand> {
        handles.on_demand.clone()
    }
}

/// Why the agent's HTTP server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct ListenError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Binds the agent's HTTP listener.
pub async fn listen(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    tracing::info!(listen = %addr, "listening");
    Ok(listener)
}

/// Serves until `shutdown` completes, then lets in-flight requests finish, within the limits
/// that keep slow, huge or numerous clients from taking the agent down.
pub async fn serve(
    listener: TcpListener,
    handles: Handles,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    server::serve(listener, router(handles), Limits::default(), shutdown).await
}

/// The metrics as they are: the agent publishes `hybridprobe_node_healthy` and the diagnoses
/// on the write side, so a scrape only renders (or shares the last rendering).
async fn metrics(State(state): State<Arc<AgentState>>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        state.metrics.render(),
    )
        .into_response()
}

/// Alive while the scheduler runs. Never depends on the network: an outage must not make the
/// kubelet restart every agent.
async fn livez(State(state): State<Arc<AgentState>>) -> Response {
    if state.scheduler_alive() {
        text(StatusCode::OK, "ok\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "scheduler stopped\n")
    }
}

/// Ready once the published verdict is past `starting`, so `/healthz` agrees from then on.
async fn readyz(State(state): State<Arc<AgentState>>) -> Response {
    if state.verdict().status != Status::Starting {
        text(StatusCode::OK, "ready\n")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: first round not finished\n",
        )
    }
}

#[derive(Deserialize)]
struct HealthQuery {
    format: Option<String>,
}

async fn healthz(
    State(state): State<Arc<AgentState>>,
    Query(query): Query<HealthQuery>,
    headers: HeaderMap,
) -> Response {
    let verdict = state.verdict();
    let code = if verdict.status == Status::Ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if wants_json(query.format.as_deref(), &headers) {
        (code, axum::Json(&*verdict)).into_response()
    } else {
        text(code, table::table(&verdict))
    }
}

/// JSON when asked for with `?format=json` or `Accept: application/json`; plain text otherwise,
/// which is what `curl` users read.
pub(crate) fn wants_json(format: Option<&str>, headers: &HeaderMap) -> bool {
    format == Some("json")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("application/json"))
}

fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (code, [(header::CONTENT_TYPE, PLAIN_TEXT)], body.into()).into_response()
}
