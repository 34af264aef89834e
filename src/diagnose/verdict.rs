//! From results to the node verdict: ok, fail or starting, each check's state, and diagnoses.

use serde::Serialize;

use crate::agent::state::AgentState;
pub use crate::diagnose::Diagnosis;
use crate::diagnose::{self, Code, Observed, Seen};
use crate::netns::NetnsId;

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
}

/// Judges the node from the current state, and publishes the diagnoses as
/// `hybridprobe_diagnosis`, so every scrape of `/metrics` sees the current ones.
pub fn judge(state: &AgentState) -> Verdict {
    let results = state.results();
    let in_order = results.in_order();
    let checks: Vec<CheckView> = in_order
        .iter()
        .map(|(key, check)| {
            let last = check.last.as_ref();
            CheckView {
                probe: key.probe.clone(),
                kind: check.kind,
                netns: key.netns,
                ok: last.is_some() && !check.failing,
                result: last.map_or(PENDING, |r| r.result),
                duration_seconds: last.map(|r| r.duration.as_secs_f64()),
                detail: last.map(|r| r.detail.clone()).unwrap_or_default(),
                since: check.since.map(rfc3339),
                last_success: check.last_success.map(rfc3339),
            }
        })
        .collect();
    let namespaces: Vec<NetnsView> = state
        .namespaces()
        .iter()
        .map(|ns| NetnsView {
            netns: ns.id,
            available: ns.unavailable.is_none(),
            reason: ns.unavailable.clone(),
        })
        .collect();
    let observed: Vec<Observed> = in_order
        .iter()
        .map(|(key, check)| Observed {
            probe: &check.probe,
            netns: key.netns,
            seen: Seen::of(check),
        })
        .collect();
    let diagnoses = diagnose::diagnose(
        &observed,
        &state.namespaces(),
        state.config_error().as_deref(),
    );
    drop(results);
    for code in Code::ALL {
        let active = diagnoses.iter().any(|d| d.code == code.as_str());
        state.metrics.set_diagnosis(code.as_str(), active);
    }
    let status = if !state.is_ready() {
        Status::Starting
    } else if checks.iter().all(|c| c.ok || c.result == PENDING) && diagnoses.is_empty() {
        Status::Ok
    } else {
        Status::Fail
    };
    Verdict {
        status,
        node: state.node.clone(),
        checks,
        namespaces,
        diagnoses,
    }
}

fn rfc3339(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}
