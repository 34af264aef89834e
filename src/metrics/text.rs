//! The Prometheus text format (version 0.0.4), written byte for byte as
//! `prometheus::TextEncoder` writes it, at a fraction of the cost: a series' labels are
//! escaped once rather than once per histogram bucket, bucket bounds are formatted once per
//! family, whole numbers skip float formatting, and nothing is allocated per sample.
//!
//! One departure: an empty [`OMITTED_WHEN_EMPTY`] label is not written. Prometheus reads an
//! empty label as an absent one, so the series is the same; leaving it out keeps the text of
//! every check that is not split by family byte for byte what it was before the label existed.

use std::fmt::Write as _;

use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};

/// Appends `families` to `out`. Families without series must be left out by the caller, as
/// the registry leaves them out.
pub(super) fn encode(families: &[MetricFamily], out: &mut String) {
    let mut labels = String::new();
    let mut bounds = Bounds::default();
    for family in families {
        let name = family.name();
        if !family.help().is_empty() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape(family.help(), false, out);
            out.push('\n');
        }
        let kind = family.get_field_type();
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(match kind {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "untyped",
        });
        out.push('\n');
        bounds.clear();
        for metric in family.get_metric() {
            label_text(metric, &mut labels);
            let sample = Sample {
                name,
                labels: &labels,
                timestamp: metric.timestamp_ms(),
            };
            match kind {
                MetricType::COUNTER => {
                    sample.write("", None, metric.get_counter().get_value(), out)
                }
                MetricType::GAUGE => sample.write("", None, metric.get_gauge().get_value(), out),
                MetricType::HISTOGRAM => {
                    let histogram = metric.get_histogram();
                    let mut inf_seen = false;
                    for (i, bucket) in histogram.get_bucket().iter().enumerate() {
                        let bound = bucket.upper_bound();
                        let le = bounds.text(i, bound);
                        sample.write("_bucket", Some(le), bucket.cumulative_count() as f64, out);
                        inf_seen |= bound.is_sign_positive() && bound.is_infinite();
                    }
                    let count = histogram.get_sample_count() as f64;
                    if !inf_seen {
                        sample.write("_bucket", Some("+Inf"), count, out);
                    }
                    sample.write("_sum", None, histogram.get_sample_sum(), out);
                    sample.write("_count", None, count, out);
                }
                MetricType::SUMMARY => {
                    let summary = metric.get_summary();
                    for q in summary.get_quantile() {
                        let quantile = q.quantile().to_string();
                        let extra = ("quantile", quantile.as_str());
                        sample.write_labelled("", Some(extra), q.value(), out);
                    }
                    sample.write("_sum", None, summary.sample_sum(), out);
                    sample.write("_count", None, summary.sample_count() as f64, out);
                }
                MetricType::UNTYPED => {}
            }
        }
    }
}

/// The label a check carries only when its probe is split by address family.
const OMITTED_WHEN_EMPTY: &str = "family";

/// The labels a series is exposed with: all of them but an empty [`OMITTED_WHEN_EMPTY`].
pub(super) fn written(metric: &Metric) -> impl Iterator<Item = &LabelPair> {
    metric
        .get_label()
        .iter()
        .filter(|pair| !(pair.name() == OMITTED_WHEN_EMPTY && pair.value().is_empty()))
}

/// `{name="value",…` without the closing brace, or nothing for a series without labels.
fn label_text(metric: &Metric, labels: &mut String) {
    labels.clear();
    for pair in written(metric) {
        labels.push(if labels.is_empty() { '{' } else { ',' });
        labels.push_str(pair.name());
        labels.push_str("=\"");
        escape(pair.value(), true, labels);
        labels.push('"');
    }
}

/// Bucket bounds as text, formatted once for every series of a family that shares them.
#[derive(Default)]
struct Bounds(Vec<(f64, String)>);

impl Bounds {
    fn clear(&mut self) {
        self.0.clear();
    }

    fn text(&mut self, i: usize, bound: f64) -> &str {
        let known = self
            .0
            .get(i)
            .is_some_and(|(b, _)| b.to_bits() == bound.to_bits());
        if !known {
            self.0.truncate(i);
            self.0.push((bound, bound.to_string()));
        }
        &self.0[i].1
    }
}

struct Sample<'a> {
    name: &'a str,
    /// From [`label_text`].
    labels: &'a str,
    timestamp: i64,
}

impl Sample<'_> {
    /// One line; `le` adds the bucket label.
    fn write(&self, suffix: &str, le: Option<&str>, value: f64, out: &mut String) {
        self.write_labelled(suffix, le.map(|le| ("le", le)), value, out);
    }

    fn write_labelled(
        &self,
        suffix: &str,
        extra: Option<(&str, &str)>,
        value: f64,
        out: &mut String,
    ) {
        out.push_str(self.name);
        out.push_str(suffix);
        match extra {
            Some((label, text)) => {
                out.push_str(if self.labels.is_empty() {
                    "{"
                } else {
                    self.labels
                });
                if !self.labels.is_empty() {
                    out.push(',');
                }
                out.push_str(label);
                out.push_str("=\"");
                escape(text, true, out);
                out.push_str("\"}");
            }
            None if self.labels.is_empty() => {}
            None => {
                out.push_str(self.labels);
                out.push('}');
            }
        }
        out.push(' ');
        number(value, out);
        if self.timestamp != 0 {
            let _ = write!(out, " {}", self.timestamp);
        }
        out.push('\n');
    }
}

