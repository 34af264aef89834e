//! A check's state over its recent rounds (`pass`, `warning`, `fail`, `unknown`), judged the
//! way Azure Connection Monitor judges a test: the share of failed rounds and the median round
//! trip of the passing ones, each against a warning and a failing level.

use std::time::Duration;

use super::{History, Sample, HISTORY};
use crate::config::{Levels, Thresholds};

/// What a check's recent rounds add up to. Ordered from good to bad, so the worst of several
/// is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetState {
    /// Fewer rounds than `min_rounds` have run: neither healthy nor failing.
    Unknown,
    Pass,
    /// A measure reached its warning level but not its failing one.
    Warning,
    Fail,
}

impl TargetState {
    pub const ALL: [TargetState; 4] = [
        TargetState::Unknown,
        TargetState::Pass,
        TargetState::Warning,
        TargetState::Fail,
    ];

    /// The `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Unknown => "unknown",
            TargetState::Pass => "pass",
            TargetState::Warning => "warning",
            TargetState::Fail => "fail",
        }
    }

    /// Judges the last `thresholds.window` rounds of `history` (oldest first).
    pub fn judge(history: &History, thresholds: &Thresholds) -> TargetState {
        let window = history.last(thresholds.window);
        if window.len() < thresholds.min_rounds {
            return TargetState::Unknown;
        }
        let failed = window.clone().filter(|s| !s.ok).count() as f64 / window.len() as f64;
        let by_failures = level(failed, &thresholds.failed);
        let by_round_trip = thresholds
            .round_trip
            .as_ref()
            .map_or(TargetState::Pass, |levels| {
                median_round_trip(window).map_or(TargetState::Pass, |rtt| level(rtt, levels))
            });
        by_failures.max(by_round_trip)
    }
}

fn level<T: PartialOrd>(value: T, levels: &Levels<T>) -> TargetState {
    if value >= levels.fail {
        TargetState::Fail
    } else if value >= levels.warning {
        TargetState::Warning
    } else {
        TargetState::Pass
    }
}

/// The median round trip of the passing rounds of `window`, a part of a check's history:
/// failed rounds have none worth the name (a timeout's duration is the timeout).
pub fn median_round_trip(window: impl Iterator<Item = Sample>) -> Option<Duration> {
    // Sorted on the stack, since this runs for every round: a history holds at most HISTORY.
    let mut rtts = [Duration::ZERO; HISTORY];
    let mut n = 0;
    for sample in window.filter(|s| s.ok).take(HISTORY) {
        rtts[n] = sample.round_trip;
        n += 1;
    }
    let rtts = &mut rtts[..n];
    if rtts.is_empty() {
        return None;
    }
    rtts.sort_unstable();
    Some(rtts[rtts.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn history(rounds: &[(bool, u64)]) -> History {
        rounds
            .iter()
            .map(|&(ok, ms)| Sample {
                ok,
                result: if ok { "success" } else { "timeout" },
                duration: Duration::from_millis(ms),
                round_trip: Duration::from_millis(ms),
                loss: None,
                at: SystemTime::UNIX_EPOCH,
            })
            .collect()
    }

    fn passing(n: usize, ms: u64) -> Vec<(bool, u64)> {
        vec![(true, ms); n]
    }

    const FAILED: (bool, u64) = (false, 2000);

    #[test]
    fn unknown_until_enough_rounds() {
        let t = Thresholds::default();
        assert_eq!(TargetState::judge(&history(&[]), &t), TargetState::Unknown);
        assert_eq!(
            TargetState::judge(&history(&[FAILED, FAILED]), &t),
            TargetState::Unknown
        );
        assert_eq!(
            TargetState::judge(&history(&[FAILED; 3]), &t),
            TargetState::Fail
        );
        assert_eq!(
            TargetState::judge(&history(&passing(3, 5)), &t),
            TargetState::Pass
        );
    }

    #[test]
    fn the_failed_share_of_the_window_sets_the_level() {
        let t = Thresholds::default(); // window 10, warning at 10 %, fail at 50 %
        let mut rounds = passing(9, 5);
        rounds.push(FAILED);
        assert_eq!(
            TargetState::judge(&history(&rounds), &t),
            TargetState::Warning
        );
        let mut rounds = passing(5, 5);
        rounds.extend([FAILED; 5]);
        assert_eq!(TargetState::judge(&history(&rounds), &t), TargetState::Fail);
        let mut rounds = passing(6, 5);
        rounds.extend([FAILED; 4]);
        assert_eq!(
            TargetState::judge(&history(&rounds), &t),
            TargetState::Warning
        );
    }

    #[test]
    fn rounds_older_than_the_window_are_forgotten() {
        let t = Thresholds::default();
        let mut rounds = vec![FAILED; 20];
        rounds.extend(passing(10, 5));
        assert_eq!(TargetState::judge(&history(&rounds), &t), TargetState::Pass);
    }

    #[test]
    fn the_median_round_trip_of_passing_rounds_sets_the_level() {
        let t = Thresholds {
            round_trip: Some(Levels {
                warning: Duration::from_millis(100),
                fail: Duration::from_millis(300),
            }),
            ..Thresholds::default()
        };
        assert_eq!(
            TargetState::judge(&history(&passing(10, 20)), &t),
            TargetState::Pass
        );
        let mut rounds = passing(4, 20);
        rounds.extend(passing(6, 150));
        assert_eq!(
            TargetState::judge(&history(&rounds), &t),
            TargetState::Warning
        );
        assert_eq!(
            TargetState::judge(&history(&passing(10, 400)), &t),
            TargetState::Fail
        );
        // One slow outlier does not move the median.
        let mut rounds = passing(9, 20);
        rounds.push((true, 5000));
        assert_eq!(TargetState::judge(&history(&rounds), &t), TargetState::Pass);
    }

    #[test]
    fn the_worse_measure_wins() {
        let t = Thresholds {
            round_trip: Some(Levels {
                warning: Duration::from_millis(100),
                fail: Duration::from_millis(300),
            }),
            ..Thresholds::default()
        };
        let mut rounds = passing(9, 400);
        rounds.push(FAILED);
        assert_eq!(TargetState::judge(&history(&rounds), &t), TargetState::Fail);
    }
}
