//! The scheduler: runs every check at its interval, start times spread, under its timeout.
//!
//! Each check (a probe in one namespace) is its own task, so a slow check never delays another,
//! and a check runs its rounds one after the other, so it never overlaps itself.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::check::{executors, planned, Check, PlannedCheck};
use super::state::AgentState;
use crate::config::{Config, NamespaceConfig, ProbeConfig};
use crate::netns::{Executor, NetnsError, NetnsId};
use crate::probe::resolver::{Family, Noted};
use crate::probe::{with_resolved, Failure, Outcome, Reason};
use crate::results::CheckKey;

/// Runs the checks of the current config and swaps in new configs without a restart.
pub struct Scheduler {
    state: Arc<AgentState>,
    /// Told every applied config and its checks: runs on demand use the same ones.
    applied: OnApply,
    namespaces: Vec<NamespaceConfig>,
    executors: Vec<Executor>,
    running: HashMap<CheckKey, Running>,
    tasks: JoinSet<()>,
}

/// Called with each config the scheduler applies and the checks it plans from it.
pub(super) type OnApply = Box<dyn Fn(&Config, &[PlannedCheck]) + Send>;

struct Running {
    probe: Arc<ProbeConfig>,
    task: AbortHandle,
}

impl Scheduler {
    pub(super) fn new(state: Arc<AgentState>, applied: OnApply) -> Scheduler {
        Scheduler {
            state,
            applied,
            namespaces: Vec::new(),
            executors: Vec::new(),
            running: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Makes the running checks match `config`. Checks whose probe is unchanged keep running
    /// with their history and series; changed and removed ones stop and their series go; new
    /// ones start. A change of namespaces restarts every check on fresh executors.
    pub fn apply(&mut self, config: &Config) {
        let renew_namespaces = self.namespaces != config.namespaces;
        if renew_namespaces {
            self.executors = executors(config);
            self.namespaces = config.namespaces.clone();
            self.state.set_namespaces(&self.executors);
        }
        self.state.set_evidence(&config.evidence);
        let wanted = planned(&config.probes, &self.executors);
        (self.applied)(config, &wanted);
        let keep = |key: &CheckKey, running: &Running| {
            !renew_namespaces
                && wanted
                    .iter()
                    .any(|w| w.key == *key && *w.probe == *running.probe)
        };
        let stale: Vec<CheckKey> = self
            .running
            .iter()
            .filter(|(key, running)| !keep(key, running))
            .map(|(key, _)| key.clone())
            .collect();
        // Old series go before new ones are made, or a changed check would lose its new ones.
        for key in &stale {
            if let Some(old) = self.running.remove(key) {
                old.task.abort();
            }
            self.state.untrack(key);
        }
        let (mut started, mut kept) = (0, 0);
        for w in wanted {
            let check = w.into_check(&self.state.metrics);
            self.state.track(&check);
            if self.running.contains_key(&check.key) {
                kept += 1;
                continue;
            }
            started += 1;
            let key = check.key.clone();
            let probe = check.probe.clone();
            let task = self.tasks.spawn(check_loop(check, self.state.clone()));
            self.running.insert(key, Running { probe, task });
        }
        tracing::info!(started, kept, stopped = stale.len(), "checks applied");
    }

    /// Runs until cancelled (drop the future to stop), applying each config from `reloads` and
    /// publishing the verdict as rounds finish. A check task or the publisher that dies marks
    /// the scheduler dead, which fails the liveness probe.
    pub async fn run(mut self, mut reloads: mpsc::Receiver<Config>) {
        self.tasks.spawn(self.state.clone().publish_changes());
        loop {
            tokio::select! {
                Some(ended) = self.tasks.join_next() => {
                    if let Err(e) = ended {
                        if e.is_panic() {
                            tracing::error!(error = %e, "a scheduler task died; the scheduler is no longer whole");
                            self.state.scheduler_stopped();
                        }
                    }
                }
                Some(config) = reloads.recv() => self.apply(&config),
                else => return,
            }
        }
    }
}

async fn check_loop(check: Check, state: Arc<AgentState>) {
    let interval = check.probe.interval;
    // The first tick at the offset, rather than a sleep before the ticker: one timer less in
    // every check's task.
    let start = Instant::now() + start_offset(&check.probe.name, check.netns(), interval);
    let mut ticker = tokio::time::interval_at(start, interval);
    // A round never overlaps the next; if one ran long, skip the missed start rather than burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let scheduled = ticker.tick().await;
        // A runtime too busy to start rounds on time shows here before any round is missed.
        state.metrics.observe_scheduler_lag(scheduled.elapsed());
        // Boxed: the round's future is most of the task's size, and a check waits far longer
        // than its rounds run, so the task holds it only while a round runs.
        let (result, took) = Box::pin(run_round(&check)).await;
        state.record(&check, &result, took);
    }
}

/// Spreads start times over the interval so a hundred probes do not fire in one millisecond.
/// Derived from the check's identity, so each check keeps its slot across restarts.
pub fn start_offset(probe: &str, netns: NetnsId, interval: Duration) -> Duration {
    let mut hasher = DefaultHasher::new();
    (probe, netns).hash(&mut hasher);
    let slot = hasher.finish() % 10_000;
    interval.mul_f64(slot as f64 / 10_000.0)
}

/// Runs one round of a check under its timeout and says how long it took.
pub async fn run_round(check: &Check) -> (Result<Outcome, Failure>, Duration) {
    run_probe(&check.probe, &check.executor, check.key.family).await
}

/// Runs one round of `probe` through `executor` under the probe's timeout, over `family` when
/// the probe is split (`family: both`): the scheduled rounds and the ones run on demand share
/// it, so both are bounded the same way.
pub(super) async fn run_probe(
    probe: &Arc<ProbeConfig>,
    executor: &Executor,
    family: Option<Family>,
) -> (Result<Outcome, Failure>, Duration) {
    let config = probe;
    let probe = config.clone();
    let timeout = probe.timeout;
    // Probes that gather several answers stop a little before the hard limit, so what they
    // did gather is reported instead of being cut off.
    let budget = timeout.saturating_sub((timeout / 10).min(Duration::from_millis(100)));
    // Not boxed here: the kind's own round is (`ProbeKind::run`), and a check's loop boxes this.
    let noted = Noted::default();
    let noting = noted.clone();
    let work = executor.run(move |ctx| async move {
        // Caught where it runs, which may be another namespace's thread.
        contained(&probe, probe.kind.run(&ctx, budget, noting, family)).await
    });
    let (result, took) = within_timeout(config, work).await;
    let result = with_resolved(result, noted.take());
    (config.expect.judge(result), took)
}

/// Runs a round, turning a panic in it into a failed round: a bug in one probe fails that
/// check (result `error`) and no other. It needs unwinding, which the release profile keeps.
async fn contained(
    probe: &ProbeConfig,
    round: impl Future<Output = Result<Outcome, Failure>>,
) -> Result<Outcome, Failure> {
    let panic = match AssertUnwindSafe(round).catch_unwind().await {
        Ok(result) => return result,
        Err(panic) => panic,
    };
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    tracing::error!(probe = %probe.name, %message, "a probe round panicked");
    Err(Failure::new(
        Reason::Error,
        format!("{}: the probe panicked: {message}", probe.kind.describe()),
    ))
}

/// Bounds a round by the probe's timeout: the only place rounds are timed out.
async fn within_timeout(
    probe: &ProbeConfig,
    work: impl Future<Output = Result<Result<Outcome, Failure>, NetnsError>>,
) -> (Result<Outcome, Failure>, Duration) {
    let started = Instant::now();
    let result = match tokio::time::timeout(probe.timeout, work).await {
        Ok(Ok(result)) => result,
        Ok(Err(netns)) => Err(Failure::new(Reason::NetnsUnavailable, netns.to_string())),
        Err(_elapsed) => Err(Failure::new(
            Reason::Timeout,
            format!(
                "{}: no answer within {}",
                probe.kind.describe(),
                humantime::format_duration(probe.timeout)
            ),
        )),
    };
    (result, started.elapsed())
}

/// Runs every check once, concurrently, and records the results: the `check` command.
pub async fn run_once(checks: Vec<Check>, state: Arc<AgentState>) {
    let mut tasks = JoinSet::new();
    for check in checks {
        let state = state.clone();
        tasks.spawn(async move {
            let (result, took) = run_round(&check).await;
            state.record(&check, &result, took);
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::check::plan;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::netns::NetnsContext;

    fn config(yaml: &str) -> Config {
        Config::parse(yaml, &|_| None).unwrap()
    }

    fn pod_executor() -> Executor {
        Executor::own(NetnsContext {
            id: NetnsId::Pod,
            resolv_conf: "/etc/resolv.conf".into(),
            host: None,
            kept: Default::default(),
        })
    }

    #[test]
    fn offsets_spread_over_the_interval() {
        let interval = Duration::from_secs(10);
        let mut offsets: Vec<Duration> = (0..100)
            .map(|i| start_offset(&format!("probe-{i}"), NetnsId::Pod, interval))
            .collect();
        assert!(offsets.iter().all(|o| *o < interval));
        offsets.sort();
        offsets.dedup_by(|a, b| a.as_millis() == b.as_millis());
        assert!(
            offsets.len() > 90,
            "100 probes share too few start milliseconds"
        );
        assert_eq!(
            start_offset("a", NetnsId::Pod, interval),
            start_offset("a", NetnsId::Pod, interval)
        );
    }

    #[test]
    fn plan_honours_each_probes_namespaces() {
        let config = config(
            "netns: {pod: {}, host: {path: /nonexistent}}\nprobes:\n - {name: a, tcp: {target: 'x:1'}}\n - {name: b, netns: [host], tcp: {target: 'x:1'}}\n - {name: c, netns: [host], tcp: {target: 'x:1', family: both}}",
        );
        let host = Executor::enter(
            NetnsContext {
                id: NetnsId::Host,
                resolv_conf: "/etc/resolv.conf".into(),
                host: None,
                kept: Default::default(),
            },
            std::path::Path::new("/nonexistent"),
        );
        let checks = plan(&config.probes, &[pod_executor(), host], &Metrics::new(&[]));
        let pairs: Vec<(&str, NetnsId, Option<Family>)> = checks
            .iter()
            .map(|c| (c.probe.name.as_str(), c.netns(), c.key.family))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("a", NetnsId::Pod, None),
                ("a", NetnsId::Host, None),
                ("b", NetnsId::Host, None),
                ("c", NetnsId::Host, Some(Family::Ipv4)),
                ("c", NetnsId::Host, Some(Family::Ipv6)),
            ],
            "a probe with family: both is a check per family"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_that_never_answers_times_out_at_the_probes_timeout() {
        let config = config(
            "netns: {pod: {}}\nprobes: [{name: slow, timeout: 2s, tcp: {target: '198.19.10.1:389'}}]",
        );
        let never = std::future::pending::<Result<Result<Outcome, Failure>, NetnsError>>();
        let (result, took) = within_timeout(&config.probes[0], never).await;
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::Timeout);
        assert_eq!(
            failure.detail,
            "tcp connect 198.19.10.1:389: no answer within 2s"
        );
        assert_eq!(took, Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_round_that_panics_fails_its_check_and_nothing_else() {
        let config = config("netns: {pod: {}}\nprobes: [{name: a, tcp: {target: 'x:1'}}]");
        let panicking = async { panic!("index out of bounds") };
        let failure = contained(&config.probes[0], panicking).await.unwrap_err();
        assert_eq!(failure.reason, Reason::Error);
        assert_eq!(
            failure.detail,
            "tcp connect x:1: the probe panicked: index out of bounds"
        );
        let answered = async {
            Ok(Outcome {
                detail: "connected".into(),
                measurements: crate::probe::Measurements::None,
                resolved: None,
            })
        };
        assert!(contained(&config.probes[0], answered).await.is_ok());
    }

    #[tokio::test]
    async fn an_unavailable_namespace_is_a_failure_with_its_reason() {
        let config = config("netns: {pod: {}}\nprobes: [{name: a, tcp: {target: 'x:1'}}]");
        let missing = async { Err(NetnsError::Unavailable("cannot open /x".into())) };
        let (result, _) = within_timeout(&config.probes[0], missing).await;
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::NetnsUnavailable);
        assert_eq!(failure.detail, "cannot open /x");
    }
}
