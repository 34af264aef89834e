//! hybridprobe: a connectivity diagnostic agent for Kubernetes joined to on-premises networks.
//!
//! # Layout
//!
//! - [`config`]: YAML to a validated, typed [`Config`](config::Config); errors name the path.
//! - [`conntrack`]: SNAT evidence from the host's connection tracking, over netlink.
//! - [`profile`]: the built-in checks used when no config is given.
//! - [`netns`]: the only code that enters network namespaces; an executor per namespace.
//! - [`probe`]: the closed set of probe kinds, one file each; `Result<Outcome, Failure>`.
//! - [`scheduler`]: intervals with spread start times, timeouts, one task per check.
//! - [`results`]: recent rounds per check; [`state`]: what the agent knows now.
//! - [`verdict`]: from results to the node's verdict; [`report`]: that verdict for people.
//! - [`diagnose`]: from the checks of both namespaces to likely causes, one per root cause.
//! - [`metrics`]: the one `Metrics` value; [`http`]: `/metrics`, `/livez`, `/readyz`, `/healthz`.
//! - [`status`]: the HTML status page at `/`, self-contained.
//! - [`server`]: serves HTTP with limits on connections, their time and their request heads.
//! - [`reload`]: watches the config file and hands valid new configs to the scheduler.
//! - [`signal`]: SIGTERM and SIGINT as a shutdown future.
//! - [`stun`]: the RFC 5389 Binding codec shared by the source-IP probe and the reflector.
//! - [`reflect`]: `hybridprobe reflect`, the on-prem server that tells a client its source address.
//! - [`smoke`]: the post-deploy check that asks every agent behind a name for its verdict.

pub mod config;
pub mod conntrack;
pub mod diagnose;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod netns;
pub mod probe;
pub mod profile;
pub mod reflect;
pub mod reload;
pub mod report;
pub mod results;
pub mod scheduler;
pub mod server;
pub mod signal;
pub mod smoke;
pub mod state;
pub mod status;
pub mod stun;
pub mod verdict;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use config::Config;
use metrics::Metrics;
use netns::{Executor, NetnsContext, NetnsId};
use scheduler::Scheduler;
use state::State;
use verdict::Verdict;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// One executor per configured namespace. A namespace that cannot be entered still gets one,
/// which reports why on every use. The host's is made first, so probes elsewhere can reach it.
pub fn executors(config: &Config) -> Vec<Executor> {
    let make = |ns: &config::NamespaceConfig, host: Option<Executor>| {
        let context = NetnsContext {
            id: ns.id,
            resolv_conf: ns.resolv_conf.clone(),
            host,
        };
        match &ns.path {
            None => Executor::own(context),
            Some(path) => Executor::enter(context, path),
        }
    };
    let host = config.namespace(NetnsId::Host).map(|ns| make(ns, None));
    config
        .namespaces
        .iter()
        .map(|ns| match (&host, ns.id) {
            (Some(host), NetnsId::Host) => host.clone(),
            _ => make(ns, host.clone()),
        })
        .collect()
}

/// Where the agent's config comes from.
pub enum ConfigSource {
    /// A file, watched for changes (a ConfigMap update swaps a symlink) and re-read on SIGHUP.
    File(PathBuf, Config),
    /// A fixed config, such as the built-in profile.
    Fixed(Config),
}

/// Runs the agent: the scheduler and the HTTP server on `listen`, until `shutdown` completes.
pub async fn run(
    source: ConfigSource,
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
    let state = Arc::new(State::new(node, Metrics::new()));
    let mut scheduler = Scheduler::new(state.clone());
    let (reloads_tx, reloads) = tokio::sync::mpsc::channel(1);
    let watcher = match source {
        ConfigSource::Fixed(config) => {
            scheduler.apply(&config);
            None
        }
        ConfigSource::File(path, config) => {
            scheduler.apply(&config);
            Some(tokio::spawn(reload::watch(
                path,
                config,
                reloads_tx,
                state.clone(),
            )))
        }
    };
    tracing::info!(%listen, "agent started");
    let scheduler = tokio::spawn(scheduler.run(reloads));

    // In-flight requests get a grace period to finish once shutdown begins (see server::Limits).
    http::serve(listener, state, shutdown).await;
    scheduler.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    Ok(())
}

/// Runs every check once and judges the node: the `check` command.
pub async fn check_once(config: &Config, node: String) -> Verdict {
    let executors = executors(config);
    let state = Arc::new(State::new(node, Metrics::new()));
    state.set_namespaces(&executors);
    let checks = scheduler::plan(&config.probes, &executors, &state.metrics);
    for check in &checks {
        state.track(check);
    }
    scheduler::run_once(checks, state.clone()).await;
    verdict::judge(&state)
}
