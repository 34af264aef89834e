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
/// The protobuf exposition, for a scraper with native histograms turned on.
pub(crate) const PROMETHEUS_PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
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
/// on the write side, so a scrape only renders (or shares the last rendering). The protobuf
/// exposition, with native histograms, only to a scraper that asks for it.
async fn metrics(State(state): State<Arc<AgentState>>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if wants_protobuf(accept) {
        let body = state.metrics.render_protobuf();
        return ([(header::CONTENT_TYPE, PROMETHEUS_PROTOBUF)], body).into_response();
    }
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        state.metrics.render(),
    )
        .into_response()
}

/// Protobuf when `accept` names its exact media type (`proto=io.prometheus.client.MetricFamily`,
/// `encoding=delimited`) with a quality no lower than the text format's: that of the most
/// specific of `text/plain`, `text/*` and `*/*` it lists, or none. Prometheus with native
/// histograms on lists protobuf first at q=1 and the text at q=0.5; without them it lists no
/// protobuf at all, and neither does anything else that reads the text today.
fn wants_protobuf(accept: &str) -> bool {
    let mut protobuf = 0.0_f64;
    // (specificity, quality) of the range that decides for the text format.
    let mut text: (u8, f64) = (0, 0.0);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let (mut quality, mut proto, mut encoding) = (1.0, None, None);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => quality = value.parse().unwrap_or(0.0),
                "proto" => proto = Some(value),
                "encoding" => encoding = Some(value),
                _ => {}
            }
        }
        let specificity = match media.as_str() {
            "application/vnd.google.protobuf" => {
                if proto == Some("io.prometheus.client.MetricFamily")
                    && encoding == Some("delimited")
                {
                    protobuf = protobuf.max(quality);
                }
                continue;
            }
            "text/plain" => 3,
            "text/*" => 2,
            "*/*" => 1,
            _ => continue,
        };
        if specificity > text.0 || (specificity == text.0 && quality > text.1) {
            text = (specificity, quality);
        }
    }
    protobuf > 0.0 && protobuf >= text.1
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

#[cfg(test)]
mod tests {
    use super::wants_protobuf;

    /// What Prometheus 2.42 sends with `--enable-feature=native-histograms`, and without.
    const NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const CLASSIC: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn protobuf_only_when_asked_for_at_least_as_much_as_text() {
        for (accept, protobuf) in [
            (NATIVE, true),
            (CLASSIC, false),
            ("", false),
            ("*/*", false),
            ("text/plain", false),
            (
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
                true,
            ),
            (
                "Application/Vnd.Google.Protobuf;proto=\"io.prometheus.client.MetricFamily\";encoding=delimited",
                true,
            ),
            // Ranked below the text, or not the delimited MetricFamily stream.
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.4,text/plain;q=0.5",
                false,
            ),
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,text/plain;q=0.5",
                true,
            ),
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0",
                false,
            ),
            ("application/vnd.google.protobuf", false),
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
                false,
            ),
            // The most specific range decides for the text: text/plain at 0.2 over */* at 1.
            (
                "*/*,text/plain;q=0.2,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.3",
                true,
            ),
            (
                "text/*;q=0.9,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8",
                false,
            ),
        ] {
            assert_eq!(wants_protobuf(accept), protobuf, "{accept}");
        }
    }
}
