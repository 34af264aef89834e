//! hybridprobe: a connectivity diagnostic agent for Kubernetes joined to on-premises networks.
//!
//! # Layout
//!
//! - [`config`]: YAML to a validated, typed [`Config`](config::Config); errors name the path.
//! - [`profile`]: the built-in checks used when no config is given.
//! - [`netns`]: the only code that enters network namespaces; an executor per namespace.
//! - [`probe`]: the closed set of probe kinds, one file each; `Result<Outcome, Failure>`.
//! - [`scheduler`]: intervals with spread start times, timeouts, one task per check.
//! - [`results`]: recent rounds per check; [`state`]: what the agent knows now.
//! - [`verdict`]: from results to the node's verdict; [`report`]: that verdict for people.
//! - [`metrics`]: the one `Metrics` value; [`http`]: `/metrics`, `/livez`, `/readyz`, `/healthz`.
//! - [`signal`]: SIGTERM and SIGINT as a shutdown future.
//! - [`smoke`]: the post-deploy check that asks every agent behind a name for its verdict.

pub mod config;
pub mod http;
pub mod metrics;
pub mod netns;
pub mod probe;
pub mod profile;
pub mod report;
pub mod results;
pub mod scheduler;
pub mod signal;
pub mod smoke;
pub mod state;
pub mod verdict;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use config::Config;
use metrics::Metrics;
use netns::{Executor, NetnsContext};
use state::State;
use verdict::Verdict;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// How long in-flight HTTP requests may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One executor per configured namespace. A namespace that cannot be entered still gets one,
/// which reports why on every use.
pub fn executors(config: &Config) -> Vec<Executor> {
    config
        .namespaces
        .iter()
        .map(|ns| {
            let context = NetnsContext {
                id: ns.id,
                resolv_conf: ns.resolv_conf.clone(),
            };
            match &ns.path {
                None => Executor::own(context),
                Some(path) => Executor::enter(context, path),
            }
        })
        .collect()
}

/// Runs the agent: the scheduler and the HTTP server on `listen`, until `shutdown` completes.
pub async fn run(
    config: Config,
    node: String,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Listen {
            addr: listen,
            source,
        })?;
    let executors = executors(&config);
    let state = Arc::new(State::new(node, &config, &executors, Metrics::new()));
    let checks = scheduler::plan(&config.probes, &executors);
    tracing::info!(
        %listen,
        probes = config.probes.len(),
        checks = checks.len(),
        "agent started"
    );
    let scheduler = tokio::spawn(scheduler::run(checks, state.clone()));

    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    });
    let mut stopped = stopping_rx.clone();
    let server = http::serve(listener, state, async move {
        let _ = stopped.wait_for(|s| *s).await;
    });
    let result = tokio::select! {
        served = server => served.map_err(Error::Serve),
        _ = async {
            let _ = stopping_rx.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("HTTP requests still running after the grace period; stopping anyway");
            Ok(())
        }
    };
    scheduler.abort();
    result
}

/// Runs every check once and judges the node: the `check` command.
pub async fn check_once(config: &Config, node: String) -> Verdict {
    let executors = executors(config);
    let state = Arc::new(State::new(node, config, &executors, Metrics::new()));
    scheduler::run_once(scheduler::plan(&config.probes, &executors), state.clone()).await;
    verdict::judge(&state)
}
