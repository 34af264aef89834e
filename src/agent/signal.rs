//! The shutdown signal: SIGTERM (the kubelet stopping the pod) or SIGINT (Ctrl-C).

use tokio::signal::unix::{signal, SignalKind};

/// Completes when the process is asked to stop.
pub async fn shutdown() {
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
