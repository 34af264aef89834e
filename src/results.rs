//! Recent results per check (a probe in one namespace): the last round, when the state last
//! changed, the last success, and a short history for people to read.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use crate::netns::NetnsId;
use crate::probe::{result_label, Failure, Outcome};

/// How many past rounds each check keeps.
pub const HISTORY: usize = 30;

/// A check is one probe in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CheckKey {
    pub probe: String,
    pub netns: NetnsId,
}

/// The latest finished round, in full.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub ok: bool,
    /// `success` or the failure reason: the `result` label.
    pub result: &'static str,
    pub detail: String,
    pub duration: Duration,
    pub at: SystemTime,
}

/// A past round, kept small: a check keeps [`HISTORY`] of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub ok: bool,
    pub result: &'static str,
    pub duration: Duration,
    pub at: SystemTime,
}

/// Everything known about one check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckState {
    pub kind: &'static str,
    /// The order of the probe in config, so reports follow the config file.
    pub position: usize,
    pub last: Option<Round>,
    /// When the check entered its current state (passing or failing).
    pub since: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    pub history: VecDeque<Sample>,
}

/// The results of every configured check.
#[derive(Debug, Default)]
pub struct Results {
    checks: BTreeMap<CheckKey, CheckState>,
}

impl Results {
    /// Starts tracking a check that has not run yet.
    pub fn declare(&mut self, key: CheckKey, kind: &'static str, position: usize) {
        self.checks.insert(
            key,
            CheckState {
                kind,
                position,
                last: None,
                since: None,
                last_success: None,
                history: VecDeque::with_capacity(HISTORY),
            },
        );
    }

    /// Records a round; returns true when it changed the check's state (pass to fail or back).
    pub fn record(
        &mut self,
        key: &CheckKey,
        result: &Result<Outcome, Failure>,
        duration: Duration,
        at: SystemTime,
    ) -> bool {
        let Some(state) = self.checks.get_mut(key) else {
            return false;
        };
        let round = Round {
            ok: result.is_ok(),
            result: result_label(result),
            detail: match result {
                Ok(outcome) => outcome.detail.clone(),
                Err(failure) => failure.detail.clone(),
            },
            duration,
            at,
        };
        let changed = state.last.as_ref().is_some_and(|last| last.ok != round.ok);
        if changed || state.last.is_none() {
            state.since = Some(at);
        }
        if round.ok {
            state.last_success = Some(at);
        }
        if state.history.len() == HISTORY {
            state.history.pop_front();
        }
        state.history.push_back(Sample {
            ok: round.ok,
            result: round.result,
            duration,
            at,
        });
        state.last = Some(round);
        changed
    }

    /// True once every check has finished at least one round.
    pub fn all_reported(&self) -> bool {
        self.checks.values().all(|s| s.last.is_some())
    }

    /// Checks in config order, pod before host for each probe.
    pub fn in_order(&self) -> Vec<(&CheckKey, &CheckState)> {
        let mut all: Vec<_> = self.checks.iter().collect();
        all.sort_by_key(|(key, state)| (state.position, key.netns));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Reason, Report};

    fn key() -> CheckKey {
        CheckKey {
            probe: "dc1".into(),
            netns: NetnsId::Pod,
        }
    }

    fn ok() -> Result<Outcome, Failure> {
        Ok(Outcome {
            detail: "fine".into(),
            report: Report::None,
        })
    }

    fn failed() -> Result<Outcome, Failure> {
        Err(Failure::new(Reason::Refused, "connect: refused"))
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn state_changes_and_since_follow_pass_fail_transitions() {
        let mut results = Results::default();
        results.declare(key(), "tcp", 0);
        assert!(!results.all_reported());
        let d = Duration::from_millis(1);
        assert!(
            !results.record(&key(), &ok(), d, at(1)),
            "the first round is no change"
        );
        assert!(results.all_reported());
        assert!(!results.record(&key(), &ok(), d, at(2)));
        assert!(results.record(&key(), &failed(), d, at(3)));
        assert!(!results.record(&key(), &failed(), d, at(4)));
        let (_, state) = results.in_order()[0];
        assert_eq!(state.since, Some(at(3)));
        assert_eq!(state.last_success, Some(at(2)));
        assert_eq!(state.last.as_ref().unwrap().result, "refused");
        assert!(results.record(&key(), &ok(), d, at(5)));
    }

    #[test]
    fn history_is_bounded() {
        let mut results = Results::default();
        results.declare(key(), "tcp", 0);
        for i in 0..(HISTORY as u64 + 10) {
            results.record(&key(), &ok(), Duration::ZERO, at(i));
        }
        let (_, state) = results.in_order()[0];
        assert_eq!(state.history.len(), HISTORY);
        assert_eq!(state.history.front().unwrap().at, at(10));
    }

    #[test]
    fn order_follows_config_then_namespace() {
        let mut results = Results::default();
        let k = |probe: &str, netns| CheckKey {
            probe: probe.into(),
            netns,
        };
        results.declare(k("zeta", NetnsId::Host), "tcp", 0);
        results.declare(k("alpha", NetnsId::Host), "tcp", 1);
        results.declare(k("zeta", NetnsId::Pod), "tcp", 0);
        let order: Vec<_> = results
            .in_order()
            .into_iter()
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(
            order,
            vec![
                k("zeta", NetnsId::Pod),
                k("zeta", NetnsId::Host),
                k("alpha", NetnsId::Host)
            ]
        );
    }
}
