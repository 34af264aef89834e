//! What the agent knows right now: results per check, which namespaces work, whether the first
//! round is done, whether the scheduler lives, and the last config reload's outcome. Shared by
//! the scheduler, the config watcher and the HTTP server.
//!
//! The write side judges: every change (a round, a reload, the namespaces, a check added or
//! removed) marks the state changed, and [`AgentState::publish_changes`] judges the node at
//! most every [`PUBLISH_EVERY`], sets `hybridprobe_node_healthy` and `hybridprobe_diagnosis`,
//! and publishes the verdict. Reads ([`AgentState::verdict`], the metrics) only read.
//!
//! A check that turns failing starts an evidence capture (`capture.rs`); the capture, once
//! kept, marks the state changed like a round does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};

use super::capture::Captures;
use super::check::Check;
use crate::config::EvidenceConfig;
use crate::diagnose::verdict::{Judge, Snapshot, Status, Verdict};
use crate::diagnose::Code;
use crate::evidence::{Capture, Subject, Trigger};
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
    /// Keeps what it judged of each check until the check changes; taken by each publish.
    judge: Mutex<Judge>,
    /// Why the newest config file was rejected; `None` when it is the one running.
    config_error: Mutex<Option<String>>,
    ready: AtomicBool,
    scheduler_alive: AtomicBool,
    /// The verdict as last published: what `/healthz`, `/readyz`, `/` and `check` serve.
    verdict: watch::Sender<Arc<Verdict>>,
    /// Something a verdict is judged from changed since the last publish. Shared with the
    /// evidence captures, which finish after the round that started them.
    changed: Arc<Notify>,
    captures: Captures,
}

