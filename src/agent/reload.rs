//! Live config reload: the config file is read again when its content changes and on SIGHUP; a
//! valid new config goes to the scheduler, a bad one is reported and the last good one stays.
//!
//! The file is polled rather than watched with inotify: a ConfigMap update swaps a symlink two
//! directories up, which path-based watches miss, while comparing a small file's content every
//! couple of seconds costs nothing and cannot miss a change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use super::state::AgentState;
use crate::config::{Config, ConfigError};

/// How often the file is compared with the running config.
pub const POLL: Duration = Duration::from_secs(2);

/// Watches `path` until cancelled; `running` is the config the scheduler already runs.
pub async fn watch(
    path: PathBuf,
    running: Config,
    reloads: mpsc::Sender<Config>,
    state: Arc<AgentState>,
) {
    let mut hangup = signal(SignalKind::hangup())
        .inspect_err(
            |e| tracing::warn!(error = %e, "no SIGHUP handler; reloading on file changes only"),
        )
        .ok();
    let mut last_text = tokio::fs::read_to_string(&path).await.ok();
    let mut running = running;
    loop {
        let forced = tokio::select! {
            _ = tokio::time::sleep(POLL) => false,
            _ = hung_up(&mut hangup) => true,
        };
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text,
            Err(source) => {
                // Said once per change of state, not every poll.
                if forced || last_text.take().is_some() {
                    reject(
                        &state,
                        &ConfigError::Read {
                            path: path.clone(),
                            source,
                        },
                    );
                }
                continue;
            }
        };
        if !forced && last_text.as_deref() == Some(text.as_str()) {
            continue;
        }
        last_text = Some(text.clone());
        match Config::parse(&text, &|name| std::env::var(name).ok()) {
            Ok(config) => {
                state.config_reloaded(Ok(()));
                if config != running {
                    tracing::info!(path = %path.display(), probes = config.probes.len(), "config reloaded");
                    if reloads.send(config.clone()).await.is_err() {
                        return; // the scheduler is gone: the agent is stopping
                    }
                    running = config;
                }
            }
            Err(e) => reject(&state, &e),
        }
    }
}

fn reject(state: &AgentState, error: &ConfigError) {
    tracing::error!(error = %error, "config rejected; the last good config keeps running");
    state.config_reloaded(Err(error.to_string()));
}

/// Completes on SIGHUP; never, without a handler.
async fn hung_up(hangup: &mut Option<Signal>) {
    match hangup {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
