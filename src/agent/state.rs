//! What the agent knows right now: results per check, which namespaces work, whether the first
//! round is done, whether the scheduler lives, and the last config reload's outcome. Shared by
//! the scheduler, the config watcher and the HTTP server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::check::Check;
use crate::diagnose::verdict::{self, Snapshot, Verdict};
use crate::diagnose::Code;
use crate::metrics::Metrics;
use crate::netns::{Executor, NetnsStatus};
use crate::probe::{Failure, Outcome};
use crate::results::{CheckKey, Damping, Results, Transition};

pub struct AgentState {
    /// The node this agent reports for (NODE_NAME from the downward API, else the host name).
    pub node: String,
    pub metrics: Metrics,
    namespaces: Mutex<Vec<NetnsStatus>>,
    results: Mutex<Results>,
    /// Why the newest config file was rejected; `None` when it is the one running.
    config_error: Mutex<Option<String>>,
    ready: AtomicBool,
    scheduler_alive: AtomicBool,
}

/// Locks that stay usable after a panic elsewhere: every update under them is a single insert
/// or assignment, so the data is consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl AgentState {
    pub fn new(node: String, metrics: Metrics) -> AgentState {
        metrics.set_node_healthy(false);
        metrics.set_config_reloaded(true);
        AgentState {
            node,
            metrics,
            namespaces: Mutex::default(),
            results: Mutex::default(),
            config_error: Mutex::default(),
            ready: AtomicBool::new(false),
            scheduler_alive: AtomicBool::new(true),
        }
    }

    /// Takes note of which namespaces the executors could enter.
    pub fn set_namespaces(&self, executors: &[Executor]) {
        let statuses: Vec<NetnsStatus> = executors
            .iter()
            .map(|e| NetnsStatus {
                id: e.id(),
                unavailable: e.availability().err(),
            })
            .collect();
        for ns in &statuses {
            self.metrics
                .set_netns_available(ns.id, ns.unavailable.is_none());
        }
        *lock(&self.namespaces) = statuses;
    }

    pub fn namespaces(&self) -> Vec<NetnsStatus> {
        lock(&self.namespaces).clone()
    }

    /// Starts reporting a check, before its first round.
    pub fn track(&self, check: &Check) {
        self.results()
            .declare(check.key.clone(), check.probe.clone(), check.position);
    }

    /// Stops reporting a check: its results and every series it had are dropped.
    pub fn untrack(&self, key: &CheckKey) {
        self.results().remove(key);
        self.metrics.forget_check(&key.probe, key.netns);
    }

    /// Records a finished round in the results and the metrics; logs state changes once.
    pub fn record(&self, check: &Check, result: &Result<Outcome, Failure>, took: Duration) {
        let damping = Damping {
            fail_after: check.probe.fail_after,
            recover_after: check.probe.recover_after,
        };
        let (transition, first_round_done) = {
            let mut results = self.results();
            // A round that finishes after its check was removed by a reload is dropped, so it
            // cannot bring back the series that were just forgotten.
            let Some(transition) =
                results.record(&check.key, result, took, SystemTime::now(), damping)
            else {
                return;
            };
            (transition, !self.is_ready() && results.all_reported())
        };
        self.metrics
            .observe(&check.series, result, took, transition);
        let (probe, netns) = (&check.key.probe, check.key.netns);
        match (transition, result) {
            (Transition::Failed, Err(failure)) => {
                tracing::warn!(%probe, %netns, result = %failure.reason, detail = %failure.detail, "check failing")
            }
            (Transition::Recovered { outage }, Ok(outcome)) => {
                tracing::info!(%probe, %netns, outage_seconds = outage.as_secs_f64(), detail = %outcome.detail, "check recovered")
            }
            _ => {}
        }
        if first_round_done {
            self.ready.store(true, Ordering::Release);
            tracing::info!("first round finished");
        }
    }

    /// Judges the node from what is known now, and sets the diagnosis gauges from the verdict.
    pub fn judge(&self) -> Verdict {
        let verdict = {
            let results = self.results();
            let namespaces = lock(&self.namespaces);
            let config_error = lock(&self.config_error);
            verdict::judge(&Snapshot {
                node: &self.node,
                checks: &results.in_order(),
                namespaces: &namespaces,
                config_error: config_error.as_deref(),
                ready: self.is_ready(),
            })
        };
        for code in Code::ALL {
            self.metrics
                .set_diagnosis(code.as_str(), verdict.diagnosed(*code));
        }
        verdict
    }

    pub fn results(&self) -> MutexGuard<'_, Results> {
        lock(&self.results)
    }

    /// Notes the outcome of reading a changed config file.
    pub fn config_reloaded(&self, outcome: Result<(), String>) {
        self.metrics.set_config_reloaded(outcome.is_ok());
        *lock(&self.config_error) = outcome.err();
    }

    pub fn config_error(&self) -> Option<String> {
        lock(&self.config_error).clone()
    }

    /// True once every check finished its first round; stays true across reloads.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn scheduler_alive(&self) -> bool {
        self.scheduler_alive.load(Ordering::Acquire)
    }

    pub fn scheduler_stopped(&self) {
        self.scheduler_alive.store(false, Ordering::Release);
    }
}
