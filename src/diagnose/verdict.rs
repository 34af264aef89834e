//! From results to the node verdict: ok, fail or starting, each check's state, and diagnoses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::ProbeConfig;
pub use crate::diagnose::Diagnosis;
use crate::diagnose::{self, Code, Observed, Reading, Seen};
use crate::evidence::{Capture, Store};
use crate::netns::{NetnsId, NetnsStatus};
use crate::probe::resolver::Family;
use crate::results::{CheckKey, CheckState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Fail,
    /// The first round has not finished yet.
    Starting,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "fail",
            Status::Starting => "starting",
        }
    }
}

/// The node's verdict: the body of `/healthz` and the `check` command's report.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub status: Status,
    pub node: String,
    pub checks: Vec<CheckView>,
    pub namespaces: Vec<NetnsView>,
    pub diagnoses: Vec<Diagnosis>,
}

/// Its strings are shared, not owned: the agent publishes a verdict up to ten times a second,
/// and a check's part of it changes only with the check's rounds.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    pub probe: Arc<str>,
    pub kind: &'static str,
    pub netns: NetnsId,
    /// `ipv4` or `ipv6` for a check of a probe split by `family: both`; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// The check's state after flap damping; false until its first round.
    pub ok: bool,
    /// The last round's result: `success`, a failure reason, or `pending` before the first.
    /// With flap damping it may disagree with `ok` for a few rounds.
    pub result: &'static str,
    pub duration_seconds: Option<f64>,
    pub detail: Arc<str>,
    /// When the check entered its current state (RFC 3339).
    pub since: Option<Arc<str>>,
    pub last_success: Option<Arc<str>>,
    /// The state over recent rounds against the probe's thresholds: `pass`, `warning`,
    /// `fail`, or `unknown` before enough rounds ran.
    pub state: &'static str,
    pub consecutive_failures: u32,
    /// Evidence captured when the check turned failing, newest first; only while it fails.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Arc<Capture>>,
}

