//! Histograms kept two ways from the same observations: classic buckets for the text
//! exposition, and sparse exponential buckets (Prometheus' native histograms) for the protobuf
//! one.
//!
//! The native side is written here by hand: the `prometheus` crate (0.14) has no native
//! histograms in its data model, and `prometheus-client`, which has them, writes OpenMetrics
//! text instead of the 0.0.4 text the agent's exposition is. No maintained crate keeps both
//! beside the classic model the agent renders its text from.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, MetricFamily};
use prometheus::{HistogramOpts, HistogramVec};

/// Each power of two is split into 2^3 buckets, a step of 2^(1/8), about 9 %: finer than the
/// classic buckets' threefold steps, and still under 70 buckets from 1 ms to 300 ms.
pub const SCHEMA: i32 = 3;

/// Values this close to zero count in the zero bucket: client_golang's default, 2^-128, far
/// below any duration the agent measures, so in practice only a zero.
pub const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// The upper bounds of the buckets of one power of two, as fractions in [0.5, 1): 2^(i/8 - 1),
/// Prometheus' own table for schema 3, so a value on a boundary falls where Prometheus puts it.
#[allow(clippy::excessive_precision)]
const FRACTIONS: [f64; 8] = [
    0.5,
    0.5452538663326288,
    0.5946035575013605,
    0.6484197773255048,
    0.7071067811865475,
    0.7711054127039704,
    0.8408964152537144,
    0.9170040432046711,
];

/// A histogram family: the classic `HistogramVec` and, per series, its native buckets.
#[derive(Clone)]
pub struct Histograms {
    classic: HistogramVec,
    /// The family's label names, in the order `with_label_values` takes them.
    labels: Arc<[String]>,
    native: Arc<Mutex<HashMap<Vec<String>, Shared>>>,
}

/// A series' native buckets, shared by the family and the series' handles.
type Shared = Arc<Mutex<Native>>;

/// One series of a [`Histograms`] family: each observation goes to both sides.
#[derive(Clone)]
pub struct Histogram {
    classic: prometheus::Histogram,
    native: Shared,
}

/// A series' native buckets: counts by bucket index, the bucket with upper bound 2^(i/8)
/// holding the values in (2^((i-1)/8), 2^(i/8)], as Prometheus defines them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Native {
    pub zero_count: u64,
    pub positive: BTreeMap<i32, u64>,
    pub negative: BTreeMap<i32, u64>,
}

/// A run of consecutive buckets: `offset` buckets after the end of the run before it (after
/// index 0 for the first), `length` buckets long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// Every series' native buckets at one moment, to go with a collection of the classic side.
pub struct Natives {
    labels: Arc<[String]>,
    series: HashMap<Vec<String>, Native>,
}

/// Each update under these locks is one increment, insert or remove, so a poisoned lock still
/// holds consistent data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Histograms {
    pub fn new(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> Histograms {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        Histograms {
            classic: HistogramVec::new(opts, labels).expect("valid histogram"),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            native: Arc::default(),
        }
    }

    pub fn with_label_values(&self, values: &[&str]) -> Histogram {
        let key = values.iter().map(|v| v.to_string()).collect();
        Histogram {
            classic: self.classic.with_label_values(values),
            native: lock(&self.native).entry(key).or_default().clone(),
        }
    }

    /// Removes the series with exactly these labels from both sides.
    pub fn remove(&self, labels: &HashMap<&str, &str>) -> prometheus::Result<()> {
        let key: Option<Vec<String>> = self
            .labels
            .iter()
            .map(|name| labels.get(name.as_str()).map(|v| v.to_string()))
            .collect();
        if let Some(key) = key {
            lock(&self.native).remove(&key);
        }
        self.classic.remove(labels)
    }

    /// The native buckets of every series. Taken before the classic side is collected, so an
    /// observation in flight (classic side first) is in the classic count and not yet in the
    /// native buckets: the count is never below the buckets' sum, which Prometheus rejects.
    pub fn natives(&self) -> Natives {
        let series = lock(&self.native)
            .iter()
            .map(|(key, native)| (key.clone(), lock(native).clone()))
            .collect();
        Natives {
            labels: self.labels.clone(),
            series,
        }
    }
}

