//! A check's past rounds, packed: every check keeps [`HISTORY`] of them, so each is 24 bytes
//! instead of the 88 of a [`Sample`], and readers get [`Sample`]s back.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::{Sample, HISTORY};
use crate::probe::Reason;

/// A check's past rounds, oldest first, at most [`HISTORY`]: the newest pushes the oldest out.
#[derive(Debug, Clone, PartialEq)]
pub struct History(VecDeque<Packed>);

impl Default for History {
    fn default() -> History {
        History(VecDeque::with_capacity(HISTORY))
    }
}

impl History {
    pub fn push(&mut self, sample: Sample) {
        if self.0.len() == HISTORY {
            self.0.pop_front();
        }
        self.0.push_back(Packed::pack(&sample));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rounds, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Sample> + ExactSizeIterator + Clone + '_ {
        self.0.iter().map(Packed::unpack)
    }

    /// The last `n` rounds, oldest first: cloned to be read more than once without collecting
    /// them, since the judging reads them for every round of every check.
    pub fn last(
        &self,
        n: usize,
    ) -> impl DoubleEndedIterator<Item = Sample> + ExactSizeIterator + Clone + '_ {
        self.0
            .range(self.0.len().saturating_sub(n)..)
            .map(Packed::unpack)
    }
}

impl FromIterator<Sample> for History {
    fn from_iter<I: IntoIterator<Item = Sample>>(samples: I) -> History {
        let mut history = History::default();
        for sample in samples {
            history.push(sample);
        }
        history
    }
}

/// A [`Sample`] kept to the precision its readers show and judge:
///
/// - the result as its [`Reason`] (`None` for `success`): exact;
/// - durations in whole microseconds, up to 71 minutes (longer ones saturate; a round ends at
///   its timeout): shown to 0.1 ms at best, round trips judged against configured levels and a
///   rise of 10 ms;
/// - the time in milliseconds since the epoch, up to 2106: shown to the second;
/// - the loss as it was (an echo round's share lost, exact; NaN for none).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Packed {
    loss: f64,
    at_secs: u32,
    duration_micros: u32,
    round_trip_micros: u32,
    at_millis: u16,
    reason: Option<Reason>,
    ok: bool,
}

const _: () = assert!(std::mem::size_of::<Packed>() == 24);

impl Packed {
    fn pack(sample: &Sample) -> Packed {
        let since_epoch = sample
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Packed {
            loss: sample.loss.unwrap_or(f64::NAN),
            at_secs: u32::try_from(since_epoch.as_secs()).unwrap_or(u32::MAX),
            duration_micros: micros(sample.duration),
            round_trip_micros: micros(sample.round_trip),
            at_millis: since_epoch.subsec_millis() as u16,
            reason: Reason::ALL
                .iter()
                .copied()
                .find(|r| r.as_str() == sample.result),
            ok: sample.ok,
        }
    }

    fn unpack(&self) -> Sample {
        Sample {
            ok: self.ok,
            result: self.reason.map_or("success", Reason::as_str),
            duration: Duration::from_micros(self.duration_micros.into()),
            round_trip: Duration::from_micros(self.round_trip_micros.into()),
            loss: (!self.loss.is_nan()).then_some(self.loss),
            at: SystemTime::UNIX_EPOCH
                + Duration::new(self.at_secs.into(), u32::from(self.at_millis) * 1_000_000),
        }
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ok: bool, result: &'static str) -> Sample {
        Sample {
            ok,
            result,
            duration: Duration::ZERO,
            round_trip: Duration::ZERO,
            loss: None,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    fn round_trip(sample: Sample) -> Sample {
        [sample]
            .into_iter()
            .collect::<History>()
            .iter()
            .next()
            .unwrap()
    }

    #[test]
    fn a_sample_comes_back_as_it_went_in_at_the_kept_precision() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_780_000_000_123);
        let exact = [
            sample(true, "success"),
            Sample {
                duration: Duration::from_micros(u64::from(u32::MAX)),
                round_trip: Duration::from_micros(1),
                loss: Some(0.0),
                at,
                ..sample(false, "timeout")
            },
            Sample {
                loss: Some(1.0),
                ..sample(false, "loss")
            },
            Sample {
                loss: Some(1.0 - 2.0 / 3.0),
                ..sample(true, "success")
            },
        ];
        for s in exact {
            assert_eq!(round_trip(s), s);
        }
        for reason in Reason::ALL {
            assert_eq!(
                round_trip(sample(false, reason.as_str())).result,
                reason.as_str()
            );
        }
    }

    #[test]
    fn what_is_below_the_kept_precision_goes_and_what_is_above_saturates() {
        let s = round_trip(Sample {
            duration: Duration::from_secs(3 * 3600),
            round_trip: Duration::from_nanos(1_999),
            at: SystemTime::UNIX_EPOCH + Duration::new(1_780_000_000, 123_456_789),
            ..sample(true, "success")
        });
        assert_eq!(s.duration, Duration::from_micros(u64::from(u32::MAX)));
        assert_eq!(s.round_trip, Duration::from_micros(1));
        assert_eq!(
            s.at,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_780_000_000_123)
        );
        assert_eq!(
            round_trip(Sample {
                at: SystemTime::UNIX_EPOCH - Duration::from_secs(1),
                ..sample(true, "success")
            })
            .at,
            SystemTime::UNIX_EPOCH,
            "before the epoch is the epoch"
        );
    }

    #[test]
    fn the_newest_push_out_the_oldest() {
        let history: History = (0..HISTORY as u64 + 5)
            .map(|i| Sample {
                at: SystemTime::UNIX_EPOCH + Duration::from_secs(i),
                ..sample(true, "success")
            })
            .collect();
        assert_eq!(history.len(), HISTORY);
        assert_eq!(
            history.iter().next().unwrap().at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(5)
        );
        assert_eq!(
            history.0.capacity(),
            HISTORY,
            "no room beyond the rounds kept"
        );
    }
}
