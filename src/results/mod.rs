//! Recent results per check (a probe in one namespace, and family when split): the last round,
//! the check's state with flap damping, when that state last changed, the last success, and a
//! short history.

mod history;
mod state;

pub use history::History;
pub use state::{median_round_trip, TargetState};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{ProbeConfig, MAX_WINDOW};
use crate::netns::NetnsId;
use crate::probe::resolver::Family;
use crate::probe::{result_label, CheckLabels, Failure, Outcome};

/// How many past rounds each check keeps.
pub const HISTORY: usize = 30;
const _: () = assert!(
    HISTORY >= MAX_WINDOW,
    "a state's window must fit in the history"
);

/// A check is one probe in one namespace, and over one address family when the probe is split
/// (`family: both`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckKey {
    pub probe: String,
    pub netns: NetnsId,
    /// `ipv4` or `ipv6` for a check of a split probe, `None` for the one check of any other.
    pub family: Option<Family>,
}

impl CheckKey {
    /// The labels that name the check in its series.
    pub fn labels(&self) -> CheckLabels<'_> {
        CheckLabels {
            probe: &self.probe,
            netns: self.netns,
            family: self.family_label(),
        }
    }

    /// The `family` label: `ipv4`, `ipv6`, or empty for a check that is not split.
    pub fn family_label(&self) -> &'static str {
        Family::label(self.family)
    }
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

/// A past round, as [`History`] gives it back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub ok: bool,
    pub result: &'static str,
    pub duration: Duration,
    /// What the kind measured as the round trip (an echo's average RTT), else the duration.
    pub round_trip: Duration,
    /// The share of the round's packets lost, for kinds that send several (`icmp`).
    pub loss: Option<f64>,
    pub at: SystemTime,
}

/// Everything known about one check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckState {
    pub kind: &'static str,
    /// The probe as configured: what the diagnoses compare (targets, servers, policies).
    pub probe: Arc<ProbeConfig>,
    /// The order of the probe in config, so reports follow the config file.
    pub position: usize,
    pub last: Option<Round>,
    /// The damped state: a check fails after `fail_after` failed rounds in a row and recovers
    /// after `recover_after` passing ones. The first round sets it directly.
    pub failing: bool,
    /// Rounds in a row with the same outcome as the last one.
    pub streak: u32,
    /// When the check entered its current state (passing or failing).
    pub since: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    /// The latest failed round, kept after passing rounds: while flap damping still counts the
    /// check as failing, it is the evidence the diagnoses read.
    pub last_failure: Option<Failure>,
    pub history: History,
    /// Judged once per round, when the history changes, for the metrics and the verdict alike.
    standing: Standing,
    /// Changes with every round, and differs between any two states the results ever held:
    /// what a reader that keeps something judged from this state compares to reuse it.
    generation: u64,
}

/// Where a check stands after its latest round, beyond that round: what the per-check state
/// series and alerts read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub state: TargetState,
    /// Failed rounds in a row up to the latest; 0 when the latest passed.
    pub consecutive_failures: u32,
}

impl CheckState {
    pub fn standing(&self) -> Standing {
        self.standing
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn judge_standing(&self) -> Standing {
        Standing {
            state: TargetState::judge(&self.history, &self.probe.thresholds),
            consecutive_failures: match &self.last {
                Some(last) if !last.ok => self.streak,
                _ => 0,
            },
        }
    }
}

/// How many rounds in a row it takes to change a check's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damping {
    pub fail_after: u32,
    pub recover_after: u32,
}

/// What a round did to the check's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Failed,
    /// Back to passing after failing for `outage`.
    Recovered {
        outage: Duration,
    },
}

/// What recording a round did: a round's recorder needs the check's new state too, and one
/// lookup of it is enough.
#[derive(Debug)]
pub struct Recorded<'a> {
    pub transition: Transition,
    /// The check's first round.
    pub first: bool,
    pub state: &'a CheckState,
}

/// Where a check goes in the report order: by its probe's place in the config, pod before
/// host, and the checks of a split probe by their keys.
fn place<'a>(key: &'a CheckKey, state: &CheckState) -> (usize, NetnsId, &'a CheckKey) {
    (state.position, key.netns, key)
}

/// The results of every configured check.
#[derive(Debug, Default)]
pub struct Results {
    /// Every check in report order (config order, pod before host, then by key): each publish
    /// reads them all in that order, so they are kept in it rather than sorted for it.
    checks: Vec<(CheckKey, CheckState)>,
    /// Where each check is in `checks`: every round looks its check up.
    index: HashMap<CheckKey, usize>,
    /// The last generation handed out (see [`CheckState::generation`]).
    generation: u64,
}