/// As `f64::to_string`, which never uses an exponent: most values are counts and 0 or 1,
/// and those take the integer path.
fn number(value: f64, out: &mut String) {
    let whole = value.fract() == 0.0 && value.abs() < 1e15;
    if whole && !(value == 0.0 && value.is_sign_negative()) {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Backslash and newline always, double quotes inside label values.
fn escape(text: &str, quotes: bool, out: &mut String) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quotes && b == b'"');
    if !text.bytes().any(special) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::core::Collector;
    use prometheus::{CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, Opts};
    use proptest::prelude::*;

    fn theirs(families: &[MetricFamily]) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(families, &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn ours(families: &[MetricFamily]) -> String {
        let mut out = String::new();
        encode(families, &mut out);
        out
    }

    fn families(label: &str, help: &str, value: f64, observations: &[f64]) -> Vec<MetricFamily> {
        // The registry refuses an empty help text.
        let help = &format!("h{help}");
        let gauges = GaugeVec::new(Opts::new("g", help), &["probe", "netns"]).unwrap();
        gauges.with_label_values(&[label, "pod"]).set(value);
        gauges.with_label_values(&["other", "host"]).set(-value);
        let counters = CounterVec::new(Opts::new("c_total", "c"), &["result"]).unwrap();
        counters
            .with_label_values(&[label])
            .inc_by(value.abs().min(1e300));
        let buckets = vec![1e-7, 0.0005, 0.001, 2.5, 10.0, 1e21];
        let histograms = HistogramVec::new(
            HistogramOpts::new("h_seconds", help).buckets(buckets.clone()),
            &["probe"],
        )
        .unwrap();
        let bare =
            Histogram::with_opts(HistogramOpts::new("bare", "no labels").buckets(buckets)).unwrap();
        for v in observations {
            histograms.with_label_values(&[label]).observe(*v);
            histograms.with_label_values(&["b"]).observe(v * 2.0);
            bare.observe(*v);
        }
        let mut all = Vec::new();
        for c in [&gauges as &dyn Collector, &counters, &histograms, &bare] {
            all.extend(
                c.collect()
                    .into_iter()
                    .filter(|f| !f.get_metric().is_empty()),
            );
        }
        all
    }

    #[test]
    fn writes_what_the_prometheus_encoder_writes() {
        let cases = [
            (
                "dc1-ldap",
                "plain help",
                1.0,
                vec![0.0003, 0.002, 7.0, 11.0],
            ),
            (
                "quote\"back\\slash\nnewline",
                "help with \\ and\nnewline \"quoted\"",
                0.75,
                vec![],
            ),
            ("", "x", f64::NAN, vec![f64::INFINITY]),
            ("ünïcödé", "h", -0.0, vec![1e-9, 123456.789]),
            ("big", "h", 1e15, vec![0.1; 3]),
            ("huge", "h", 123456789012345678.0, vec![2.5]),
        ];
        for (label, help, value, observations) in cases {
            let families = families(label, help, value, &observations);
            assert_eq!(ours(&families), theirs(&families), "{label:?} {value}");
        }
    }

    /// A check's empty `family` is left out; a split check's is written where it stands.
    #[test]
    fn an_empty_family_is_left_out() {
        let with = GaugeVec::new(Opts::new("g", "h"), &["probe", "netns", "family"]).unwrap();
        let without = GaugeVec::new(Opts::new("g", "h"), &["probe", "netns"]).unwrap();
        with.with_label_values(&["a", "pod", ""]).set(1.0);
        without.with_label_values(&["a", "pod"]).set(1.0);
        assert_eq!(ours(&with.collect()), theirs(&without.collect()));
        with.with_label_values(&["b", "host", "ipv6"]).set(0.0);
        let text = ours(&with.collect());
        assert!(
            text.contains("\ng{netns=\"pod\",probe=\"a\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\ng{family=\"ipv6\",netns=\"host\",probe=\"b\"} 0\n"),
            "{text}"
        );
        // Only `family`: another empty label is written as the registry writes it.
        let other = GaugeVec::new(Opts::new("g", "h"), &["gateway"]).unwrap();
        other.with_label_values(&[""]).set(1.0);
        assert_eq!(ours(&other.collect()), theirs(&other.collect()));
    }

    proptest! {
        #[test]
        fn any_values_and_labels_match(
            label in "\\PC{0,12}",
            help in "\\PC{0,12}",
            value in any::<f64>(),
            observations in prop::collection::vec(any::<f64>(), 0..4),
        ) {
            let families = families(&label, &help, value, &observations);
            prop_assert_eq!(ours(&families), theirs(&families));
        }
    }
}
