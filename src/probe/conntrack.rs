//! The `conntrack` probe: is the namespace's connection tracking table near its limit, or
//! failing inserts and dropping flows?
//!
//! A full table drops new flows (`drop`, `early_drop`); racing inserts of the same tuple, as
//! parallel A and AAAA queries from one socket or SNAT port collisions make, fail with
//! `insert_failed` and lose the packet: the "5-second DNS" a resolver's retry hides. Everything
//! is read from `/proc` on the probe's own thread, which is inside the probe's namespace:
//! `/proc/sys/net` and `/proc/thread-self/net` show that thread's namespace, where
//! `/proc/self/net` would show the process's. Nothing is sent.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{CounterVec, GaugeVec};
use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::{
    conclude, CheckLabels, Failure, Families, Measurements, Outcome, Probe, Reason, Target,
};
use crate::netns::{NetnsContext, NetnsId};

const COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";
const MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const STAT: &str = "/proc/thread-self/net/stat/nf_conntrack";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConntrackSpec {
    /// The share of `nf_conntrack_max` above which the round fails.
    #[serde(default = "default_max_fill", deserialize_with = "fill_ratio")]
    pub max_fill: f64,
    #[serde(skip)]
    last: Baseline,
}

fn default_max_fill() -> f64 {
    0.9
}

fn fill_ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let ratio = f64::deserialize(d)?;
    if ratio > 0.0 && ratio <= 1.0 {
        Ok(ratio)
    } else {
        Err(de::Error::custom(format!(
            "max_fill {ratio} must be above 0 and at most 1"
        )))
    }
}

/// The kernel's counters as the last round read them, per namespace: a rise is judged against
/// them. Not config, so any two specs compare equal on it; a reloaded spec starts afresh.
#[derive(Debug, Clone, Default)]
struct Baseline(Arc<Mutex<HashMap<NetnsId, Events>>>);

impl PartialEq for Baseline {
    fn eq(&self, _: &Baseline) -> bool {
        true
    }
}

impl Baseline {
    /// Stores `now` and returns the rise since the last call, `None` on the first.
    fn rise(&self, netns: NetnsId, now: Events) -> Option<Events> {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        last.insert(netns, now).map(|before| now.since(&before))
    }
}

/// The per-CPU counters that mean lost flows, summed over the CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    pub insert_failed: u64,
    pub drop: u64,
    pub early_drop: u64,
}

impl Events {
    /// The header names the columns (their set and order vary by kernel); each further line is
    /// one CPU's values in hex. A column this kernel lacks counts 0.
    pub fn parse(text: &str) -> Result<Events, String> {
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .ok_or("an empty stat file")?
            .split_whitespace()
            .collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let (insert_failed, drop, early_drop) = (
            column("insert_failed"),
            column("drop"),
            column("early_drop"),
        );
        let mut sum = Events::default();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let values = line
                .split_whitespace()
                .map(|v| u64::from_str_radix(v, 16))
                .collect::<Result<Vec<u64>, _>>()
                .map_err(|e| format!("a CPU's line {line:?}: {e}"))?;
            let at = |i: Option<usize>| i.and_then(|i| values.get(i)).copied().unwrap_or(0);
            // Values are the kernel's u32s, but the text is not trusted to say so.
            sum.insert_failed = sum.insert_failed.saturating_add(at(insert_failed));
            sum.drop = sum.drop.saturating_add(at(drop));
            sum.early_drop = sum.early_drop.saturating_add(at(early_drop));
        }
        Ok(sum)
    }

    /// What rose since `before`; a counter that fell (a reloaded module) rose by nothing.
    fn since(&self, before: &Events) -> Events {
        Events {
            insert_failed: self.insert_failed.saturating_sub(before.insert_failed),
            drop: self.drop.saturating_sub(before.drop),
            early_drop: self.early_drop.saturating_sub(before.early_drop),
        }
    }

    fn named(&self) -> [(&'static str, u64); 3] {
        [
            ("insert_failed", self.insert_failed),
            ("drop", self.drop),
            ("early_drop", self.early_drop),
        ]
    }
}

impl fmt::Display for Events {
    /// `insert_failed +3, drop +1`: the counters that rose.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rose: Vec<String> = self
            .named()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} +{n}"))
            .collect();
        f.write_str(&rose.join(", "))
    }
}