/// The classic side: what the text exposition renders and the registry-style collection sees.
impl Collector for Histograms {
    fn desc(&self) -> Vec<&Desc> {
        self.classic.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.classic.collect()
    }
}

impl Histogram {
    pub fn observe(&self, v: f64) {
        self.classic.observe(v);
        lock(&self.native).observe(v);
    }
}

impl Native {
    /// NaN and the infinities have no bucket: like the classic side's `+Inf`, only the
    /// count and the sum show them.
    fn observe(&mut self, v: f64) {
        if v.abs() <= ZERO_THRESHOLD {
            self.zero_count += 1;
        } else if v.is_finite() {
            let side = if v > 0.0 {
                &mut self.positive
            } else {
                &mut self.negative
            };
            *side.entry(index(v.abs())).or_default() += 1;
        }
    }
}

impl Natives {
    /// The buckets of the classic series with these labels.
    pub fn of(&self, pairs: &[LabelPair]) -> Option<&Native> {
        let key: Option<Vec<String>> = self
            .labels
            .iter()
            .map(|name| {
                pairs
                    .iter()
                    .find(|pair| pair.name() == name)
                    .map(|pair| pair.value().to_owned())
            })
            .collect();
        self.series.get(&key?)
    }
}

/// The bucket of a finite `v` above [`ZERO_THRESHOLD`]: the one whose upper bound 2^(i/8) is
/// the first at or above `v`.
pub fn index(v: f64) -> i32 {
    let (fraction, exponent) = frexp(v);
    let within = FRACTIONS.partition_point(|&bound| bound < fraction) as i32;
    within + (exponent - 1) * FRACTIONS.len() as i32
}

/// `v` as `fraction × 2^exponent` with the fraction in [0.5, 1), as C's `frexp`, for the normal
/// numbers that every value above the zero threshold is.
fn frexp(v: f64) -> (f64, i32) {
    const EXPONENT: u64 = 0x7ff << 52;
    let bits = v.to_bits();
    let exponent = ((bits & EXPONENT) >> 52) as i32 - 1022;
    let fraction = f64::from_bits((bits & !EXPONENT) | (1022 << 52));
    (fraction, exponent)
}

