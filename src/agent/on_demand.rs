//! Running one configured check now, on request: off unless the config enables it, limited per
//! probe, and kept apart from the scheduled results.
//!
//! This is the only thing the HTTP side may ask the agent to do. It takes a probe's name, and
//! at most a namespace and a family to run it in, so it can only run what the config already
//! runs; a round it runs is reported to the caller and counted, but never recorded, so it
//! cannot move flap damping, the history or the verdict.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use serde::Serialize;
use tokio::time::Instant;

use super::check::PlannedCheck;
use super::scheduler::run_probe;
use super::state::AgentState;
use crate::config::{OnDemandConfig, ProbeConfig};
use crate::diagnose::verdict::CheckView;
use crate::evidence::{Capture, Trigger};
use crate::metrics::OnDemandOutcome;
use crate::netns::{Executor, NetnsId};
use crate::probe::resolver::Family;
use crate::probe::result_label;
use crate::results::CheckKey;

/// The checks that may be run on demand, the switch and the per-probe limit, as of the config
/// the scheduler last applied.
pub struct OnDemand {
    state: Arc<AgentState>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    settings: OnDemandConfig,
    /// Per probe name, its probe in each namespace (and family) it runs in, in the scheduler's
    /// order.
    probes: BTreeMap<String, Vec<Target>>,
    /// When each probe last started a run on demand.
    last_started: HashMap<String, Instant>,
    /// Probes with a run on demand under way.
    running: HashSet<String>,
}

#[derive(Clone)]
struct Target {
    probe: Arc<ProbeConfig>,
    executor: Executor,
    /// The check's family when the probe is split (`family: both`).
    family: Option<Family>,
}

/// Which of a probe's checks a run on demand is limited to: `None` for all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Only {
    pub netns: Option<NetnsId>,
    pub family: Option<Family>,
}

impl Only {
    fn admits(&self, target: &Target) -> bool {
        self.netns.is_none_or(|id| target.executor.id() == id)
            && self
                .family
                .is_none_or(|family| target.family == Some(family))
    }
}

/// Why a run on demand was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("runs on demand are disabled; set on_demand.enabled: true in the agent's config to allow them")]
    Disabled,
    #[error("no configured check has that name")]
    UnknownProbe,
    #[error("probe {probe:?} does not run in the {netns} namespace")]
    NotInNamespace { probe: String, netns: NetnsId },
    #[error("probe {probe:?} has no {family} check of its own: only a probe with family: both runs one per family")]
    NotSplit { probe: String, family: Family },
    #[error("probe {probe:?} ran on demand less than on_demand.min_interval ago, or is running now; retry in {} s", retry_after.as_secs())]
    RateLimited {
        probe: String,
        /// Whole seconds, at least one: what `Retry-After` says.
        retry_after: Duration,
    },
}

/// What a run on demand found, and where the check stands on its schedule.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub probe: String,
    /// This run's round in each namespace it ran in.
    pub runs: Vec<NamespaceRun>,
    /// The check's scheduled standing in each namespace, from the published verdict: the run
    /// above did not change it.
    pub scheduled: Vec<CheckView>,
}

/// One round run on demand in one namespace.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceRun {
    pub netns: NetnsId,
    /// `ipv4` or `ipv6` for a check of a probe split by `family: both`; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// Whether the round passed (after the probe's `expect`).
    pub ok: bool,
    /// `success` or the failure reason, as the `result` label of the scheduled rounds.
    pub result: &'static str,
    pub detail: String,
    pub duration_seconds: f64,
    /// When the round finished (RFC 3339).
    pub taken_at: String,
    /// What the agent captured around a failed round, from both namespaces, as
    /// `/healthz` shows a failing check's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Capture>,
}

impl RunReport {
    fn outcome(&self) -> OnDemandOutcome {
        if self.runs.iter().all(|run| run.ok) {
            OnDemandOutcome::Success
        } else {
            OnDemandOutcome::Failure
        }
    }
}

/// Holds a probe's place in `running` until its run ends, or the request is dropped.
struct Claim<'a> {
    on_demand: &'a OnDemand,
    probe: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.on_demand.inner().running.remove(&self.probe);
    }
}

