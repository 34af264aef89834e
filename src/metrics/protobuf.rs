//! The protobuf exposition: `io.prometheus.client.MetricFamily` messages, each after its
//! varint length, with native histograms beside the classic buckets.
//!
//! The wire format is written by hand, with the field numbers of the Prometheus client model's
//! `metrics.proto`: a dozen fields of three wire types, written and never read, did not warrant
//! `prost`, its derive macro and hand-kept message structs in the agent. The tests decode what
//! is written here with `prost`, as Prometheus decodes it with its own generated code.

use prometheus::proto::{Metric, MetricFamily, MetricType};

use super::text;
use crate::probe::histogram::{spans, Native, Natives, Span, SCHEMA, ZERO_THRESHOLD};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// Appends `families`, each as one delimited message; `natives` are the native buckets of a
/// histogram family's series. Families without series must be left out by the caller.
pub(super) fn encode(families: &[MetricFamily], natives: Option<&Natives>, out: &mut Vec<u8>) {
    for family in families {
        delimited(out, |out| metric_family(family, natives, out));
    }
}

/// `MetricFamily`: name 1, help 2, type 3, metric 4.
fn metric_family(family: &MetricFamily, natives: Option<&Natives>, out: &mut Vec<u8>) {
    string(1, family.name(), out);
    if !family.help().is_empty() {
        string(2, family.help(), out);
    }
    let kind = family.get_field_type();
    let number = match kind {
        MetricType::COUNTER => 0,
        MetricType::GAUGE => 1,
        MetricType::SUMMARY => 2,
        MetricType::UNTYPED => 3,
        MetricType::HISTOGRAM => 4,
    };
    uint(3, number, out);
    for metric in family.get_metric() {
        let native = natives.and_then(|n| n.of(metric.get_label()));
        message(4, out, |out| series(metric, kind, native, out));
    }
}

/// `Metric`: label 1, then the value's message (gauge 2, counter 3, summary 4, histogram 7),
/// timestamp_ms 6.
fn series(metric: &Metric, kind: MetricType, native: Option<&Native>, out: &mut Vec<u8>) {
    for pair in text::written(metric) {
        message(1, out, |out| {
            string(1, pair.name(), out);
            string(2, pair.value(), out);
        });
    }
    match kind {
        MetricType::GAUGE => message(2, out, |out| double(1, metric.get_gauge().get_value(), out)),
        MetricType::COUNTER => message(3, out, |out| {
            double(1, metric.get_counter().get_value(), out)
        }),
        MetricType::SUMMARY => message(4, out, |out| {
            let summary = metric.get_summary();
            uint(1, summary.sample_count(), out);
            double(2, summary.sample_sum(), out);
            for q in summary.get_quantile() {
                message(3, out, |out| {
                    double(1, q.quantile(), out);
                    double(2, q.value(), out);
                });
            }
        }),
        // The agent has no untyped family, and the text writes no sample for one either.
        MetricType::UNTYPED => {}
        MetricType::HISTOGRAM => message(7, out, |out| histogram(metric, native, out)),
    }
    if metric.timestamp_ms() != 0 {
        // int64: a negative value is its two's complement, ten bytes.
        uint(6, metric.timestamp_ms() as u64, out);
    }
}

/// `Histogram`: sample_count 1, sample_sum 2, bucket 3 (cumulative_count 1, upper_bound 2);
/// native: schema 5, zero_threshold 6, zero_count 7, negative_span 9, negative_delta 10,
/// positive_span 12, positive_delta 13.
fn histogram(metric: &Metric, native: Option<&Native>, out: &mut Vec<u8>) {
    let histogram = metric.get_histogram();
    uint(1, histogram.get_sample_count(), out);
    double(2, histogram.get_sample_sum(), out);
    for bucket in histogram.get_bucket() {
        message(3, out, |out| {
            uint(1, bucket.cumulative_count(), out);
            double(2, bucket.upper_bound(), out);
        });
    }
    let Some(native) = native else {
        return;
    };
    sint(5, i64::from(SCHEMA), out);
    // A zero threshold above zero is also what tells Prometheus the histogram is native before
    // it has any bucket.
    double(6, ZERO_THRESHOLD, out);
    uint(7, native.zero_count, out);
    for (side, span_field, delta_field) in [(&native.negative, 9, 10), (&native.positive, 12, 13)] {
        let (spans, deltas) = spans(side);
        for Span { offset, length } in spans {
            message(span_field, out, |out| {
                sint(1, i64::from(offset), out);
                uint(2, u64::from(length), out);
            });
        }
        // Repeated scalars unpacked, as proto2 declares them: every decoder reads both forms.
        for delta in deltas {
            sint(delta_field, delta, out);
        }
    }
}