impl Results {
    /// Starts tracking a check that has not run yet; a known check only moves to `position`.
    pub fn declare(&mut self, key: CheckKey, probe: Arc<ProbeConfig>, position: usize) {
        if let Some(&at) = self.index.get(&key) {
            if self.checks[at].1.position != position {
                let (key, mut state) = self.take(at);
                state.position = position;
                self.insert(key, state);
            }
            return;
        }
        let generation = self.next_generation();
        self.insert(
            key,
            CheckState {
                kind: probe.kind.name(),
                probe,
                position,
                last: None,
                failing: false,
                streak: 0,
                since: None,
                last_success: None,
                last_failure: None,
                history: History::default(),
                standing: Standing {
                    state: TargetState::Unknown,
                    consecutive_failures: 0,
                },
                generation,
            },
        );
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Forgets a check that is no longer configured.
    pub fn remove(&mut self, key: &CheckKey) {
        if let Some(&at) = self.index.get(key) {
            self.take(at);
        }
    }

    /// Puts a check in its place in the report order.
    fn insert(&mut self, key: CheckKey, state: CheckState) {
        let wanted = place(&key, &state);
        let at = self
            .checks
            .partition_point(|(known, known_state)| place(known, known_state) < wanted);
        self.index.insert(key.clone(), at);
        self.checks.insert(at, (key, state));
        self.reindex(at + 1);
    }

    /// Takes the check at `at` out of the results.
    fn take(&mut self, at: usize) -> (CheckKey, CheckState) {
        let (key, state) = self.checks.remove(at);
        self.index.remove(&key);
        self.reindex(at);
        (key, state)
    }

    /// Notes where the checks from `from` on are, after one was put in or taken out before.
    fn reindex(&mut self, from: usize) {
        for (at, (key, _)) in self.checks.iter().enumerate().skip(from) {
            if let Some(known) = self.index.get_mut(key) {
                *known = at;
            }
        }
    }

    /// Records a round and says what it did to the check's state; `None` for an unknown check.
    pub fn record(
        &mut self,
        key: &CheckKey,
        result: &Result<Outcome, Failure>,
        duration: Duration,
        at: SystemTime,
        damping: Damping,
    ) -> Option<Recorded<'_>> {
        let generation = self.next_generation();
        let state = &mut self.checks[*self.index.get(key)?].1;
        state.generation = generation;
        let ok = result.is_ok();
        state.streak = match &state.last {
            Some(last) if last.ok == ok => state.streak.saturating_add(1),
            _ => 1,
        };
        let first = state.last.is_none();
        let transition = if first {
            state.failing = !ok;
            state.since = Some(at);
            Transition::None
        } else if state.failing && ok && state.streak >= damping.recover_after {
            let started = state.since.unwrap_or(at);
            state.failing = false;
            state.since = Some(at);
            Transition::Recovered {
                outage: at.duration_since(started).unwrap_or_default(),
            }
        } else if !state.failing && !ok && state.streak >= damping.fail_after {
            state.failing = true;
            state.since = Some(at);
            Transition::Failed
        } else {
            Transition::None
        };
        match result {
            Ok(_) => state.last_success = Some(at),
            Err(failure) => state.last_failure = Some(failure.clone()),
        }
        let measurements = match result {
            Ok(outcome) => &outcome.measurements,
            Err(failure) => &failure.measurements,
        };
        state.history.push(Sample {
            ok,
            result: result_label(result),
            duration,
            round_trip: measurements.round_trip().unwrap_or(duration),
            loss: measurements.loss(),
            at,
        });
        state.last = Some(Round {
            ok,
            result: result_label(result),
            detail: match result {
                Ok(outcome) => outcome.detail.clone(),
                Err(failure) => failure.detail.clone(),
            },
            duration,
            at,
        });
        state.standing = state.judge_standing();
        Some(Recorded {
            transition,
            first,
            state,
        })
    }

    pub fn get(&self, key: &CheckKey) -> Option<&CheckState> {
        self.index.get(key).map(|&at| &self.checks[at].1)
    }

    pub fn standing(&self, key: &CheckKey) -> Option<Standing> {
        self.get(key).map(CheckState::standing)
    }

    /// True once every check has finished at least one round.
    pub fn all_reported(&self) -> bool {
        self.checks.iter().all(|(_, s)| s.last.is_some())
    }

    /// Checks in config order, pod before host for each probe.
    pub fn in_order(&self) -> Vec<(&CheckKey, &CheckState)> {
        self.checks
            .iter()
            .map(|(key, state)| (key, state))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Measurements, Reason};

    fn key() -> CheckKey {
        CheckKey {
            probe: "dc1".into(),
            netns: NetnsId::Pod,
            family: None,
        }
    }

    fn tcp() -> Arc<ProbeConfig> {
        let config = crate::config::Config::parse(
            "probes: [{name: dc1, tcp: {target: '198.19.10.1:389'}}]",
            &|_| None,
        )
        .unwrap();
        config.probes[0].clone()
    }

    fn ok() -> Result<Outcome, Failure> {
        Ok(Outcome {
            detail: "fine".into(),
            measurements: Measurements::None,
            resolved: None,
        })
    }