impl CheckView {
    /// Where the check runs, for people: its namespace, and its family when split
    /// (`pod/ipv6`).
    pub fn place(&self) -> String {
        match self.family {
            Some(family) => format!("{}/{family}", self.netns),
            None => self.netns.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NetnsView {
    pub netns: NetnsId,
    pub available: bool,
    pub reason: Option<String>,
}

/// The result of a check that has not finished a round: one added by a reload does not fail
/// the node before it has run.
const PENDING: &str = "pending";

impl Verdict {
    pub fn failing(&self) -> usize {
        self.checks.iter().filter(|c| !c.ok).count()
    }

    /// Whether the diagnosis `code` holds: the value of its `hybridprobe_diagnosis` series.
    pub fn diagnosed(&self, code: Code) -> bool {
        self.diagnoses.iter().any(|d| d.code == code.as_str())
    }
}

/// Everything a verdict is judged from, as the agent knows it at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// The node the agent reports for.
    pub node: &'a str,
    /// Every check's results, in report order (config order, pod before host).
    pub checks: &'a [(&'a CheckKey, &'a CheckState)],
    /// Which namespaces the executors could enter.
    pub namespaces: &'a [NetnsStatus],
    /// Why the newest config file was rejected; `None` when it is the one running.
    pub config_error: Option<&'a str>,
    /// True once every check finished its first round.
    pub ready: bool,
    /// The evidence captured for each check.
    pub evidence: &'a Store,
}

/// Judges the node: a pure function of the snapshot, which tests and the `check` command call
/// once. The agent keeps a [`Judge`] instead, which gives the same verdict for less work.
pub fn judge(snapshot: &Snapshot) -> Verdict {
    Judge::default().judge(snapshot)
}

/// Judges verdicts one after another, keeping what it judged of each check until that check
/// changes: a check's part of the verdict is made once per round of it, not once per verdict,
/// and the diagnoses are made again only when a check reads differently to them ([`Reading`]),
/// a check comes or goes, or a namespace or the config's outcome changed. The agent judges
/// after every burst of rounds, so without this each check would be judged again for every
/// other check's round. Each verdict is the one [`judge`] gives for the same snapshot.
#[derive(Default)]
pub struct Judge {
    /// In the order of the last snapshot, which is the next one's unless checks were applied:
    /// then each check is found by its key, else by its place, which costs no hashing.
    checks: Vec<(CheckKey, Judged)>,
    diagnosed: Option<(Inputs, Vec<Diagnosis>)>,
}

/// What was judged of one check, from its state of `generation`.
struct Judged {
    generation: u64,
    /// Its part of the verdict, less its evidence, which is captured apart from its rounds.
    view: CheckView,
    /// What `view.since` was written from: while it stays, the text is kept.
    since: Option<SystemTime>,
    reading: Reading,
}

/// What the diagnoses were made from.
struct Inputs {
    checks: Vec<Read>,
    namespaces: Vec<NetnsStatus>,
    config_error: Option<String>,
}

/// A check as the diagnoses read it.
struct Read {
    probe: Arc<ProbeConfig>,
    netns: NetnsId,
    family: Option<Family>,
    reading: Reading,
}

impl Inputs {
    /// The inputs of `snapshot`, whose checks are judged in `checks`, in its order.
    fn of(checks: &[(CheckKey, Judged)], snapshot: &Snapshot) -> Inputs {
        Inputs {
            checks: checks
                .iter()
                .zip(snapshot.checks)
                .map(|((key, judged), (_, check))| Read {
                    probe: check.probe.clone(),
                    netns: key.netns,
                    family: key.family,
                    reading: judged.reading.clone(),
                })
                .collect(),
            namespaces: snapshot.namespaces.to_vec(),
            config_error: snapshot.config_error.map(str::to_owned),
        }
    }

    /// Whether [`Inputs::of`] would give the same inputs, told without making them: this is
    /// asked at every publish, and the answer is mostly yes.
    fn same(&self, checks: &[(CheckKey, Judged)], snapshot: &Snapshot) -> bool {
        self.checks.len() == checks.len()
            && self
                .checks
                .iter()
                .zip(checks.iter().zip(snapshot.checks))
                .all(|(read, ((key, judged), (_, check)))| {
                    // The same probe is mostly the same allocation, which spares comparing it
                    // in full.
                    (Arc::ptr_eq(&read.probe, &check.probe) || read.probe == check.probe)
                        && read.netns == key.netns
                        && read.family == key.family
                        && read.reading == judged.reading
                })
            && self.namespaces == snapshot.namespaces
            && self.config_error.as_deref() == snapshot.config_error
    }
}

impl Judge {
    pub fn judge(&mut self, snapshot: &Snapshot) -> Verdict {
        self.update(snapshot);
        let checks: Vec<CheckView> = self
            .checks
            .iter()
            .map(|(key, judged)| {
                let mut view = judged.view.clone();
                if !view.ok {
                    view.evidence = snapshot.evidence.of(key);
                }
                view
            })
            .collect();
        let namespaces: Vec<NetnsView> = snapshot
            .namespaces
            .iter()
            .map(|ns| NetnsView {
                netns: ns.id,
                available: ns.unavailable.is_none(),
                reason: ns.unavailable.clone(),
            })
            .collect();
        let diagnoses = self.diagnoses(snapshot);
        let status = if !snapshot.ready {
            Status::Starting
        } else if checks.iter().all(|c| c.ok || c.result == PENDING) && diagnoses.is_empty() {
            Status::Ok
        } else {
            Status::Fail
        };
        Verdict {
            status,
            node: snapshot.node.to_owned(),
            checks,
            namespaces,
            diagnoses,
        }
    }

    /// Judges again each check of the snapshot that changed since it was last judged, and
    /// puts them in the snapshot's order.
    fn update(&mut self, snapshot: &Snapshot) {
        let same_checks = self.checks.len() == snapshot.checks.len()
            && self
                .checks
                .iter()
                .zip(snapshot.checks)
                .all(|((known, _), (key, _))| known == *key);
        if same_checks {
            for ((_, judged), (key, check)) in self.checks.iter_mut().zip(snapshot.checks) {
                if judged.generation != check.generation() {
                    *judged = Judged::of(key, check, Some(judged));
                }
            }
            return;
        }
        let mut known: HashMap<CheckKey, Judged> = self.checks.drain(..).collect();
        self.checks = snapshot
            .checks
            .iter()
            .map(|(key, check)| {
                let judged = match known.remove(*key) {
                    Some(judged) if judged.generation == check.generation() => judged,
                    before => Judged::of(key, check, before.as_ref()),
                };
                ((*key).clone(), judged)
            })
            .collect();
    }

    /// The diagnoses of the snapshot: the last ones if they were made from the same inputs.
    fn diagnoses(&mut self, snapshot: &Snapshot) -> Vec<Diagnosis> {
        if let Some((known, diagnoses)) = &self.diagnosed {
            if known.same(&self.checks, snapshot) {
                return diagnoses.clone();
            }
        }
        let inputs = Inputs::of(&self.checks, snapshot);
        let observed: Vec<Observed> = snapshot
            .checks
            .iter()
            .map(|(key, check)| observed(key, check))
            .collect();
        let diagnoses = diagnose::diagnose(&observed, snapshot.namespaces, snapshot.config_error);
        self.diagnosed = Some((inputs, diagnoses.clone()));
        diagnoses
    }
}

impl Judged {
    /// Judges `check`; `before` is what was judged of it last, whose texts are kept where
    /// they read the same, so that an unchanged check's view costs no new allocation.
    fn of(key: &CheckKey, check: &CheckState, before: Option<&Judged>) -> Judged {
        let last = check.last.as_ref();
        let standing = check.standing();
        let before_view = before.map(|b| &b.view);
        let since = match before {
            Some(b) if b.since == check.since => b.view.since.clone(),
            _ => check.since.map(rfc3339),
        };
        let view = CheckView {
            probe: kept(before_view.map(|v| &v.probe), &key.probe),
            kind: check.kind,
            netns: key.netns,
            family: key.family,
            ok: last.is_some() && !check.failing,
            result: last.map_or(PENDING, |r| r.result),
            duration_seconds: last.map(|r| r.duration.as_secs_f64()),
            detail: kept(
                before_view.map(|v| &v.detail),
                last.map_or("", |r| &r.detail),
            ),
            since,
            last_success: check.last_success.map(rfc3339),
            state: standing.state.as_str(),
            consecutive_failures: standing.consecutive_failures,
            evidence: Vec::new(),
        };
        Judged {
            generation: check.generation(),
            view,
            since: check.since,
            reading: Reading::of(&observed(key, check)),
        }
    }
}

/// `text`, shared with `before` when that reads the same.
fn kept(before: Option<&Arc<str>>, text: &str) -> Arc<str> {
    match before {
        Some(before) if **before == *text => before.clone(),
        _ => Arc::from(text),
    }
}

fn observed<'a>(key: &CheckKey, check: &'a CheckState) -> Observed<'a> {
    Observed {
        probe: &check.probe,
        netns: key.netns,
        split: key.family,
        seen: Seen::of(check),
        history: &check.history,
    }
}

