//! From results to the node verdict: ok, fail or starting, each check's state, and diagnoses.

use std::sync::Arc;

use serde::Serialize;

pub use crate::diagnose::Diagnosis;
use crate::diagnose::{self, Code, Observed, Seen};
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

#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    pub probe: String,
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
    pub detail: String,
    /// When the check entered its current state (RFC 3339).
    pub since: Option<String>,
    pub last_success: Option<String>,
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

/// Judges the node: a pure function of the snapshot, which the agent calls once per change
/// and publishes (`AgentState::publish`), so reads never judge.
pub fn judge(snapshot: &Snapshot) -> Verdict {
    let checks: Vec<CheckView> = snapshot
        .checks
        .iter()
        .map(|(key, check)| {
            let last = check.last.as_ref();
            let standing = check.standing();
            let ok = last.is_some() && !check.failing;
            CheckView {
                probe: key.probe.clone(),
                kind: check.kind,
                netns: key.netns,
                family: key.family,
                ok,
                result: last.map_or(PENDING, |r| r.result),
                duration_seconds: last.map(|r| r.duration.as_secs_f64()),
                detail: last.map(|r| r.detail.clone()).unwrap_or_default(),
                since: check.since.map(rfc3339),
                last_success: check.last_success.map(rfc3339),
                state: standing.state.as_str(),
                consecutive_failures: standing.consecutive_failures,
                evidence: match ok {
                    true => Vec::new(),
                    false => snapshot.evidence.of(key),
                },
            }
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
    let observed: Vec<Observed> = snapshot
        .checks
        .iter()
        .map(|(key, check)| Observed {
            probe: &check.probe,
            netns: key.netns,
            split: key.family,
            seen: Seen::of(check),
            history: &check.history,
        })
        .collect();
    let diagnoses = diagnose::diagnose(&observed, snapshot.namespaces, snapshot.config_error);
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

fn rfc3339(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
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
            let probe = Arc::new(probe);
            for netns in probe.netns.clone() {
                results.declare(key(&probe.name, netns), probe.clone(), position);
            }
        }
        results
    }

    fn round(results: &mut Results, probe: &str, netns: NetnsId, ok: bool) {
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
        let took = Duration::from_millis(2);
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
            .map(|c| (c.probe.as_str(), c.netns, c.result))
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
        assert_eq!(ldap.detail, "connected");
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
        let dual = Arc::new(dual[0].clone());
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
                (c.probe.clone(), c.place(), family.unwrap_or_default())
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
        assert_eq!(gw.detail, "no answer within 2s");

        round(&mut results, "gw", Pod, true);
        let verdict = judged(&results, Some("probes[0]: bad"), true);
        assert_eq!(verdict.status, Status::Fail, "{verdict:?}");
        assert!(verdict.diagnosed(Code::ConfigReloadFailed), "{verdict:?}");
        assert!(!verdict.diagnosed(Code::OnpremUnreachable));
    }
}