    fn failed() -> Result<Outcome, Failure> {
        Err(Failure::new(Reason::Refused, "connect: refused"))
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    const IMMEDIATE: Damping = Damping {
        fail_after: 1,
        recover_after: 1,
    };

    #[test]
    fn state_changes_and_since_follow_pass_fail_transitions() {
        let mut results = Results::default();
        results.declare(key(), tcp(), 0);
        assert!(!results.all_reported());
        let d = Duration::from_millis(1);
        let mut record = |r: &Result<Outcome, Failure>, t| {
            results
                .record(&key(), r, d, at(t), IMMEDIATE)
                .unwrap()
                .transition
        };
        assert_eq!(
            record(&ok(), 1),
            Transition::None,
            "the first round is no change"
        );
        assert_eq!(record(&ok(), 2), Transition::None);
        assert_eq!(record(&failed(), 3), Transition::Failed);
        assert_eq!(record(&failed(), 4), Transition::None);
        assert_eq!(
            record(&ok(), 7),
            Transition::Recovered {
                outage: Duration::from_secs(4)
            }
        );
        assert!(results.all_reported());
        let (_, state) = results.in_order()[0];
        assert_eq!(state.since, Some(at(7)));
        assert_eq!(state.last_success, Some(at(7)));
    }

    #[test]
    fn damping_ignores_short_blips_in_both_directions() {
        let mut results = Results::default();
        results.declare(key(), tcp(), 0);
        let damping = Damping {
            fail_after: 3,
            recover_after: 2,
        };
        let rounds = [
            (ok(), Transition::None),
            (failed(), Transition::None),
            (failed(), Transition::None),
            (ok(), Transition::None),
            (failed(), Transition::None),
            (failed(), Transition::None),
            (failed(), Transition::Failed),
            (ok(), Transition::None),
            (failed(), Transition::None),
            (ok(), Transition::None),
            (
                ok(),
                Transition::Recovered {
                    outage: Duration::from_secs(4),
                },
            ),
        ];
        for (t, (result, want)) in rounds.iter().enumerate() {
            let got = results
                .record(&key(), result, Duration::ZERO, at(t as u64), damping)
                .unwrap()
                .transition;
            assert_eq!(got, *want, "round {t}");
            let (_, state) = results.in_order()[0];
            assert_eq!(state.last.as_ref().unwrap().ok, result.is_ok());
        }
    }

    #[test]
    fn a_first_round_that_fails_counts_at_once() {
        let mut results = Results::default();
        results.declare(key(), tcp(), 0);
        let damping = Damping {
            fail_after: 5,
            recover_after: 5,
        };
        results.record(&key(), &failed(), Duration::ZERO, at(1), damping);
        let (_, state) = results.in_order()[0];
        assert!(state.failing);
        assert_eq!(state.last.as_ref().unwrap().result, "refused");
    }

    #[test]
    fn history_is_bounded() {
        let mut results = Results::default();
        results.declare(key(), tcp(), 0);
        for i in 0..(HISTORY as u64 + 10) {
            results.record(&key(), &ok(), Duration::ZERO, at(i), IMMEDIATE);
        }
        let (_, state) = results.in_order()[0];
        assert_eq!(state.history.len(), HISTORY);
        assert_eq!(state.history.iter().next().unwrap().at, at(10));
    }

    #[test]
    fn a_check_moved_or_removed_keeps_the_order_and_is_found_where_it_is() {
        let mut results = Results::default();
        let k = |probe: &str, netns| CheckKey {
            probe: probe.into(),
            netns,
            family: None,
        };
        results.declare(k("a", NetnsId::Pod), tcp(), 0);
        results.declare(k("b", NetnsId::Pod), tcp(), 1);
        results.declare(k("c", NetnsId::Host), tcp(), 2);
        // A reload moved `a` to the end and dropped `b`.
        results.declare(k("a", NetnsId::Pod), tcp(), 3);
        results.remove(&k("b", NetnsId::Pod));
        let order: Vec<_> = results
            .in_order()
            .into_iter()
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(order, vec![k("c", NetnsId::Host), k("a", NetnsId::Pod)]);
        results
            .record(
                &k("a", NetnsId::Pod),
                &ok(),
                Duration::ZERO,
                at(1),
                IMMEDIATE,
            )
            .unwrap();
        assert!(results.get(&k("a", NetnsId::Pod)).unwrap().last.is_some());
        assert!(results.get(&k("c", NetnsId::Host)).unwrap().last.is_none());
        assert!(results.get(&k("b", NetnsId::Pod)).is_none());
    }

    #[test]
    fn order_follows_config_then_namespace() {
        let mut results = Results::default();
        let k = |probe: &str, netns| CheckKey {
            probe: probe.into(),
            netns,
            family: None,
        };
        results.declare(k("zeta", NetnsId::Host), tcp(), 0);
        results.declare(k("alpha", NetnsId::Host), tcp(), 1);
        results.declare(k("zeta", NetnsId::Pod), tcp(), 0);
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