impl OnDemand {
    /// Disabled, with no checks, until the scheduler applies a config.
    pub fn new(state: Arc<AgentState>) -> OnDemand {
        OnDemand {
            state,
            inner: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner().settings.enabled
    }

    /// Takes the checks and settings of a config the scheduler applies. A probe that is gone
    /// loses its limit and its series.
    pub(super) fn configure(&self, settings: OnDemandConfig, checks: &[PlannedCheck]) {
        let mut probes: BTreeMap<String, Vec<Target>> = BTreeMap::new();
        for check in checks {
            probes
                .entry(check.probe.name.clone())
                .or_default()
                .push(Target {
                    probe: check.probe.clone(),
                    executor: check.executor.clone(),
                    family: check.key.family,
                });
        }
        let mut inner = self.inner();
        let gone: Vec<String> = inner
            .probes
            .keys()
            .filter(|name| !probes.contains_key(*name))
            .cloned()
            .collect();
        for name in &gone {
            inner.last_started.remove(name);
            self.state.metrics.forget_on_demand(name);
        }
        inner.settings = settings;
        inner.probes = probes;
    }

    /// Runs the configured probe `name` now, in every namespace (and family) it runs in or
    /// `only` those asked for, each under the probe's timeout, and counts the request.
    pub async fn run(&self, name: &str, only: Only) -> Result<RunReport, Refusal> {
        let (targets, _claim) = self.claim(name, only)?;
        let mut runs = join_all(targets.iter().map(run_target)).await;
        if self.state.evidence_enabled() {
            join_all(
                runs.iter_mut()
                    .filter(|run| !run.ok)
                    .map(|run| self.capture(name, run)),
            )
            .await;
        }
        let report = RunReport {
            probe: name.to_owned(),
            runs,
            scheduled: self.scheduled(name),
        };
        self.state.metrics.count_on_demand(name, report.outcome());
        Ok(report)
    }

    /// Checks the request against the switch, the config and the limit, and takes the probe's
    /// turn: all under one lock, so two requests at once cannot both start.
    fn claim(&self, name: &str, only: Only) -> Result<(Vec<Target>, Claim<'_>), Refusal> {
        let mut inner = self.inner();
        let Some(targets) = inner.probes.get(name).cloned() else {
            // Not counted: only configured names become label values. While off, every name
            // gets the same answer, so nothing is learnt about the config from outside.
            return Err(if inner.settings.enabled {
                Refusal::UnknownProbe
            } else {
                Refusal::Disabled
            });
        };
        let count = |outcome| self.state.metrics.count_on_demand(name, outcome);
        if !inner.settings.enabled {
            count(OnDemandOutcome::Disabled);
            return Err(Refusal::Disabled);
        }
        let targets: Vec<Target> = targets.into_iter().filter(|t| only.admits(t)).collect();
        if targets.is_empty() {
            let probe = name.to_owned();
            return Err(match (only.netns, only.family) {
                (Some(netns), _) if inner.probes[name].iter().all(|t| t.executor.id() != netns) => {
                    Refusal::NotInNamespace { probe, netns }
                }
                (_, Some(family)) => Refusal::NotSplit { probe, family },
                _ => Refusal::UnknownProbe,
            });
        }
        let now = Instant::now();
        let wait = match inner.last_started.get(name) {
            _ if inner.running.contains(name) => Some(targets[0].probe.timeout),
            Some(last) => inner
                .settings
                .min_interval
                .checked_sub(now.duration_since(*last))
                .filter(|left| !left.is_zero()),
            None => None,
        };
        if let Some(wait) = wait {
            count(OnDemandOutcome::RateLimited);
            return Err(Refusal::RateLimited {
                probe: name.to_owned(),
                retry_after: whole_seconds(wait),
            });
        }
        inner.last_started.insert(name.to_owned(), now);
        inner.running.insert(name.to_owned());
        let claim = Claim {
            on_demand: self,
            probe: name.to_owned(),
        };
        Ok((targets, claim))
    }

    /// Evidence around a failed run, with the run's round as the trigger.
    async fn capture(&self, name: &str, run: &mut NamespaceRun) {
        let key = CheckKey {
            probe: name.to_owned(),
            netns: run.netns,
            family: run.family,
        };
        let trigger = Trigger {
            result: run.result.to_owned(),
            detail: run.detail.clone(),
        };
        run.evidence = self.state.capture_unrecorded(&key, trigger).await;
    }

    /// The probe's checks as last published. Reads only.
    fn scheduled(&self, name: &str) -> Vec<CheckView> {
        let verdict = self.state.verdict();
        verdict
            .checks
            .iter()
            .filter(|check| *check.probe == *name)
            .cloned()
            .collect()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every update under it is a single insert, remove or assignment.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn run_target(target: &Target) -> NamespaceRun {
    let (result, took) = run_probe(&target.probe, &target.executor, target.family).await;
    NamespaceRun {
        netns: target.executor.id(),
        family: target.family,
        ok: result.is_ok(),
        result: result_label(&result),
        detail: match &result {
            Ok(outcome) => outcome.detail.clone(),
            Err(failure) => failure.detail.clone(),
        },
        duration_seconds: took.as_secs_f64(),
        taken_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        evidence: None,
    }
}

/// Rounded up to whole seconds, at least one: `Retry-After` has no fractions, and a client
/// that retries at once after `0` would be refused again.
fn whole_seconds(wait: Duration) -> Duration {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(seconds.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::check::{executors, planned};
    use crate::agent::new_metrics;
    use crate::config::Config;

    const PROBES: &str =
        "netns: {pod: {}}\nprobes: [{name: dc1, timeout: 3s, tcp: {target: '198.19.10.1:389'}}]";

    fn on_demand(settings: &str) -> OnDemand {
        let on_demand = OnDemand::new(Arc::new(AgentState::new("n".into(), new_metrics())));
        apply(&on_demand, &format!("{settings}\n{PROBES}"));
        on_demand
    }

    fn apply(on_demand: &OnDemand, yaml: &str) {
        let config = Config::parse(yaml, &|_| None).unwrap();
        let checks = planned(&config.probes, &executors(&config));
        on_demand.configure(config.on_demand, &checks);
    }

    fn counted(on_demand: &OnDemand, outcome: &str) -> Option<String> {
        let series =
            format!("hybridprobe_on_demand_runs_total{{outcome=\"{outcome}\",probe=\"dc1\"}} ");
        let text = on_demand.state.metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(&series).map(str::to_owned))
    }

    fn netns(id: NetnsId) -> Only {
        Only {
            netns: Some(id),
            family: None,
        }
    }

    fn refusal(result: Result<(Vec<Target>, Claim<'_>), Refusal>) -> Refusal {
        result.err().expect("claimed")
    }

    #[test]
    fn off_by_default_and_every_name_gets_the_same_answer() {
        let off = on_demand("");
        assert!(!off.enabled());
        assert_eq!(
            refusal(off.claim("dc1", Only::default())),
            Refusal::Disabled
        );
        assert_eq!(
            refusal(off.claim("nope", Only::default())),
            Refusal::Disabled
        );
        assert_eq!(counted(&off, "disabled").as_deref(), Some("1"));
        assert!(
            !off.state.metrics.render().contains("probe=\"nope\""),
            "an unknown name became a label"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_runs_once_per_interval_and_never_twice_at_once() {
        let on = on_demand("on_demand: {enabled: true, min_interval: 10s}");
        assert_eq!(
            refusal(on.claim("nope", Only::default())),
            Refusal::UnknownProbe
        );
        assert_eq!(
            refusal(on.claim("dc1", netns(NetnsId::Host))),
            Refusal::NotInNamespace {
                probe: "dc1".into(),
                netns: NetnsId::Host
            }
        );
        let (targets, claim) = on.claim("dc1", netns(NetnsId::Pod)).unwrap();
        assert_eq!(targets.len(), 1);
        let limited = |retry_after| Refusal::RateLimited {
            probe: "dc1".into(),
            retry_after,
        };
        assert_eq!(
            refusal(on.claim("dc1", Only::default())),
            limited(Duration::from_secs(3))
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            refusal(on.claim("dc1", Only::default())),
            limited(Duration::from_secs(3)),
            "still running: refused whatever the interval"
        );
        drop(claim);
        let (_, claim) = on.claim("dc1", Only::default()).unwrap();
        drop(claim);
        tokio::time::advance(Duration::from_millis(8500)).await;
        assert_eq!(
            refusal(on.claim("dc1", Only::default())),
            limited(Duration::from_secs(2)),
            "1.5 s left rounds up"
        );
        assert_eq!(counted(&on, "rate_limited").as_deref(), Some("3"));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(on.claim("dc1", Only::default()).is_ok());
    }

    /// A probe with `family: both` runs a check per family in each namespace; `family` picks
    /// one, and asks nothing of a probe that is not split.
    #[test]
    fn a_split_probe_runs_by_family() {
        let on = on_demand("on_demand: {enabled: true}");
        apply(
            &on,
            "on_demand: {enabled: true}\nprobes: [{name: dual, tcp: {target: 'dual.corp.example:389', family: both}}, {name: dc1, tcp: {target: 'x:1'}}]",
        );
        let families = |only: Only| {
            let (targets, claim) = on.claim("dual", only).unwrap();
            drop(claim);
            on.inner().last_started.clear();
            targets
                .iter()
                .map(|t| (t.executor.id(), t.family))
                .collect::<Vec<_>>()
        };
        let (v4, v6) = (Some(Family::Ipv4), Some(Family::Ipv6));
        assert_eq!(
            families(Only::default()),
            [
                (NetnsId::Pod, v4),
                (NetnsId::Pod, v6),
                (NetnsId::Host, v4),
                (NetnsId::Host, v6)
            ]
        );
        let only = Only {
            netns: Some(NetnsId::Host),
            family: v6,
        };
        assert_eq!(families(only), [(NetnsId::Host, v6)]);
        let only = Only {
            netns: None,
            family: v6,
        };
        assert_eq!(
            refusal(on.claim("dc1", only)),
            Refusal::NotSplit {
                probe: "dc1".into(),
                family: Family::Ipv6
            }
        );
    }

    #[tokio::test]
    async fn a_probe_removed_by_a_reload_loses_its_series_and_its_limit() {
        let on = on_demand("on_demand: {enabled: true}");
        let (_, claim) = on.claim("dc1", Only::default()).unwrap();
        drop(claim);
        assert!(matches!(
            refusal(on.claim("dc1", Only::default())),
            Refusal::RateLimited { .. }
        ));
        assert_eq!(counted(&on, "rate_limited").as_deref(), Some("1"));
        apply(&on, "on_demand: {enabled: true}\nnetns: {pod: {}}\nprobes: [{name: other, tcp: {target: 'x:1'}}]");
        assert_eq!(counted(&on, "rate_limited"), None);
        assert_eq!(
            refusal(on.claim("dc1", Only::default())),
            Refusal::UnknownProbe
        );
    }
}