/// What one round read.
#[derive(Debug, Clone, PartialEq)]
pub struct ConntrackReport {
    pub entries: u64,
    /// `nf_conntrack_max`; 0 is no limit.
    pub max: u64,
    /// The rise of the counters since the last round; `None` on the first round.
    pub rise: Option<Events>,
}

impl ConntrackReport {
    pub fn fill(&self) -> f64 {
        if self.max == 0 {
            0.0
        } else {
            self.entries as f64 / self.max as f64
        }
    }

    fn judge(&self, max_fill: f64) -> (Option<Reason>, String) {
        let table = format!(
            "conntrack {} of {} entries ({:.1}%)",
            self.entries,
            self.max,
            self.fill() * 100.0
        );
        let rose = self.rise.filter(|r| r.insert_failed > 0 || r.drop > 0);
        if self.fill() > max_fill {
            let detail = format!("{table}, above max_fill {max_fill}");
            return (Some(Reason::ConntrackFull), with_rise(detail, self.rise));
        }
        if let Some(rose) = rose {
            return (
                Some(Reason::ConntrackDrops),
                format!("{table}; since the last round {rose}"),
            );
        }
        (None, with_rise(table, self.rise))
    }
}

fn with_rise(detail: String, rise: Option<Events>) -> String {
    match rise.filter(|r| *r != Events::default()) {
        Some(rise) => format!("{detail}; since the last round {rise}"),
        None => detail,
    }
}

pub struct ConntrackSeries {
    entries: GaugeVec,
    fill: GaugeVec,
    events: CounterVec,
}

impl Probe for ConntrackSpec {
    type Measurements = ConntrackReport;
    type Series = ConntrackSeries;

    fn register(families: &mut dyn Families) -> ConntrackSeries {
        ConntrackSeries {
            entries: families.gauges(
                "hybridprobe_conntrack_entries",
                "Connection tracking entries in the namespace (nf_conntrack_count).",
                &CheckLabels::names(&[]),
            ),
            fill: families.gauges(
                "hybridprobe_conntrack_fill_ratio",
                "nf_conntrack_count over nf_conntrack_max in the namespace (0 without a limit).",
                &CheckLabels::names(&[]),
            ),
            events: families.counters(
                "hybridprobe_conntrack_events_total",
                "Lost-flow events the kernel counted in the namespace since the check started: \
                 insert_failed, drop, early_drop.",
                &CheckLabels::names(&["event"]),
            ),
        }
    }

    fn describe(&self) -> String {
        format!("conntrack fill and drops (fail above {})", self.max_fill)
    }

    async fn run(&self, ctx: &NetnsContext, _budget: Duration) -> Result<Outcome, Failure> {
        let (entries, max, events) = read()
            .map_err(|e| Failure::new(Reason::Error, format!("{e} in the {} namespace", ctx.id)))?;
        let report = ConntrackReport {
            entries,
            max,
            rise: self.last.rise(ctx.id, events),
        };
        let (failure, detail) = report.judge(self.max_fill);
        conclude(failure, detail, Measurements::Conntrack(report))
    }

    fn declare(series: &ConntrackSeries, check: CheckLabels<'_>) {
        for (event, _) in Events::default().named() {
            series.events.with_label_values(&check.with(&[event]));
        }
    }

    fn observe(series: &ConntrackSeries, check: CheckLabels<'_>, measured: &ConntrackReport) {
        let labels = check.values();
        series
            .entries
            .with_label_values(&labels)
            .set(measured.entries as f64);
        series.fill.with_label_values(&labels).set(measured.fill());
        for (event, rise) in measured.rise.unwrap_or_default().named() {
            series
                .events
                .with_label_values(&check.with(&[event]))
                .inc_by(rise as f64);
        }
    }

    /// Reading the kernel's counters reaches nothing.
    fn targets(&self, _failure: Option<&Failure>) -> Vec<Target> {
        Vec::new()
    }
}

