//! `thresholds:`: what a check's state over its recent rounds is held to.

use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::Timing;

/// The most rounds a state may look back over: what a check's history keeps.
pub const MAX_WINDOW: usize = 30;

/// A warning level and a failing level of one measure; `warning` is at most `fail`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels<T> {
    pub warning: T,
    pub fail: T,
}

/// The state of a check over its last `window` rounds, the way Azure Connection Monitor judges
/// a test: the share of failed rounds and the median round trip of the passing ones against
/// their levels. Until `min_rounds` have run the state is unknown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub window: usize,
    pub min_rounds: usize,
    pub failed: Levels<f64>,
    /// No default: what is slow depends on the path.
    pub round_trip: Option<Levels<Duration>>,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            window: 10,
            min_rounds: 3,
            failed: Levels {
                warning: 0.1,
                fail: 0.5,
            },
            round_trip: None,
        }
    }
}

/// `thresholds:` as written, under `defaults` or a probe: every key optional, each one given
/// replaces the same key of what it is laid over.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThresholds {
    #[serde(default, deserialize_with = "window")]
    window: Option<usize>,
    #[serde(default, deserialize_with = "window")]
    min_rounds: Option<usize>,
    #[serde(default)]
    failed: Option<Levels<Ratio>>,
    #[serde(default)]
    round_trip: Option<Levels<Timing>>,
}

impl RawThresholds {
    /// `self` laid over `under`, checked as a whole: the error says which key is wrong.
    pub(super) fn over(self, under: Thresholds) -> Result<Thresholds, (&'static str, String)> {
        let thresholds = Thresholds {
            window: self.window.unwrap_or(under.window),
            min_rounds: self.min_rounds.unwrap_or(under.min_rounds),
            failed: self.failed.map_or(under.failed, |l| Levels {
                warning: l.warning.0,
                fail: l.fail.0,
            }),
            round_trip: self
                .round_trip
                .map(|l| Levels {
                    warning: l.warning.0,
                    fail: l.fail.0,
                })
                .or(under.round_trip),
        };
        if thresholds.min_rounds > thresholds.window {
            return Err((
                "min_rounds",
                format!(
                    "{} is more than the window of {} rounds",
                    thresholds.min_rounds, thresholds.window
                ),
            ));
        }
        Ok(thresholds)
    }
}

impl<'de, T: Deserialize<'de> + PartialOrd> Deserialize<'de> for Levels<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw<T> {
            warning: T,
            fail: T,
        }
        let raw = Raw::<T>::deserialize(d)?;
        if raw.warning > raw.fail {
            return Err(de::Error::custom("warning must not be above fail"));
        }
        Ok(Levels {
            warning: raw.warning,
            fail: raw.fail,
        })
    }
}

/// A share of rounds, between 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct Ratio(f64);

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = f64::deserialize(d)?;
        if !(0.0..=1.0).contains(&r) {
            return Err(de::Error::custom(format!(
                "{r} is not a ratio between 0 and 1"
            )));
        }
        Ok(Ratio(r))
    }
}

/// A number of rounds a check remembers: 1 up to its history.
fn window<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = usize::deserialize(d)?;
    if !(1..=MAX_WINDOW).contains(&n) {
        return Err(de::Error::custom(format!(
            "must be between 1 and {MAX_WINDOW} rounds"
        )));
    }
    Ok(Some(n))
}
