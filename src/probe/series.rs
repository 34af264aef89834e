//! What kinds share for their own series: an `_info` series kept at one per check, and what a
//! kind remembers of each check between rounds.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use prometheus::GaugeVec;

use super::{CheckLabels, CheckLabelsKey};
use crate::netns::NetnsId;

/// Per check, what a kind remembers from one round to the next.
pub struct PerCheck<T>(Mutex<HashMap<CheckLabelsKey, T>>);

impl<T> Default for PerCheck<T> {
    fn default() -> Self {
        PerCheck(Mutex::default())
    }
}

impl<T> PerCheck<T> {
    /// Each update under the lock is one insert or remove, so a poisoned lock still holds
    /// consistent data.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<CheckLabelsKey, T>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn forget(&self, check: CheckLabels<'_>) {
        self.lock().remove(&check.key());
    }
}

/// An `_info` family with one series per check: its labels after the check's ones carry
/// values (addresses, a gateway), so a new value replaces the old series instead of adding one.
pub struct InfoSeries {
    family: GaugeVec,
    /// Each check's values, by probe name then place: it is set after every round, and found
    /// by name it is found without making a key, which would allocate.
    current: Mutex<HashMap<String, HashMap<Place, Vec<String>>>>,
}

/// Where a check of a probe runs: its namespace and `family` label.
type Place = (NetnsId, &'static str);

impl InfoSeries {
    pub fn new(family: GaugeVec) -> InfoSeries {
        InfoSeries {
            family,
            current: Mutex::default(),
        }
    }

    /// Each update under the lock is one insert or remove, so a poisoned lock still holds
    /// consistent data.
    fn current(&self) -> MutexGuard<'_, HashMap<String, HashMap<Place, Vec<String>>>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the check's series to `values`, or removes it when there are none.
    pub fn set(&self, check: CheckLabels<'_>, values: Option<Vec<String>>) {
        let mut current = self.current();
        let place = (check.netns, check.family);
        let old = current.get(check.probe).and_then(|of| of.get(&place));
        if old == values.as_ref() {
            // Mostly so: the series stands as it was set, or is absent.
            return;
        }
        if let Some(old) = old {
            // Err only when the series is already gone, which is the goal.
            let _ = self.family.remove_label_values(&labels(check, old));
        }
        match values {
            Some(values) => {
                self.family
                    .with_label_values(&labels(check, &values))
                    .set(1.0);
                current
                    .entry(check.probe.to_owned())
                    .or_default()
                    .insert(place, values);
            }
            None => forget(&mut current, check),
        }
    }

    pub fn forget(&self, check: CheckLabels<'_>) {
        forget(&mut self.current(), check);
    }
}

fn forget(current: &mut HashMap<String, HashMap<Place, Vec<String>>>, check: CheckLabels<'_>) {
    if let Some(of) = current.get_mut(check.probe) {
        of.remove(&(check.netns, check.family));
        if of.is_empty() {
            current.remove(check.probe);
        }
    }
}

fn labels<'a>(check: CheckLabels<'a>, values: &'a [String]) -> Vec<&'a str> {
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    check.with(&values)
}

/// A 0/1 gauge value.
pub fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}