/// The count, the limit and the summed per-CPU counters, read on this thread. Small `/proc`
/// files that never block, read synchronously because a blocking-pool thread would read
/// another namespace.
fn read() -> Result<(u64, u64, Events), String> {
    let text = |path: &str| {
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {path} (is nf_conntrack loaded?): {e}"))
    };
    let number = |path: &str| {
        let t = text(path)?;
        t.trim()
            .parse::<u64>()
            .map_err(|e| format!("{path}: {:?}: {e}", t.trim()))
    };
    let events = Events::parse(&text(STAT)?).map_err(|e| format!("{STAT}: {e}"))?;
    Ok((number(COUNT)?, number(MAX)?, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header and the shape as kernel 6.18 writes the file (two CPUs); the values are set
    /// by hand, since a real insert race cannot be made on demand.
    const STAT_6_18: &str = "\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
0000002a  00000001 00000000 00000000 00000004 00000000 00000000 00000000 00000000 00000003 00000001 00000000 00000000  00000000 00000000 00000000 00000000
0000002a  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 0000000a 00000000 00000002 00000000  00000000 00000000 00000000 00000000
";

    #[test]
    fn per_cpu_counters_are_summed_by_column_name() {
        let events = Events::parse(STAT_6_18).unwrap();
        assert_eq!(
            events,
            Events {
                insert_failed: 13,
                drop: 1,
                early_drop: 2
            }
        );
    }

    #[test]
    fn an_older_kernels_columns_are_found_by_name() {
        // 4.x kernels have no clashres or chainlength, and put drop elsewhere.
        let old = "entries searched found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error expect_new expect_create expect_delete search_restart\n\
                   00000010 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000005 00000007 00000000 00000000 00000000 00000000 00000000 00000000\n";
        let events = Events::parse(old).unwrap();
        assert_eq!((events.insert_failed, events.drop), (5, 7));
        assert!(Events::parse("").is_err());
        assert!(Events::parse("entries drop\n0000zz 1\n").is_err());
        let huge = "drop\nffffffffffffffff\nffffffffffffffff\n";
        assert_eq!(
            Events::parse(huge).unwrap().drop,
            u64::MAX,
            "saturates, never wraps"
        );
    }

    fn report(entries: u64, max: u64, rise: Option<Events>) -> ConntrackReport {
        ConntrackReport { entries, max, rise }
    }

    #[test]
    fn a_table_above_the_share_fails_full() {
        let (failure, detail) = report(240_000, 262_144, None).judge(0.9);
        assert_eq!(failure, Some(Reason::ConntrackFull));
        assert_eq!(
            detail,
            "conntrack 240000 of 262144 entries (91.6%), above max_fill 0.9"
        );
        assert_eq!(report(230_000, 262_144, None).judge(0.9).0, None);
        assert_eq!(
            report(5, 0, None).judge(0.9).0,
            None,
            "no limit is never full"
        );
    }

    #[test]
    fn rising_insert_failed_or_drop_fails_and_early_drop_alone_does_not() {
        let rose = |insert_failed, drop, early_drop| {
            report(
                100,
                262_144,
                Some(Events {
                    insert_failed,
                    drop,
                    early_drop,
                }),
            )
            .judge(0.9)
        };
        let (failure, detail) = rose(3, 1, 0);
        assert_eq!(failure, Some(Reason::ConntrackDrops));
        assert!(
            detail.ends_with("since the last round insert_failed +3, drop +1"),
            "{detail}"
        );
        assert_eq!(rose(0, 2, 0).0, Some(Reason::ConntrackDrops));
        let (failure, detail) = rose(0, 0, 4);
        assert_eq!(failure, None);
        assert!(detail.ends_with("early_drop +4"), "{detail}");
        assert_eq!(rose(0, 0, 0).0, None);
    }

    #[test]
    fn the_baseline_is_per_namespace_and_first_rounds_have_none() {
        let baseline = Baseline::default();
        let at = |insert_failed| Events {
            insert_failed,
            ..Events::default()
        };
        assert_eq!(baseline.rise(NetnsId::Host, at(10)), None);
        assert_eq!(baseline.rise(NetnsId::Pod, at(50)), None);
        assert_eq!(baseline.rise(NetnsId::Host, at(12)), Some(at(2)));
        assert_eq!(baseline.rise(NetnsId::Host, at(3)), Some(at(0)), "a reset");
    }

    #[test]
    fn max_fill_is_a_share() {
        let spec = |yaml| serde_norway::from_str::<ConntrackSpec>(yaml).map_err(|e| e.to_string());
        assert_eq!(spec("{}").unwrap().max_fill, 0.9);
        assert_eq!(spec("{max_fill: 0.75}").unwrap().max_fill, 0.75);
        assert!(spec("{max_fill: 90}").unwrap_err().contains("at most 1"));
        assert!(spec("{max_fill: 0}").is_err());
        assert!(spec("{limit: 3}").unwrap_err().contains("unknown field"));
    }
}