fn rfc3339(at: SystemTime) -> Arc<str> {
    humantime::format_rfc3339_seconds(at).to_string().into()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::Config;
    use crate::probe::{Failure, Measurements, Outcome, Reason};
    use crate::results::{Damping, Results};
    use NetnsId::{Host, Pod};

    const CONFIG: &str = r#"
netns: { pod: {}, host: { path: /nonexistent } }
probes:
  - { name: ldap, tcp: { target: "198.19.10.1:389" } }
  - { name: gw, netns: [pod], icmp: { target: gateway } }
"#;

    fn key(probe: &str, netns: NetnsId) -> CheckKey {
        CheckKey {
            probe: probe.into(),
            netns,
            family: None,
        }
    }

    /// Results for the checks of [`CONFIG`], none of which has run.
    fn declared() -> Results {
        let mut results = Results::default();
        let probes = Config::parse(CONFIG, &|_| None).unwrap().probes;
        for (position, probe) in probes.into_iter().enumerate() {
            for netns in probe.netns.clone() {
                results.declare(key(&probe.name, netns), probe.clone(), position);
            }
        }
        results
    }

    fn round(results: &mut Results, probe: &str, netns: NetnsId, ok: bool) {
        timed_round(results, probe, netns, ok, Duration::from_millis(2));
    }

    fn timed_round(results: &mut Results, probe: &str, netns: NetnsId, ok: bool, took: Duration) {
        let result = if ok {
            Ok(Outcome {
                detail: "connected".into(),
                measurements: Measurements::None,
                resolved: None,
            })
        } else {
            Err(Failure::new(Reason::Timeout, "no answer within 2s"))
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let damping = Damping {
            fail_after: 1,
            recover_after: 1,
        };
        results.record(&key(probe, netns), &result, took, at, damping);
    }

    fn namespaces() -> Vec<NetnsStatus> {
        [Pod, Host]
            .map(|id| NetnsStatus {
                id,
                unavailable: None,
            })
            .to_vec()
    }

    fn judged(results: &Results, config_error: Option<&str>, ready: bool) -> Verdict {
        let namespaces = namespaces();
        judge(&Snapshot {
            node: "node-1",
            checks: &results.in_order(),
            namespaces: &namespaces,
            config_error,
            ready,
            evidence: &Store::default(),
        })
    }

    #[test]
    fn a_node_is_starting_until_ready_then_ok_when_every_check_passes() {
        let mut results = declared();
        let verdict = judged(&results, None, false);
        assert_eq!(verdict.status, Status::Starting);
        assert_eq!(verdict.node, "node-1");
        let order: Vec<(&str, NetnsId, &str)> = verdict
            .checks
            .iter()
            .map(|c| (&*c.probe, c.netns, c.result))
            .collect();
        assert_eq!(
            order,
            [
                ("ldap", Pod, PENDING),
                ("ldap", Host, PENDING),
                ("gw", Pod, PENDING)
            ],
            "config order, pod before host"
        );
        for (probe, netns) in [("ldap", Pod), ("ldap", Host), ("gw", Pod)] {
            round(&mut results, probe, netns, true);
        }
        let verdict = judged(&results, None, true);
        assert_eq!(verdict.status, Status::Ok, "{verdict:?}");
        assert_eq!(verdict.failing(), 0);
        assert!(verdict.diagnoses.is_empty());
        let ldap = &verdict.checks[0];
        assert_eq!((ldap.ok, ldap.result), (true, "success"));
        assert_eq!(&*ldap.detail, "connected");
        assert_eq!(ldap.since.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_eq!(verdict.namespaces.len(), 2);
    }

    /// The two checks of a `family: both` probe are entries of their own that say their
    /// family; no other entry has one.
    #[test]
    fn a_split_probe_has_an_entry_per_family() {
        let mut results = declared();
        let dual = Config::parse(
            "probes: [{name: dual, netns: [pod], tcp: {target: 'dual.corp.example:389', family: both}}]",
            &|_| None,
        )
        .unwrap()
        .probes;
        let dual = dual[0].clone();
        for family in Family::SPLIT {
            let key = CheckKey {
                family: Some(family),
                ..key("dual", Pod)
            };
            results.declare(key, dual.clone(), 2);
        }
        let verdict = judged(&results, None, false);
        let json = serde_json::to_value(&verdict).unwrap();
        let entries: Vec<(String, String, String)> = verdict
            .checks
            .iter()
            .zip(json["checks"].as_array().unwrap())
            .map(|(c, j)| {
                let family = j.get("family").map(ToString::to_string);
                (c.probe.to_string(), c.place(), family.unwrap_or_default())
            })
            .collect();
        let entry = |probe: &str, place: &str, family: &str| {
            (probe.to_owned(), place.to_owned(), family.to_owned())
        };
        assert_eq!(
            entries,
            [
                entry("ldap", "pod", ""),
                entry("ldap", "host", ""),
                entry("gw", "pod", ""),
                entry("dual", "pod/ipv4", r#""ipv4""#),
                entry("dual", "pod/ipv6", r#""ipv6""#),
            ]
        );
    }

    #[test]
    fn a_failing_check_or_a_rejected_config_fails_the_node_a_pending_check_does_not() {
        let mut results = declared();
        round(&mut results, "ldap", Pod, true);
        round(&mut results, "ldap", Host, true);
        // `gw` was added by a reload and has not run: it does not fail the node.
        let verdict = judged(&results, None, true);
        assert_eq!(verdict.status, Status::Ok, "{verdict:?}");
        assert_eq!(verdict.failing(), 1, "pending counts as not ok");

        round(&mut results, "gw", Pod, false);
        let verdict = judged(&results, None, true);
        assert_eq!(verdict.status, Status::Fail);
        let gw = &verdict.checks[2];
        assert_eq!((gw.ok, gw.result), (false, "timeout"));
        assert_eq!(&*gw.detail, "no answer within 2s");

        round(&mut results, "gw", Pod, true);
        let verdict = judged(&results, Some("probes[0]: bad"), true);
        assert_eq!(verdict.status, Status::Fail, "{verdict:?}");
        assert!(verdict.diagnosed(Code::ConfigReloadFailed), "{verdict:?}");
        assert!(!verdict.diagnosed(Code::OnpremUnreachable));
    }

    /// Judges with the kept judge and a fresh one; they must agree.
    fn agree(kept: &mut Judge, results: &Results, config_error: Option<&str>) -> Verdict {
        let namespaces = namespaces();
        let snapshot = Snapshot {
            node: "node-1",
            checks: &results.in_order(),
            namespaces: &namespaces,
            config_error,
            ready: true,
            evidence: &Store::default(),
        };
        let verdict = kept.judge(&snapshot);
        assert_eq!(format!("{verdict:?}"), format!("{:?}", judge(&snapshot)));
        verdict
    }

    #[test]
    fn a_kept_judge_gives_the_verdict_a_fresh_one_gives() {
        let mut results = declared();
        let mut kept = Judge::default();
        agree(&mut kept, &results, None);
        // Round trips that rise on two tcp checks while they pass: only the history changes.
        for took in [2, 2, 2, 2, 2, 2, 2, 50, 50, 50] {
            for netns in [Pod, Host] {
                timed_round(
                    &mut results,
                    "ldap",
                    netns,
                    true,
                    Duration::from_millis(took),
                );
                agree(&mut kept, &results, None);
            }
        }
        let slower = agree(&mut kept, &results, None);
        assert!(slower.diagnosed(Code::PathSlower), "{slower:?}");
        round(&mut results, "gw", Pod, false);
        assert_eq!(agree(&mut kept, &results, None).checks[2].result, "timeout");
        let rejected = agree(&mut kept, &results, Some("probes[0]: bad"));
        assert!(rejected.diagnosed(Code::ConfigReloadFailed));
        assert!(!agree(&mut kept, &results, None).diagnosed(Code::ConfigReloadFailed));
        round(&mut results, "gw", Pod, true);
        agree(&mut kept, &results, None);
        // A check removed, then declared again under the same name: judged afresh.
        results.remove(&key("gw", Pod));
        assert_eq!(agree(&mut kept, &results, None).checks.len(), 2);
        let probes = Config::parse(CONFIG, &|_| None).unwrap().probes;
        results.declare(key("gw", Pod), probes[1].clone(), 1);
        assert_eq!(agree(&mut kept, &results, None).checks[2].result, PENDING);
    }
}