fn key(field: u32, wire: u32, out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | wire), out);
}

fn varint(v: u64, out: &mut Vec<u8>) {
    let (bytes, n) = varint_bytes(v);
    out.extend_from_slice(&bytes[..n]);
}

/// `v` as a varint: seven bits a byte, low bits first; its bytes and how many of them.
fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let mut bytes = [0; 10];
    let mut n = 0;
    while v >= 0x80 {
        bytes[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    (bytes, n + 1)
}

fn uint(field: u32, v: u64, out: &mut Vec<u8>) {
    key(field, VARINT, out);
    varint(v, out);
}

/// `sint32` and `sint64`: zigzag, so small negative numbers stay short.
fn sint(field: u32, v: i64, out: &mut Vec<u8>) {
    uint(field, ((v << 1) ^ (v >> 63)) as u64, out);
}

fn double(field: u32, v: f64, out: &mut Vec<u8>) {
    key(field, FIXED64, out);
    out.extend_from_slice(&v.to_le_bytes());
}

fn string(field: u32, v: &str, out: &mut Vec<u8>) {
    message(field, out, |out| out.extend_from_slice(v.as_bytes()));
}

/// A length-delimited field: its key, then `body` after its length.
fn message(field: u32, out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    key(field, LEN, out);
    delimited(out, body);
}

/// `body` after its varint length. The length is known once the body is written, so it is
/// put in front of it then: the one copy is of the body's own bytes.
fn delimited(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    body(out);
    let (length, n) = varint_bytes((out.len() - start) as u64);
    out.splice(start..start, length[..n].iter().copied());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus::proto::{self as model, LabelPair};
    use prost::Message;

    use crate::metrics::Metrics;
    use crate::netns::NetnsId;
    use crate::probe::histogram::index;
    use crate::probe::icmp::IcmpReport;
    use crate::probe::{CheckLabels, Failure, Measurements, Outcome, Reason};
    use crate::results::{Standing, TargetState, Transition};

    // The messages of the client model's metrics.proto that the agent writes, field for field.
    #[derive(Clone, PartialEq, Message)]
    struct Family {
        #[prost(string, optional, tag = "1")]
        name: Option<String>,
        #[prost(string, optional, tag = "2")]
        help: Option<String>,
        #[prost(int32, optional, tag = "3")]
        r#type: Option<i32>,
        #[prost(message, repeated, tag = "4")]
        metric: Vec<Series>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Series {
        #[prost(message, repeated, tag = "1")]
        label: Vec<Label>,
        #[prost(message, optional, tag = "2")]
        gauge: Option<Value>,
        #[prost(message, optional, tag = "3")]
        counter: Option<Value>,
        #[prost(message, optional, tag = "4")]
        summary: Option<Summary>,
        #[prost(message, optional, tag = "7")]
        histogram: Option<Histogram>,
        #[prost(int64, optional, tag = "6")]
        timestamp_ms: Option<i64>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Label {
        #[prost(string, optional, tag = "1")]
        name: Option<String>,
        #[prost(string, optional, tag = "2")]
        value: Option<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Value {
        #[prost(double, optional, tag = "1")]
        value: Option<f64>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Summary {
        #[prost(uint64, optional, tag = "1")]
        sample_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        sample_sum: Option<f64>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Histogram {
        #[prost(uint64, optional, tag = "1")]
        sample_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        sample_sum: Option<f64>,
        #[prost(message, repeated, tag = "3")]
        bucket: Vec<Bucket>,
        #[prost(sint32, optional, tag = "5")]
        schema: Option<i32>,
        #[prost(double, optional, tag = "6")]
        zero_threshold: Option<f64>,
        #[prost(uint64, optional, tag = "7")]
        zero_count: Option<u64>,
        #[prost(message, repeated, tag = "9")]
        negative_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, packed = "false", tag = "10")]
        negative_delta: Vec<i64>,
        #[prost(message, repeated, tag = "12")]
        positive_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, packed = "false", tag = "13")]
        positive_delta: Vec<i64>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Bucket {
        #[prost(uint64, optional, tag = "1")]
        cumulative_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        upper_bound: Option<f64>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct BucketSpan {
        #[prost(sint32, optional, tag = "1")]
        offset: Option<i32>,
        #[prost(uint32, optional, tag = "2")]
        length: Option<u32>,
    }

    fn decode(mut bytes: &[u8]) -> Vec<Family> {
        let mut families = Vec::new();
        while !bytes.is_empty() {
            families.push(Family::decode_length_delimited(&mut bytes).expect("a delimited family"));
        }
        families
    }

    /// A decoded family in the `prometheus` crate's model, for the text encoder.
    fn model(family: &Family) -> model::MetricFamily {
        let mut out = model::MetricFamily::default();
        out.set_name(family.name.clone().unwrap());
        out.set_help(family.help.clone().unwrap_or_default());
        out.set_field_type(match family.r#type.unwrap() {
            0 => model::MetricType::COUNTER,
            1 => model::MetricType::GAUGE,
            2 => model::MetricType::SUMMARY,
            4 => model::MetricType::HISTOGRAM,
            other => panic!("type {other}"),
        });
        let metrics = family.metric.iter().map(|series| {
            let mut m = model::Metric::default();
            m.set_label(
                series
                    .label
                    .iter()
                    .map(|l| {
                        let mut pair = LabelPair::default();
                        pair.set_name(l.name.clone().unwrap());
                        pair.set_value(l.value.clone().unwrap());
                        pair
                    })
                    .collect(),
            );
            if let Some(g) = &series.gauge {
                let mut gauge = model::Gauge::default();
                gauge.set_value(g.value.unwrap());
                m.set_gauge(gauge);
            }
            if let Some(c) = &series.counter {
                let mut counter = model::Counter::default();
                counter.set_value(c.value.unwrap());
                m.set_counter(counter);
            }
            if let Some(s) = &series.summary {
                let mut summary = model::Summary::default();
                summary.set_sample_count(s.sample_count.unwrap());
                summary.set_sample_sum(s.sample_sum.unwrap());
                m.set_summary(summary);
            }
            if let Some(h) = &series.histogram {
                let mut histogram = model::Histogram::default();
                histogram.set_sample_count(h.sample_count.unwrap());
                histogram.set_sample_sum(h.sample_sum.unwrap());
                let buckets = h.bucket.iter().map(|b| {
                    let mut bucket = model::Bucket::default();
                    bucket.set_cumulative_count(b.cumulative_count.unwrap());
                    bucket.set_upper_bound(b.upper_bound.unwrap());
                    bucket
                });
                histogram.set_bucket(buckets.collect());
                m.set_histogram(histogram);
            }
            m
        });
        out.set_metric(metrics.collect());
        out
    }

    const STANDING: Standing = Standing {
        state: TargetState::Pass,
        consecutive_failures: 0,
    };

    /// Every kind of family: gauges, counters, the outage summary, the icmp histogram with
    /// labels (one check split by family) and the scheduler lag's without.
    fn registry() -> Metrics {
        let metrics = Metrics::new(&["pmtu_blackhole"]);
        let check = |family| CheckLabels {
            probe: "dc1",
            netns: NetnsId::Pod,
            family,
        };
        let whole = metrics.check_series(check(""), "icmp");
        let v6 = metrics.check_series(check("ipv6"), "icmp");
        let echo = |ms: &[u64]| {
            Measurements::Icmp(IcmpReport {
                sent: 2,
                received: ms.len() as u16,
                rtts: ms.iter().map(|ms| Duration::from_millis(*ms)).collect(),
                hop_limit: None,
            })
        };
        let recovered = Transition::Recovered {
            outage: Duration::from_secs(90),
        };
        let passed = Ok(Outcome::new("2/2", echo(&[3, 5])));
        metrics.observe(
            &whole,
            &passed,
            Duration::from_millis(8),
            recovered,
            STANDING,
        );
        let failed = Err(Failure {
            measurements: echo(&[]),
            ..Failure::new(Reason::Timeout, "0/2")
        });
        metrics.observe(&v6, &failed, Duration::ZERO, Transition::Failed, STANDING);
        metrics.observe_scheduler_lag(Duration::ZERO);
        metrics.observe_scheduler_lag(Duration::from_millis(2));
        metrics.set_netns_available(NetnsId::Pod, true);
        metrics
    }

    #[test]
    fn the_protobuf_holds_what_the_text_holds() {
        let metrics = registry();
        let families = decode(&metrics.render_protobuf());
        let mut text = String::new();
        super::text::encode(&families.iter().map(model).collect::<Vec<_>>(), &mut text);
        assert_eq!(text, &*metrics.render());
        assert!(families
            .iter()
            .all(|f| f
                .metric
                .iter()
                .flat_map(|m| &m.label)
                .all(|l| l.name.as_deref() != Some("family") || l.value.as_deref() != Some(""))));
    }

    #[test]
    fn histograms_carry_their_native_buckets() {
        let families = decode(&registry().render_protobuf());
        let histogram = |name: &str, labels: usize| -> Histogram {
            let family = families
                .iter()
                .find(|f| f.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no {name}"));
            let series = family
                .metric
                .iter()
                .find(|m| m.label.len() == labels)
                .unwrap_or_else(|| panic!("no {name} with {labels} labels"));
            series.histogram.clone().expect("a histogram")
        };
        // 3 ms and 5 ms: buckets -67 and -61, five apart after the first.
        let rtt = histogram("hybridprobe_icmp_rtt_seconds", 2);
        assert_eq!(rtt.schema, Some(3));
        assert_eq!(rtt.zero_threshold, Some(2f64.powi(-128)));
        assert_eq!(rtt.zero_count, Some(0));
        assert_eq!((index(0.003), index(0.005)), (-67, -61));
        let span = |offset, length| BucketSpan {
            offset: Some(offset),
            length: Some(length),
        };
        assert_eq!(rtt.positive_span, [span(-67, 1), span(5, 1)]);
        assert_eq!(rtt.positive_delta, [1, 0]);
        assert!(rtt.negative_span.is_empty() && rtt.negative_delta.is_empty());
        assert_eq!(rtt.sample_count, Some(2));
        assert!(!rtt.bucket.is_empty(), "the classic buckets are kept");
        // The failed split check has the family's empty native buckets.
        let empty = histogram("hybridprobe_icmp_rtt_seconds", 3);
        assert_eq!((empty.schema, empty.sample_count), (Some(3), Some(0)));
        assert!(empty.positive_span.is_empty());
        // No labels; a lag of zero is in the zero bucket.
        let lag = histogram("hybridprobe_scheduler_lag_seconds", 0);
        assert_eq!((lag.zero_count, lag.sample_count), (Some(1), Some(2)));
        assert_eq!(lag.positive_span, [span(index(0.002), 1)]);
        assert_eq!(lag.positive_delta, [1]);
        // The outage summary has no native buckets and no histogram.
        let outage = families
            .iter()
            .find(|f| f.name.as_deref() == Some("hybridprobe_outage_duration_seconds"))
            .expect("the outage summary");
        assert_eq!(outage.r#type, Some(2));
        let recovered = outage.metric.iter().find(|m| m.label.len() == 3).unwrap();
        let summary = recovered.summary.clone().expect("a summary");
        assert_eq!(
            (summary.sample_count, summary.sample_sum),
            (Some(1), Some(90.0))
        );
        assert!(recovered.histogram.is_none());
    }
}