/// The longest a change waits to be published. Rounds can finish a thousand times a second;
/// they are judged together, at most this often, while a lone change is published at once.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Locks that stay usable after a panic elsewhere: every update under them is a single insert
/// or assignment, so the data is consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl AgentState {
    /// A state with no checks yet, its verdict published: `starting`.
    pub fn new(node: String, metrics: Metrics) -> AgentState {
        metrics.set_config_reloaded(true);
        let state = AgentState {
            node,
            metrics,
            namespaces: Mutex::default(),
            results: Mutex::default(),
            judge: Mutex::default(),
            config_error: Mutex::default(),
            ready: AtomicBool::new(false),
            scheduler_alive: AtomicBool::new(true),
            verdict: watch::Sender::new(Arc::new(Verdict {
                status: Status::Starting,
                node: String::new(),
                checks: Vec::new(),
                namespaces: Vec::new(),
                diagnoses: Vec::new(),
            })),
            changed: Arc::new(Notify::new()),
            captures: Captures::default(),
        };
        state.publish();
        state
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
        self.captures.set_executors(executors);
        self.changed();
    }

    /// Takes the evidence settings of a newly applied config.
    pub fn set_evidence(&self, config: &EvidenceConfig) {
        self.captures.configure(config);
    }

    /// Whether `evidence.enabled` lets captures run without the `check` command asking.
    pub fn evidence_enabled(&self) -> bool {
        self.captures.enabled()
    }

    pub fn namespaces(&self) -> Vec<NetnsStatus> {
        lock(&self.namespaces).clone()
    }

    /// Starts reporting a check, before its first round.
    pub fn track(&self, check: &Check) {
        self.results()
            .declare(check.key.clone(), check.probe.clone(), check.position);
        self.captures.store().declare(&check.key);
        self.changed();
    }

    /// Stops reporting a check: its results and every series it had are dropped.
    pub fn untrack(&self, key: &CheckKey) {
        self.results().remove(key);
        self.captures.store().remove(key);
        self.metrics.forget_check(key.labels());
        self.changed();
    }

    /// Records a finished round in the results and the metrics; logs state changes once.
    pub fn record(&self, check: &Check, result: &Result<Outcome, Failure>, took: Duration) {
        let damping = Damping {
            fail_after: check.probe.fail_after,
            recover_after: check.probe.recover_after,
        };
        let (transition, standing, first_round_done, turned_failing) = {
            let mut results = self.results();
            // A round that finishes after its check was removed by a reload is dropped, so it
            // cannot bring back the series that were just forgotten.
            let Some(recorded) =
                results.record(&check.key, result, took, SystemTime::now(), damping)
            else {
                return;
            };
            // The first round sets the state without a transition; failing, it turned too.
            let turned =
                recorded.transition == Transition::Failed || (recorded.first && result.is_err());
            let turned_failing = turned.then(|| Subject::of(&check.key, recorded.state));
            let (transition, standing) = (recorded.transition, recorded.state.standing());
            (
                transition,
                standing,
                !self.is_ready() && results.all_reported(),
                turned_failing,
            )
        };
        if let Some(subject) = turned_failing {
            self.captures
                .on_failure(&check.key, subject, &self.metrics, &self.changed);
        }
        self.metrics
            .observe(&check.series, result, took, transition, standing);
        let (probe, netns) = (&check.key.probe, check.key.netns);
        let family = check.key.family_label();
        match (transition, result) {
            (Transition::Failed, Err(failure)) => {
                tracing::warn!(%probe, %netns, family, result = %failure.reason, detail = %failure.detail, "check failing")
            }
            (Transition::Recovered { outage }, Ok(outcome)) => {
                tracing::info!(%probe, %netns, family, outage_seconds = outage.as_secs_f64(), detail = %outcome.detail, "check recovered")
            }
            _ => {}
        }
        if first_round_done {
            self.ready.store(true, Ordering::Release);
            tracing::info!("first round finished");
        }
        self.changed();
    }

    /// The verdict as last published. Reading it judges nothing and writes nothing.
    pub fn verdict(&self) -> Arc<Verdict> {
        self.verdict.borrow().clone()
    }

    /// Every published verdict, from the current one on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Verdict>> {
        self.verdict.subscribe()
    }

    /// Judges the node from what is known now and publishes it: the node and diagnosis gauges,
    /// then the verdict, so whoever reads that verdict finds gauges at least as new.
    pub fn publish(&self) {
        // Held to the end, so publishes never overtake one another; rounds wait for one
        // judgement at most.
        let results = self.results();
        let verdict = {
            let namespaces = lock(&self.namespaces);
            let config_error = lock(&self.config_error);
            let evidence = self.captures.store();
            lock(&self.judge).judge(&Snapshot {
                node: &self.node,
                checks: &results.in_order(),
                namespaces: &namespaces,
                config_error: config_error.as_deref(),
                ready: self.is_ready(),
                evidence: &evidence,
            })
        };
        self.metrics.set_node_healthy(verdict.status == Status::Ok);
        for code in Code::ALL {
            self.metrics
                .set_diagnosis(code.as_str(), verdict.diagnosed(*code));
        }
        self.verdict.send_replace(Arc::new(verdict));
    }

    /// Publishes each change, until cancelled: at once after a quiet spell, then at most every
    /// [`PUBLISH_EVERY`], with the changes made meanwhile judged together.
    pub async fn publish_changes(self: Arc<Self>) {
        loop {
            self.changed.notified().await;
            self.publish();
            tokio::time::sleep(PUBLISH_EVERY).await;
        }
    }

    /// Captures evidence for a check now, whatever its state and the rate bound, keeps it
    /// with the check's others and marks the state changed; `None` for an unknown check. For
    /// the `check` command.
    pub async fn capture_now(&self, key: &CheckKey) -> Option<Arc<Capture>> {
        let subject = Subject::of(key, self.results().get(key)?);
        let capture = self.captures.now(key, subject, &self.metrics).await;
        self.changed();
        Some(capture)
    }

    /// Captures evidence for a round run on demand, `trigger`, which was never recorded: the
    /// capture is returned, not kept. `None` for an unknown check.
    pub async fn capture_unrecorded(&self, key: &CheckKey, trigger: Trigger) -> Option<Capture> {
        let mut subject = Subject::of(key, self.results().get(key)?);
        subject.trigger = trigger;
        Some(self.captures.unrecorded(key, subject, &self.metrics).await)
    }

    /// Marks the state changed: the publisher judges it soon. One atomic operation, since it
    /// follows every round.
    fn changed(&self) {
        // A stored permit: changes while the publisher judges or waits are not lost.
        self.changed.notify_one();
    }

    pub fn results(&self) -> MutexGuard<'_, Results> {
        lock(&self.results)
    }

    /// Notes the outcome of reading a changed config file.
    pub fn config_reloaded(&self, outcome: Result<(), String>) {
        self.metrics.set_config_reloaded(outcome.is_ok());
        *lock(&self.config_error) = outcome.err();
        self.changed();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::check::{executors, plan};
    use crate::agent::new_metrics;
    use crate::config::Config;
    use crate::netns::NetnsId;

    const CONFIG: &str =
        "netns: {pod: {}}\nprobes: [{name: dc1, tcp: {target: '198.19.10.1:389'}}]";

    fn gauge(state: &AgentState, series: &str) -> Option<String> {
        let text = state.metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
    }

    /// A state with the checks of [`CONFIG`] tracked, and those checks.
    fn tracked() -> (Arc<AgentState>, Vec<Check>) {
        let config = Config::parse(CONFIG, &|_| None).unwrap();
        let state = Arc::new(AgentState::new("node-1".into(), new_metrics()));
        let executors = executors(&config);
        state.set_namespaces(&executors);
        let checks = plan(&config.probes, &executors, &state.metrics);
        for check in &checks {
            state.track(check);
        }
        (state, checks)
    }

    fn passed(state: &AgentState, check: &Check) {
        let ok = Ok(Outcome {
            detail: "connected".into(),
            measurements: crate::probe::Measurements::None,
            resolved: None,
        });
        state.record(check, &ok, Duration::from_millis(1));
    }

    #[test]
    fn reads_see_only_what_was_published() {
        let (state, checks) = tracked();
        assert_eq!(state.verdict().status, Status::Starting);
        assert_eq!(state.verdict().node, "node-1");
        passed(&state, &checks[0]);
        assert_eq!(
            state.verdict().status,
            Status::Starting,
            "a read does not judge"
        );
        assert_eq!(
            gauge(&state, "hybridprobe_node_healthy").as_deref(),
            Some("0")
        );
        state.publish();
        let verdict = state.verdict();
        assert_eq!(verdict.status, Status::Ok, "{verdict:?}");
        assert_eq!(verdict.checks[0].result, "success");
        assert_eq!(
            gauge(&state, "hybridprobe_node_healthy").as_deref(),
            Some("1")
        );

        state.config_reloaded(Err("probes[0]: bad".into()));
        state.publish();
        assert_eq!(state.verdict().status, Status::Fail);
        let series = r#"hybridprobe_diagnosis{code="config_reload_failed"}"#;
        assert_eq!(gauge(&state, series).as_deref(), Some("1"));
        assert_eq!(
            gauge(&state, "hybridprobe_node_healthy").as_deref(),
            Some("0")
        );
    }

    /// A host namespace that cannot be entered: captures run but send nothing anywhere.
    const UNREACHABLE_HOST: &str = "netns: {host: {path: /nonexistent/ns/net}}\n\
         probes: [{name: dc1, tcp: {target: '198.19.10.1:389'}}]";

    fn counted(state: &AgentState, outcome: &str) -> Option<String> {
        let series = format!(
            r#"hybridprobe_evidence_captures_total{{netns="host",outcome="{outcome}",probe="dc1"}}"#
        );
        gauge(state, &series)
    }

    #[tokio::test]
    async fn a_check_turning_failing_is_captured_once_per_interval_and_shown_while_it_fails() {
        let config = Config::parse(UNREACHABLE_HOST, &|_| None).unwrap();
        let state = Arc::new(AgentState::new("node-1".into(), new_metrics()));
        let executors = executors(&config);
        state.set_namespaces(&executors);
        state.set_evidence(&config.evidence);
        let checks = plan(&config.probes, &executors, &state.metrics);
        state.track(&checks[0]);
        let failed = Err(Failure::new(crate::probe::Reason::Timeout, "no answer"));
        // A first round that fails turns the check failing: one capture, in its own task.
        state.record(&checks[0], &failed, Duration::from_millis(1));
        state.publish();
        let mut waited = 0;
        while state.verdict().checks[0].evidence.is_empty() && waited < 500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            state.publish();
            waited += 1;
        }
        let verdict = state.verdict();
        let capture = &verdict.checks[0].evidence[0];
        assert_eq!(capture.trigger.result, "timeout");
        assert_eq!(capture.netns, NetnsId::Host);
        // Nothing could be taken in a namespace that cannot be entered: that is `failed`.
        assert_eq!(counted(&state, "failed").as_deref(), Some("1"));

        // Flapping within the interval: every later turn to failing is rate limited.
        for _ in 0..3 {
            passed(&state, &checks[0]);
            state.record(&checks[0], &failed, Duration::from_millis(1));
        }
        assert_eq!(counted(&state, "rate_limited").as_deref(), Some("3"));
        state.publish();
        assert_eq!(state.verdict().checks[0].evidence.len(), 1);
        passed(&state, &checks[0]);
        state.publish();
        assert!(state.verdict().checks[0].evidence.is_empty(), "passing");

        // A check removed by a reload drops its evidence and its series.
        state.untrack(&checks[0].key);
        assert_eq!(counted(&state, "failed"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_are_published_at_once_then_coalesced() {
        let (state, checks) = tracked();
        let mut published = state.subscribe();
        let publisher = tokio::spawn(state.clone().publish_changes());
        // The changes made before the publisher started are published at its first turn.
        published.changed().await.unwrap();
        assert_eq!(state.verdict().status, Status::Starting);

        // A lone change after a quiet spell is published without waiting.
        tokio::time::sleep(PUBLISH_EVERY * 2).await;
        let started = tokio::time::Instant::now();
        passed(&state, &checks[0]);
        published.changed().await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(state.verdict().status, Status::Ok);

        // A thousand rounds and a rejected config within one period: one publish, after it.
        for _ in 0..1000 {
            passed(&state, &checks[0]);
        }
        state.config_reloaded(Err("probes[0]: bad".into()));
        published.changed().await.unwrap();
        assert_eq!(started.elapsed(), PUBLISH_EVERY);
        assert_eq!(state.verdict().status, Status::Fail);
        tokio::time::sleep(PUBLISH_EVERY * 3).await;
        assert!(!published.has_changed().unwrap(), "nothing changed since");
        publisher.abort();
    }
}
