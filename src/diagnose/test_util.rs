//! Verdict parts for the tests of the modules that render a verdict (the text table here, the
//! status page in `http`).

use crate::diagnose::verdict::CheckView;
use crate::netns::NetnsId;

/// A check that ran: 1.2ms when it passes, 2s when it fails.
pub(crate) fn check(
    probe: &str,
    netns: NetnsId,
    ok: bool,
    result: &'static str,
    detail: &str,
) -> CheckView {
    CheckView {
        probe: probe.into(),
        kind: "tcp",
        netns,
        family: None,
        ok,
        result,
        duration_seconds: Some(if ok { 0.0012 } else { 2.0 }),
        detail: detail.into(),
        since: Some("2026-11-26T03:00:00Z".into()),
        last_success: None,
        state: if ok { "pass" } else { "fail" },
        consecutive_failures: u32::from(!ok),
        evidence: Vec::new(),
    }
}