/// Buckets as the exposition sends them: runs of consecutive indices, and each count as its
/// difference from the bucket before it (the first from zero).
pub fn spans(buckets: &BTreeMap<i32, u64>) -> (Vec<Span>, Vec<i64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut deltas = Vec::with_capacity(buckets.len());
    let (mut next, mut previous) = (None, 0);
    for (&index, &count) in buckets {
        match (next, spans.last_mut()) {
            (Some(next), Some(span)) if next == index => span.length += 1,
            _ => spans.push(Span {
                offset: next.map_or(index, |next| index - next),
                length: 1,
            }),
        }
        next = Some(index + 1);
        deltas.push(count as i64 - previous);
        previous = count as i64;
    }
    (spans, deltas)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The upper bound of bucket `i`, from the table as Prometheus computes it.
    fn bound(i: i32) -> f64 {
        let fraction = FRACTIONS[i.rem_euclid(8) as usize];
        fraction * 2f64.powi(i.div_euclid(8) + 1)
    }

    #[test]
    fn a_value_on_a_boundary_is_in_the_bucket_it_bounds() {
        for i in [-80, -9, -8, -1, 0, 1, 7, 8, 9, 16, 63, 100] {
            let b = bound(i);
            assert_eq!(index(b), i, "at 2^({i}/8) = {b}");
            assert_eq!(index(b.next_up()), i + 1, "just above {b}");
            assert_eq!(index(b.next_down()), i, "just below {b}");
        }
        assert_eq!(index(1.0), 0);
        assert_eq!(index(2.0), 8);
        assert_eq!(index(0.5), -8);
        assert_eq!(index(0.9), -1, "(2^(-2/8), 2^(-1/8)] = (0.84, 0.917]");
        // 3 ms: 2^-8.38, so in the bucket up to 2^(-67/8).
        assert_eq!(index(0.003), -67);
        assert!(bound(-68) < 0.003 && 0.003 <= bound(-67));
    }

    #[test]
    fn the_table_is_two_to_the_eighths() {
        for (i, fraction) in FRACTIONS.iter().enumerate() {
            let exact = 2f64.powf(i as f64 / 8.0 - 1.0);
            assert!((fraction - exact).abs() <= f64::EPSILON, "{i}: {fraction}");
        }
    }

    #[test]
    fn zero_and_tiny_values_count_in_the_zero_bucket_and_nan_in_none() {
        let mut native = Native::default();
        for v in [0.0, -0.0, ZERO_THRESHOLD, -ZERO_THRESHOLD] {
            native.observe(v);
        }
        native.observe(ZERO_THRESHOLD * 2.0);
        native.observe(-0.25);
        native.observe(f64::NAN);
        native.observe(f64::INFINITY);
        assert_eq!(native.zero_count, 4);
        assert_eq!(
            native.positive,
            BTreeMap::from([(index(ZERO_THRESHOLD * 2.0), 1)])
        );
        assert_eq!(native.negative, BTreeMap::from([(-16, 1)]));
    }

    #[test]
    fn spans_and_deltas_of_known_observations() {
        let h = Histograms::new("t_seconds", "t", &["probe"], &[0.01]);
        let series = h.with_label_values(&["a"]);
        // Bucket 0 once, 1 twice, 2 once, after a gap of two 5 three times, and far below
        // them -67 (3 ms) once.
        for v in [1.0, 1.05, 1.09, 1.15, 1.5, 1.5, 1.45, 0.003] {
            series.observe(v);
        }
        let natives = h.natives();
        let mut pair = LabelPair::default();
        pair.set_name("probe".into());
        pair.set_value("a".into());
        let native = natives.of(&[pair]).expect("the series");
        let (runs, deltas) = spans(&native.positive);
        assert_eq!(
            runs,
            [
                Span {
                    offset: -67,
                    length: 1
                },
                Span {
                    offset: 66,
                    length: 3
                },
                Span {
                    offset: 2,
                    length: 1
                },
            ]
        );
        assert_eq!(deltas, [1, 0, 1, -1, 2]);
        assert!(spans(&BTreeMap::new()).0.is_empty());
    }

    /// The scheduler lag was a lone histogram before it had native buckets: as a family
    /// without labels it collects, and so renders, the same.
    #[test]
    fn an_unlabelled_family_collects_as_a_lone_histogram() {
        let buckets = [0.001, 0.1];
        let opts = HistogramOpts::new("lag_seconds", "h").buckets(buckets.to_vec());
        let lone = prometheus::Histogram::with_opts(opts).unwrap();
        let family = Histograms::new("lag_seconds", "h", &[], &buckets);
        let series = family.with_label_values(&[]);
        for v in [0.0, 0.0005, 0.05, 3.0] {
            lone.observe(v);
            series.observe(v);
        }
        assert_eq!(family.collect(), lone.collect());
    }

    #[test]
    fn a_removed_series_is_gone_from_both_sides() {
        let h = Histograms::new("t_seconds", "t", &["probe", "netns"], &[0.01]);
        h.with_label_values(&["a", "pod"]).observe(1.0);
        h.with_label_values(&["b", "pod"]).observe(1.0);
        let labels = HashMap::from([("probe", "a"), ("netns", "pod")]);
        h.remove(&labels).unwrap();
        assert_eq!(h.natives().series.len(), 1);
        assert_eq!(h.collect()[0].get_metric().len(), 1);
    }
}
