//! What the agent knows right now: results per check, which namespaces work, and whether the
//! first round and the scheduler are done and alive. Shared by the scheduler and the HTTP server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::netns::{Executor, NetnsId};
use crate::probe::{Failure, Outcome};
use crate::results::{CheckKey, Damping, Results, Transition};
use crate::scheduler::Check;

/// Whether a namespace can be used, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsStatus {
    pub id: NetnsId,
    pub unavailable: Option<String>,
}

pub struct State {
    /// The node this agent reports for (NODE_NAME from the downward API, else the host name).
    pub node: String,
    pub metrics: Metrics,
    pub namespaces: Vec<NetnsStatus>,
    results: Mutex<Results>,
    ready: AtomicBool,
    scheduler_alive: AtomicBool,
}

impl State {
    pub fn new(node: String, config: &Config, executors: &[Executor], metrics: Metrics) -> State {
        let namespaces: Vec<NetnsStatus> = executors
            .iter()
            .map(|e| NetnsStatus {
                id: e.id(),
                unavailable: e.availability().err(),
            })
            .collect();
        for ns in &namespaces {
            metrics.set_netns_available(ns.id, ns.unavailable.is_none());
        }
        let mut results = Results::default();
        for (position, probe) in config.probes.iter().enumerate() {
            for &netns in &probe.netns {
                let key = CheckKey {
                    probe: probe.name.clone(),
                    netns,
                };
                results.declare(key, probe.kind.name(), position);
            }
        }
        metrics.set_node_healthy(false);
        State {
            node,
            metrics,
            namespaces,
            results: Mutex::new(results),
            ready: AtomicBool::new(false),
            scheduler_alive: AtomicBool::new(true),
        }
    }

    /// Records a finished round in the results and the metrics; logs state changes once.
    pub fn record(&self, check: &Check, result: &Result<Outcome, Failure>, took: Duration) {
        let damping = Damping {
            fail_after: check.probe.fail_after,
            recover_after: check.probe.recover_after,
        };
        let (transition, first_round_done) = {
            let mut results = self.results();
            let transition = results.record(&check.key, result, took, SystemTime::now(), damping);
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

    pub fn results(&self) -> MutexGuard<'_, Results> {
        // A panic while holding the lock leaves consistent data (each update is one insert), so
        // a poisoned lock is still safe to read.
        self.results.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True once every check finished its first round.
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
