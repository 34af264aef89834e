//! `expect: blocked`: a check that proves segmentation passes while its target stays silent.

use serde::Deserialize;

use super::{Failure, Outcome, Reason};

/// Whether the target should answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    #[default]
    Reachable,
    /// The target must not be reachable from here (on-prem management ranges from pods, say).
    Blocked,
}

impl Expect {
    /// Judges a round against the expectation. For `blocked`, silence (a timeout, an
    /// unreachable network) and a refusal (a firewall's reject looks like a closed port, and
    /// either way nothing is served) pass; any answer fails as `not_blocked`; a round that
    /// could not test anything (a missing privilege, a name that did not resolve) keeps its
    /// own failure.
    pub fn judge(self, result: Result<Outcome, Failure>) -> Result<Outcome, Failure> {
        if self == Expect::Reachable {
            return result;
        }
        match result {
            Ok(outcome) => Err(Failure {
                detail: format!("expected blocked, but it answered: {}", outcome.detail),
                resolved: outcome.resolved,
                measurements: outcome.measurements,
                reason: Reason::NotBlocked,
            }),
            Err(failure) if blocks(failure.reason) => Ok(Outcome {
                detail: format!(
                    "blocked as expected ({}): {}",
                    failure.reason, failure.detail
                ),
                measurements: failure.measurements,
                resolved: failure.resolved,
            }),
            Err(failure) if failure.reason.answered() == Some(true) => Err(Failure {
                detail: format!(
                    "expected blocked, but it answered ({}): {}",
                    failure.reason, failure.detail
                ),
                reason: Reason::NotBlocked,
                ..failure
            }),
            Err(failure) => Err(failure),
        }
    }
}

/// The reasons that mean nothing got through.
fn blocks(reason: Reason) -> bool {
    reason.answered() == Some(false) || reason == Reason::Refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Measurements;

    fn failed(reason: Reason) -> Result<Outcome, Failure> {
        Err(Failure::new(reason, "tcp connect 198.19.99.1:22"))
    }

    fn reason(result: &Result<Outcome, Failure>) -> Option<Reason> {
        result.as_ref().err().map(|f| f.reason)
    }

    #[test]
    fn reachable_changes_nothing() {
        for result in [failed(Reason::Timeout), failed(Reason::HttpStatus)] {
            assert_eq!(Expect::Reachable.judge(result.clone()), result);
        }
    }

    #[test]
    fn blocked_passes_on_silence_and_refusal() {
        for silent in [Reason::Timeout, Reason::Unreachable, Reason::Refused] {
            let judged = Expect::Blocked.judge(failed(silent));
            let outcome = judged.expect("silence passes a blocked check");
            assert!(
                outcome.detail.starts_with("blocked as expected"),
                "{}",
                outcome.detail
            );
            assert!(outcome.detail.contains(silent.as_str()));
        }
    }

    #[test]
    fn blocked_fails_when_anything_answers() {
        let ok = Ok(Outcome::new(
            "connected to 198.19.99.1:22",
            Measurements::None,
        ));
        let judged = Expect::Blocked.judge(ok);
        assert_eq!(reason(&judged), Some(Reason::NotBlocked));
        assert!(judged
            .unwrap_err()
            .detail
            .contains("connected to 198.19.99.1:22"));
        for answered in [
            Reason::Reset,
            Reason::HttpStatus,
            Reason::TlsUntrusted,
            Reason::Nxdomain,
        ] {
            assert_eq!(
                reason(&Expect::Blocked.judge(failed(answered))),
                Some(Reason::NotBlocked),
                "{answered}"
            );
        }
    }

    #[test]
    fn blocked_keeps_failures_that_tested_nothing() {
        for local in [
            Reason::PermissionDenied,
            Reason::ResolveFailed,
            Reason::NetnsUnavailable,
        ] {
            assert_eq!(reason(&Expect::Blocked.judge(failed(local))), Some(local));
        }
    }
}
