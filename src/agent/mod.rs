//! The agent runtime: checks planned from the config, the scheduler that runs them, the state
//! they record into, config reloads, the built-in profile and shutdown signals.

pub mod builtin;
mod capture;
pub mod check;
pub mod on_demand;
pub mod reload;
pub mod scheduler;
pub mod signal;
pub mod state;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::diagnose::verdict::Verdict;
use crate::diagnose::Code;
use crate::metrics::Metrics;
use crate::results::CheckKey;

use check::executors;
use on_demand::OnDemand;
use scheduler::Scheduler;
use state::AgentState;

/// What the agent hands the HTTP server: the state, which it reads, and the one thing it may
/// ask the agent to do, run a configured check now.
#[derive(Clone)]
pub struct Handles {
    pub state: Arc<AgentState>,
    pub on_demand: Arc<OnDemand>,
}

/// Where the agent's config comes from.
pub enum ConfigSource {
    /// A file, watched for changes (a ConfigMap update swaps a symlink) and re-read on SIGHUP.
    File(PathBuf, Config),
    /// A fixed config, such as the built-in profile.
    Fixed(Config),
}

/// Runs the agent: the scheduler and the config watcher, which write the state, and `serve`,
/// which reads it (the HTTP server: a layer above, so it is handed in), until `serve` returns.
pub async fn run<S, F>(source: ConfigSource, node: String, serve: S)
where
    S: FnOnce(Handles) -> F,
    F: Future<Output = ()>,
{
    let state = Arc::new(AgentState::new(node, new_metrics()));
    let on_demand = Arc::new(OnDemand::new(state.clone()));
    let runner = on_demand.clone();
    let applied =
        Box::new(move |config: &Config, checks: &[_]| runner.configure(config.on_demand, checks));
    let mut scheduler = Scheduler::new(state.clone(), applied);
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
    tracing::info!("agent started");
    let scheduler = tokio::spawn(scheduler.run(reloads));

    serve(Handles { state, on_demand }).await;
    scheduler.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
}

/// Runs every check once and judges the node: the `check` command. With `explain`, evidence
/// is captured right after the round for every check that failed, all at once.
pub async fn check_once(config: &Config, node: String, explain: bool) -> Verdict {
    let executors = executors(config);
    let state = Arc::new(AgentState::new(node, new_metrics()));
    state.set_namespaces(&executors);
    let checks = check::plan(&config.probes, &executors, &state.metrics);
    for check in &checks {
        state.track(check);
    }
    scheduler::run_once(checks, state.clone()).await;
    if explain {
        state.set_evidence(&config.evidence);
        let failing: Vec<CheckKey> = state
            .results()
            .in_order()
            .into_iter()
            .filter(|(_, check)| check.failing)
            .map(|(key, _)| key.clone())
            .collect();
        futures_util::future::join_all(failing.iter().map(|key| state.capture_now(key))).await;
    }
    state.publish();
    Arc::unwrap_or_clone(state.verdict())
}

/// The agent's metrics, with a `hybridprobe_diagnosis` series for every diagnosis code.
pub fn new_metrics() -> Metrics {
    let codes: Vec<&str> = Code::ALL.iter().map(|code| code.as_str()).collect();
    Metrics::new(&codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dashboards and alerts need a series for every code from the first scrape on.
    #[test]
    fn every_diagnosis_code_is_exported_from_the_start() {
        let text = new_metrics().render();
        for code in Code::ALL {
            let line = format!("hybridprobe_diagnosis{{code=\"{code}\"}} 0");
            assert!(text.contains(&line), "missing {line}\n{text}");
        }
    }
}
