//! Configuration: YAML text to a validated, typed [`Config`], with errors that name the path.
//!
//! The file is parsed once. `${VAR}` references in string values are expanded from the
//! environment first (so the downward API's NODE_NAME, POD_IP and HOST_IP can be used), then the
//! tree is deserialized into typed values and checked as a whole. Every error carries the path of
//! the offending value, such as `probes[3].tcp.target`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_norway::Value;

mod env;
mod evidence;
mod judging;

pub use crate::probe::expect::Expect;
pub use evidence::EvidenceConfig;
use evidence::RawEvidence;
use judging::RawThresholds;
pub use judging::{Levels, Thresholds, MAX_WINDOW};

use crate::netns::NetnsId;
use crate::probe::resolver::Family;
use crate::probe::ProbeKind;

/// Where the host network namespace is entered from, unless the config says otherwise: the
/// file the node pinned at /run/hybridprobe/netns, as the DaemonSet's hostPath volume mounts
/// it. Needs no hostPID and no CAP_SYS_PTRACE (`/proc/1/ns/net` needs both).
pub const DEFAULT_HOST_NETNS: &str = "/run/host/hybridprobe/netns";
/// The host's resolver configuration: the node's /run/systemd/resolve (the upstream servers the
/// kubelet hands to `dnsPolicy: Default` pods, not the 127.0.0.53 stub), as the DaemonSet's
/// hostPath volume mounts it.
pub const DEFAULT_HOST_RESOLV_CONF: &str = "/run/host/resolve/resolv.conf";
/// The pod's own resolver configuration.
pub const DEFAULT_POD_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The longest interval (and so timeout): rounds and deadlines are the clock plus these, and a
/// check that runs less than daily watches nothing.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_ON_DEMAND_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// A validated configuration: everything downstream may rely on its invariants.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The namespaces probes run in, pod first when both are present.
    pub namespaces: Vec<NamespaceConfig>,
    /// Shared with the checks that run them, so a running config holds each probe once.
    pub probes: Vec<Arc<ProbeConfig>>,
    /// What the agent captures when a check turns failing.
    pub evidence: EvidenceConfig,
    /// Whether a configured check may be run now over HTTP.
    pub on_demand: OnDemandConfig,
}

/// Whether `POST /checks/<name>/run` may run a configured check now, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnDemandConfig {
    /// Off unless the config turns it on: it is a write on an unauthenticated port.
    pub enabled: bool,
    /// The least time between two runs of one check on demand.
    pub min_interval: Duration,
}

impl Default for OnDemandConfig {
    fn default() -> OnDemandConfig {
        OnDemandConfig {
            enabled: false,
            min_interval: DEFAULT_ON_DEMAND_MIN_INTERVAL,
        }
    }
}

/// One network namespace the agent runs probes in.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceConfig {
    pub id: NetnsId,
    /// The namespace file to enter; `None` means the agent's own namespace.
    pub path: Option<PathBuf>,
    /// The resolver configuration that applications in this namespace use.
    pub resolv_conf: PathBuf,
}

/// One probe with its defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    /// Unique and stable: it becomes the `probe` label.
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failed rounds before the check counts as failing (flap damping).
    pub fail_after: u32,
    /// Consecutive passing rounds before a failing check counts as recovered.
    pub recover_after: u32,
    /// The namespaces this probe runs in: a subset of the configured ones.
    pub netns: Vec<NetnsId>,
    /// Whether the target should answer; `blocked` inverts the round's judgement.
    pub expect: Expect,
    /// What the check's state over its recent rounds is held to.
    pub thresholds: Thresholds,
    pub kind: ProbeKind,
}

impl ProbeConfig {
    /// The family of each check the probe makes in a namespace: `ipv4` and `ipv6` for a probe
    /// split by `family: both`, else one check, `None`, of the family its kind asks for.
    pub fn families(&self) -> &'static [Option<Family>] {
        const SPLIT: [Option<Family>; 2] = [Some(Family::SPLIT[0]), Some(Family::SPLIT[1])];
        match self.kind.family() {
            Some(Family::Both) => &SPLIT,
            _ => &[None],
        }
    }
}

/// One problem found in a configuration, with the path of the value at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

fn render_problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("\n")
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads and validates a config file, expanding `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &|name| std::env::var(name).ok())
    }

    /// Parses and validates config text; `env` looks up `${VAR}` references.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let invalid = |p: Problem| ConfigError::Invalid(vec![p]);
        let mut tree: Value = serde_norway::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "config".to_owned());
            invalid(problem(at, format!("not valid YAML: {e}")))
        })?;
        env::expand_env(&mut tree, &mut Vec::new(), env).map_err(invalid)?;
        let raw: RawConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { "config".into() } else { path };
            invalid(problem(path, e.into_inner().to_string()))
        })?;
        raw.validate().map_err(ConfigError::Invalid)
    }

    /// The namespace settings for `id`, if this config runs probes there.
    pub fn namespace(&self, id: NetnsId) -> Option<&NamespaceConfig> {
        self.namespaces.iter().find(|n| n.id == id)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    netns: Option<RawNetns>,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    probes: Vec<RawProbe>,
    #[serde(default)]
    evidence: RawEvidence,
    #[serde(default)]
    on_demand: RawOnDemand,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOnDemand {
    #[serde(default)]
    enabled: bool,
    #[serde(default, deserialize_with = "duration")]
    min_interval: Option<Duration>,
}

impl RawOnDemand {
    fn into_config(self) -> OnDemandConfig {
        OnDemandConfig {
            enabled: self.enabled,
            min_interval: self.min_interval.unwrap_or(DEFAULT_ON_DEMAND_MIN_INTERVAL),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetns {
    pod: Option<RawPodNetns>,
    host: Option<RawHostNetns>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPodNetns {
    resolv_conf: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHostNetns {
    path: Option<PathBuf>,
    resolv_conf: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default, deserialize_with = "duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "rounds")]
    fail_after: Option<u32>,
    #[serde(default, deserialize_with = "rounds")]
    recover_after: Option<u32>,
    #[serde(default)]
    thresholds: RawThresholds,
}

/// The `defaults` section with every value filled in.
struct Defaults {
    interval: Duration,
    timeout: Duration,
    fail_after: u32,
    recover_after: u32,
    thresholds: Thresholds,
}

/// One entry of `probes`: the common keys, then the kind keys, read by the kinds table.
struct RawProbe {
    name: String,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    fail_after: Option<u32>,
    recover_after: Option<u32>,
    netns: Option<Vec<NetnsId>>,
    expect: Option<Expect>,
    thresholds: Option<RawThresholds>,
    /// Every kind key present, in the order of [`ProbeKind::NAMES`]; validation wants one.
    kinds: Vec<ProbeKind>,
}

/// The keys every probe may have besides its kind.
const COMMON_KEYS: &[&str] = &[
    "name",
    "interval",
    "timeout",
    "fail_after",
    "recover_after",
    "netns",
    "expect",
    "thresholds",
];

/// Every key of a probe entry, as unknown-key errors list them.
static PROBE_KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    COMMON_KEYS
        .iter()
        .chain(ProbeKind::NAMES)
        .copied()
        .collect()
});

impl<'de> Deserialize<'de> for RawProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawProbeVisitor)
    }
}

struct RawProbeVisitor;

impl<'de> de::Visitor<'de> for RawProbeVisitor {
    type Value = RawProbe;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a probe: a name, optional timing and netns keys, and one probe kind")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawProbe, A::Error> {
        let mut name = None;
        let (mut interval, mut timeout) = (None, None);
        let (mut fail_after, mut recover_after) = (None, None);
        let mut netns = None;
        let (mut expect, mut thresholds) = (None, None);
        let mut kinds = Vec::new();
        while let Some(ProbeKey(key)) = map.next_key()? {
            match key.as_str() {
                "name" => set(&mut name, "name", map.next_value()?)?,
                "interval" => set(&mut interval, "interval", map.next_value::<Timing>()?.0)?,
                "timeout" => set(&mut timeout, "timeout", map.next_value::<Timing>()?.0)?,
                "fail_after" => set(&mut fail_after, "fail_after", map.next_value::<Rounds>()?.0)?,
                "recover_after" => set(
                    &mut recover_after,
                    "recover_after",
                    map.next_value::<Rounds>()?.0,
                )?,
                "netns" => set(&mut netns, "netns", map.next_value()?)?,
                "expect" => set(&mut expect, "expect", map.next_value()?)?,
                "thresholds" => set(&mut thresholds, "thresholds", map.next_value()?)?,
                kind => {
                    let spec = map.next_value_seed(KindSeed(kind))?;
                    if kinds.iter().any(|k: &ProbeKind| k.name() == spec.name()) {
                        return Err(de::Error::custom(format!("duplicate field `{kind}`")));
                    }
                    kinds.push(spec);
                }
            }
        }
        let position = |k: &ProbeKind| ProbeKind::NAMES.iter().position(|n| *n == k.name());
        kinds.sort_by_key(position);
        Ok(RawProbe {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            interval,
            timeout,
            fail_after,
            recover_after,
            netns,
            expect,
            thresholds,
            kinds,
        })
    }
}

/// Fills a key's slot once: YAML allows a key twice, and the second would silently win.
fn set<T, E: de::Error>(slot: &mut Option<T>, key: &'static str, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(key));
    }
    Ok(())
}

/// A probe entry's key, checked as it is read, so that an unknown key's error names its path.
struct ProbeKey(String);

impl<'de> Deserialize<'de> for ProbeKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let key = String::deserialize(d)?;
        if !PROBE_KEYS.contains(&key.as_str()) {
            return Err(de::Error::unknown_field(&key, &PROBE_KEYS));
        }
        Ok(ProbeKey(key))
    }
}

/// Hands a kind key's value to that kind's spec type.
struct KindSeed<'k>(&'k str);

impl<'de> de::DeserializeSeed<'de> for KindSeed<'_> {
    type Value = ProbeKind;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ProbeKind, D::Error> {
        ProbeKind::deserialize_key(self.0, d)
            .unwrap_or_else(|| Err(de::Error::custom(format!("{} is not a probe kind", self.0))))
    }
}

/// An interval or timeout: `10s`, `500ms`, `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct Timing(Duration);

/// A count of consecutive rounds (`fail_after`, `recover_after`).
struct Rounds(u32);

/// Accepts `10s`, `500ms`, `1m30s`: a YAML string, since bare numbers have no unit.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Timing::deserialize(d).map(|t| Some(t.0))
}

impl<'de> Deserialize<'de> for Timing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = humantime::parse_duration(&text).map_err(|_| {
            de::Error::custom(format!(
                "{text:?} is not a duration (use e.g. 500ms, 10s, 1m)"
            ))
        })?;
        if parsed.is_zero() {
            return Err(de::Error::custom("must be longer than zero"));
        }
        if parsed > MAX_INTERVAL {
            return Err(de::Error::custom(format!(
                "{text:?} is longer than {}",
                humantime::format_duration(MAX_INTERVAL)
            )));
        }
        Ok(Timing(parsed))
    }
}

/// A count of consecutive rounds: at least one, and few enough to still mean something.
fn rounds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Rounds::deserialize(d).map(|r| Some(r.0))
}

impl<'de> Deserialize<'de> for Rounds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if !(1..=100).contains(&n) {
            return Err(de::Error::custom("must be between 1 and 100 rounds"));
        }
        Ok(Rounds(n))
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let namespaces = self
            .netns
            .map_or_else(default_namespaces, RawNetns::into_namespaces);
        if namespaces.is_empty() {
            problems.push(problem(
                "netns",
                "at least one of pod and host must be listed",
            ));
        }
        let thresholds = self
            .defaults
            .thresholds
            .over(Thresholds::default())
            .unwrap_or_else(|(key, message)| {
                problems.push(problem(format!("defaults.thresholds.{key}"), message));
                Thresholds::default()
            });
        let defaults = Defaults {
            interval: self.defaults.interval.unwrap_or(DEFAULT_INTERVAL),
            timeout: self.defaults.timeout.unwrap_or(DEFAULT_TIMEOUT),
            fail_after: self.defaults.fail_after.unwrap_or(1),
            recover_after: self.defaults.recover_after.unwrap_or(1),
            thresholds,
        };
        let (interval, timeout) = (defaults.interval, defaults.timeout);
        if timeout > interval {
            problems.push(problem(
                "defaults.timeout",
                format!(
                    "{} is longer than the interval {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            ));
        }
        if self.probes.is_empty() {
            problems.push(problem("probes", "no probes are configured"));
        }
        let configured: Vec<NetnsId> = namespaces.iter().map(|n| n.id).collect();
        let mut seen = BTreeSet::new();
        let mut probes = Vec::with_capacity(self.probes.len());
        for (i, raw) in self.probes.into_iter().enumerate() {
            let at = format!("probes[{i}]");
            if !seen.insert(raw.name.clone()) {
                problems.push(problem(
                    format!("{at}.name"),
                    format!(
                        "{:?} is used by an earlier probe; names must be unique",
                        raw.name
                    ),
                ));
            }
            match raw.into_probe(&at, &defaults, &configured) {
                Ok(p) => probes.push(Arc::new(p)),
                Err(mut found) => problems.append(&mut found),
            }
        }
        let evidence = self.evidence.validate().unwrap_or_else(|mut found| {
            problems.append(&mut found);
            EvidenceConfig::default()
        });
        if problems.is_empty() {
            Ok(Config {
                namespaces,
                probes,
                evidence,
                on_demand: self.on_demand.into_config(),
            })
        } else {
            Err(problems)
        }
    }
}

/// Without a `netns` section, probes run in both namespaces with the DaemonSet's defaults.
fn default_namespaces() -> Vec<NamespaceConfig> {
    RawNetns {
        pod: Some(RawPodNetns::default()),
        host: Some(RawHostNetns::default()),
    }
    .into_namespaces()
}

impl RawNetns {
    fn into_namespaces(self) -> Vec<NamespaceConfig> {
        let pod = self.pod.map(|pod| NamespaceConfig {
            id: NetnsId::Pod,
            path: None,
            resolv_conf: pod
                .resolv_conf
                .unwrap_or_else(|| DEFAULT_POD_RESOLV_CONF.into()),
        });
        let host = self.host.map(|host| NamespaceConfig {
            id: NetnsId::Host,
            path: Some(host.path.unwrap_or_else(|| DEFAULT_HOST_NETNS.into())),
            resolv_conf: host
                .resolv_conf
                .unwrap_or_else(|| DEFAULT_HOST_RESOLV_CONF.into()),
        });
        pod.into_iter().chain(host).collect()
    }
}

impl RawProbe {
    fn into_probe(
        self,
        at: &str,
        defaults: &Defaults,
        configured: &[NetnsId],
    ) -> Result<ProbeConfig, Vec<Problem>> {
        let mut problems = Vec::new();
        if !valid_name(&self.name) {
            problems.push(problem(
                format!("{at}.name"),
                format!(
                    "{:?} is not a valid probe name (1-63 of a-z, 0-9, '-', '_', '.')",
                    self.name
                ),
            ));
        }
        let interval = self.interval.unwrap_or(defaults.interval);
        let timeout = self.timeout.unwrap_or(defaults.timeout.min(interval));
        if timeout > interval {
            problems.push(problem(
                format!("{at}.timeout"),
                format!(
                    "{} is longer than the interval {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            ));
        }
        let netns = match self.netns {
            None => configured.to_vec(),
            Some(listed) => {
                if listed.is_empty() {
                    problems.push(problem(
                        format!("{at}.netns"),
                        "must list pod, host or both",
                    ));
                }
                for (j, id) in listed.iter().enumerate() {
                    if !configured.contains(id) {
                        problems.push(problem(
                            format!("{at}.netns[{j}]"),
                            format!("{id} is not configured under netns"),
                        ));
                    }
                }
                let mut unique = listed;
                unique.sort();
                unique.dedup();
                unique
            }
        };
        let thresholds = match self.thresholds {
            None => defaults.thresholds,
            Some(raw) => raw
                .over(defaults.thresholds)
                .unwrap_or_else(|(key, message)| {
                    problems.push(problem(format!("{at}.thresholds.{key}"), message));
                    defaults.thresholds
                }),
        };
        let mut kinds = self.kinds;
        let kind = match kinds.len() {
            1 => kinds.pop(),
            0 => {
                problems.push(problem(
                    at,
                    format!("no probe kind: add one of {}", ProbeKind::NAMES.join(", ")),
                ));
                None
            }
            _ => {
                let names: Vec<&str> = kinds.iter().map(ProbeKind::name).collect();
                problems.push(problem(
                    at,
                    format!(
                        "exactly one probe kind per probe, found {}",
                        names.join(" and ")
                    ),
                ));
                None
            }
        };
        if let Some((kind, message)) = kind.as_ref().and_then(|k| Some((k, k.family_problem()?))) {
            problems.push(problem(
                format!("{at}.{}.family", kind.name()),
                format!("probe {:?}: {message}", self.name),
            ));
        }
        match kind {
            Some(kind) if problems.is_empty() => Ok(ProbeConfig {
                name: self.name,
                interval,
                timeout,
                fail_after: self.fail_after.unwrap_or(defaults.fail_after),
                recover_after: self.recover_after.unwrap_or(defaults.recover_after),
                netns,
                expect: self.expect.unwrap_or_default(),
                thresholds,
                kind,
            }),
            _ => Err(problems),
        }
    }
}

/// Probe names become label values and appear in URLs and logs: keep them plain and short.
fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, &|name| match name {
            "HOST_IP" => Some("198.18.1.4".into()),
            _ => None,
        })
    }

    fn errors(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_family_must_fit_the_address_it_is_given() {
        let config = parse(
            r#"
probes:
  - { name: a, tcp: { target: "db.corp.example:5432", family: ipv6 } }
  - { name: b, icmp: { target: gateway, family: ipv6 } }
  - { name: c, http: { url: "http://[2001:2:0:10::80]/", family: ipv6 } }
  - { name: d, tcp: { target: "198.19.10.1:389" } }
"#,
        )
        .unwrap();
        let families: Vec<_> = config
            .probes
            .iter()
            .map(|p| p.kind.family_problem())
            .collect();
        assert_eq!(families, vec![None; 4]);
        assert_eq!(
            errors(
                r#"
probes:
  - { name: a, tcp: { target: "db.corp.example:5432", family: ipv4 } }
  - { name: b, icmp: { target: "2001:2:0:10::1", family: ipv4 } }
  - { name: c, source_ip: { stun: "198.19.10.3:3478", family: ipv6 } }
  - { name: d, path_mtu: { target: "198.19.10.1", family: ipv6 } }
  - { name: e, traceroute: { target: "2001:2:0:10::1", family: ipv4 } }
"#
            ),
            "probes[1].icmp.family: probe \"b\": ipv4, but the target 2001:2:0:10::1 is an IPv6 \
             address\n\
             probes[2].source_ip.family: probe \"c\": ipv6, but the target 198.19.10.3 is an IPv4 \
             address\n\
             probes[3].path_mtu.family: probe \"d\": ipv6, but the target 198.19.10.1 is an IPv4 \
             address\n\
             probes[4].traceroute.family: probe \"e\": ipv4, but the target 2001:2:0:10::1 is an \
             IPv6 address"
        );
        assert!(
            errors("probes: [{name: a, tcp: {target: 'x.example:1', family: dual}}]")
                .starts_with("probes[0].tcp.family: unknown variant `dual`")
        );
    }

    #[test]
    fn both_splits_a_probe_of_a_name_into_a_check_per_family() {
        let config = parse(
            r#"
probes:
  - { name: a, tcp: { target: "dual.corp.example:389", family: both } }
  - { name: b, icmp: { target: dual.corp.example, family: both } }
  - { name: c, http: { url: "http://dual.corp.example/", family: both } }
  - { name: d, tcp: { target: "dual.corp.example:389", family: ipv6 } }
  - { name: e, dns: { query: dual.corp.example } }
"#,
        )
        .unwrap();
        let families: Vec<_> = config.probes.iter().map(|p| p.families()).collect();
        let split = &[Some(Family::Ipv4), Some(Family::Ipv6)][..];
        assert_eq!(families, vec![split, split, split, &[None], &[None]]);
        assert_eq!(
            errors(
                r#"
probes:
  - { name: a, tcp: { target: "198.19.10.1:389", family: both } }
  - { name: b, icmp: { target: "2001:2:0:10::1", family: both } }
  - { name: c, traceroute: { target: gateway, family: both } }
"#
            ),
            "probes[0].tcp.family: probe \"a\": both, but the target 198.19.10.1 is an IPv4 \
             address: only a host name has an address of each family to probe; write ipv4, ipv6 \
             or any\n\
             probes[1].icmp.family: probe \"b\": both, but the target 2001:2:0:10::1 is an IPv6 \
             address: only a host name has an address of each family to probe; write ipv4, ipv6 \
             or any\n\
             probes[2].traceroute.family: probe \"c\": both, but the target is the gateway: each \
             family has its own default route, so write one probe with ipv4 and one with ipv6"
        );
        assert_eq!(
            errors(
                "probes: [{name: d, http: {url: 'http://dual.corp.example/', family: both, \
                 resolve_to: 198.19.10.1}}]"
            ),
            "probes[0].http: resolve_to: 198.19.10.1 pins one address, but family: both probes \
             one of each family; leave one of them out"
        );
    }

    #[test]
    fn full_example_parses_with_defaults_applied() {
        let config = parse(
            r#"
netns:
  pod: {}
  host: { path: /var/run/netns/x, resolv_conf: /tmp/resolv.conf }
defaults: { interval: 5s, timeout: 1s, fail_after: 3 }
probes:
  - name: dc1-ldap
    tcp: { target: "198.19.10.1:389" }
  - name: dc1-ping
    netns: [host]
    interval: 30s
    icmp: { target: "${HOST_IP}", count: 5 }
"#,
        )
        .unwrap();
        assert_eq!(config.namespaces.len(), 2);
        assert_eq!(
            config.namespace(NetnsId::Host).unwrap().path.as_deref(),
            Some(Path::new("/var/run/netns/x"))
        );
        let ldap = &config.probes[0];
        assert_eq!(ldap.interval, Duration::from_secs(5));
        assert_eq!(ldap.timeout, Duration::from_secs(1));
        assert_eq!((ldap.fail_after, ldap.recover_after), (3, 1));
        assert_eq!(ldap.netns, vec![NetnsId::Pod, NetnsId::Host]);
        let ping = &config.probes[1];
        assert_eq!(ping.netns, vec![NetnsId::Host]);
        assert_eq!(ping.interval, Duration::from_secs(30));
        match &ping.kind {
            ProbeKind::Icmp(icmp) => {
                assert_eq!(icmp.count, 5);
                assert_eq!(icmp.target.to_string(), "198.18.1.4");
            }
            other => panic!("expected icmp, got {other:?}"),
        }
    }

    #[test]
    fn on_demand_is_off_unless_enabled_and_its_interval_is_validated() {
        let probes = "probes: [{name: a, tcp: {target: 'x:80'}}]";
        let config = parse(probes).unwrap();
        assert_eq!(config.on_demand, OnDemandConfig::default());
        assert!(!config.on_demand.enabled);
        let config = parse(&format!(
            "on_demand: {{enabled: true, min_interval: 30s}}\n{probes}"
        ))
        .unwrap();
        assert!(config.on_demand.enabled);
        assert_eq!(config.on_demand.min_interval, Duration::from_secs(30));
        for (yaml, error) in [
            (
                "on_demand: {min_interval: 0s}",
                "on_demand.min_interval: must be longer than zero",
            ),
            (
                "on_demand: {enabled: yes please}",
                "on_demand.enabled: invalid type",
            ),
            (
                "on_demand: {target: 'x:1'}",
                "on_demand.target: unknown field `target`",
            ),
        ] {
            let found = errors(&format!("{yaml}\n{probes}"));
            assert!(found.contains(error), "{yaml}: {found}");
        }
    }

    #[test]
    fn without_netns_section_both_namespaces_are_used() {
        let config = parse("probes: [{name: a, tcp: {target: '198.19.10.1:80'}}]").unwrap();
        let ids: Vec<NetnsId> = config.namespaces.iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![NetnsId::Pod, NetnsId::Host]);
        assert_eq!(
            config.namespace(NetnsId::Host).unwrap().path.as_deref(),
            Some(Path::new(DEFAULT_HOST_NETNS))
        );
    }

    #[test]
    fn errors_name_the_path_and_the_problem() {
        let cases = [
            (
                "probes: [{name: a, tcp: {target: '198.19.10.300:80'}}]",
                r#"probes[0].tcp.target: "198.19.10.300:80" is not a valid address"#,
            ),
            (
                "probes: [{name: a, tcp: {target: '198.19.10.1'}}]",
                r#"probes[0].tcp.target: "198.19.10.1" is not a valid address (expected HOST:PORT)"#,
            ),
            (
                "probes: [{name: a, tcp: {target: 'x:80'}, colour: red}]",
                "probes[0].colour: unknown field `colour`, expected one of `name`",
            ),
            (
                "probes: [{name: a, icmp: {target: 198.19.10.1, count: 0}}]",
                "probes[0].icmp.count: must be between 1 and 100",
            ),
            (
                "probes: [{name: a, interval: 1s, timeout: 2s, tcp: {target: 'x:80'}}]",
                "probes[0].timeout: 2s is longer than the interval 1s",
            ),
            (
                "probes: [{name: a, interval: soon, tcp: {target: 'x:80'}}]",
                r#"probes[0].interval: "soon" is not a duration (use e.g. 500ms, 10s, 1m)"#,
            ),
            (
                "defaults: {interval: 500000000000y, timeout: 1s}\nprobes: [{name: a, tcp: {target: 'x:80'}}]",
                r#"defaults.interval: "500000000000y" is longer than 1day"#,
            ),
            (
                "probes: [{name: a, interval: 25h, timeout: 2s, tcp: {target: 'x:80'}}]",
                r#"probes[0].interval: "25h" is longer than 1day"#,
            ),
            ("probes: []", "probes: no probes are configured"),
            (
                "probes: [{name: a, fail_after: 0, tcp: {target: 'x:80'}}]",
                "probes[0].fail_after: must be between 1 and 100 rounds",
            ),
            (
                "probes: [{name: a}]",
                "probes[0]: no probe kind: add one of tcp, icmp, dns, source_ip, route, path_mtu, traceroute",
            ),
            (
                "probes: [{name: a, tcp: {target: 'x:80'}, icmp: {target: x}}]",
                "probes[0]: exactly one probe kind per probe, found tcp and icmp",
            ),
            (
                "netns: {pod: {}}\nprobes: [{name: a, netns: [host], tcp: {target: 'x:80'}}]",
                "probes[0].netns[0]: host is not configured under netns",
            ),
            (
                "probes: [{name: a, netns: [moon], tcp: {target: 'x:80'}}]",
                "probes[0].netns[0]: unknown variant `moon`, expected `pod` or `host`",
            ),
            (
                "probes: [{name: 'Bad Name', tcp: {target: 'x:80'}}]",
                r#"probes[0].name: "Bad Name" is not a valid probe name (1-63 of a-z, 0-9, '-', '_', '.')"#,
            ),
            (
                "probes: [{name: a, icmp: {target: '${NOPE}'}}]",
                "probes[0].icmp.target: environment variable NOPE is not set",
            ),
            ("probes: [", "not valid YAML"),
            (
                "probes: [{name: a, expect: closed, tcp: {target: 'x:80'}}]",
                "probes[0].expect: unknown variant `closed`, expected `reachable` or `blocked`",
            ),
            (
                "probes: [{name: a, thresholds: {window: 31}, tcp: {target: 'x:80'}}]",
                "probes[0].thresholds.window: must be between 1 and 30 rounds",
            ),
            (
                "probes: [{name: a, thresholds: {failed: {warning: 0.6, fail: 0.5}}, tcp: {target: 'x:80'}}]",
                "probes[0].thresholds.failed: warning must not be above fail",
            ),
            (
                "probes: [{name: a, thresholds: {failed: {warning: 0.1, fail: 2}}, tcp: {target: 'x:80'}}]",
                "probes[0].thresholds.failed.fail: 2 is not a ratio between 0 and 1",
            ),
            (
                "defaults: {thresholds: {window: 5, min_rounds: 6}}\nprobes: [{name: a, tcp: {target: 'x:80'}}]",
                "defaults.thresholds.min_rounds: 6 is more than the window of 5 rounds",
            ),
            (
                "defaults: {thresholds: {window: 5}}\nprobes: [{name: a, thresholds: {min_rounds: 8}, tcp: {target: 'x:80'}}]",
                "probes[0].thresholds.min_rounds: 8 is more than the window of 5 rounds",
            ),
            (
                "probes: [{name: a, thresholds: {round_trip: {warning: 1s}}, tcp: {target: 'x:80'}}]",
                "probes[0].thresholds.round_trip: missing field `fail`",
            ),
        ];
        for (text, want) in cases {
            let got = errors(text);
            assert!(
                got.contains(want),
                "for {text:?}\n want: {want}\n  got: {got}"
            );
        }
    }

    /// A namespace listed twice, even apart, runs the probe there once.
    #[test]
    fn a_probe_runs_once_in_each_listed_namespace() {
        let config =
            parse("probes: [{name: a, netns: [pod, host, pod], tcp: {target: 'x:80'}}]").unwrap();
        assert_eq!(config.probes[0].netns, vec![NetnsId::Pod, NetnsId::Host]);
    }

    #[test]
    fn duplicate_names_are_reported_on_the_later_probe() {
        let got = errors(
            "probes:\n - {name: a, tcp: {target: 'x:1'}}\n - {name: a, tcp: {target: 'x:2'}}",
        );
        assert_eq!(
            got,
            r#"probes[1].name: "a" is used by an earlier probe; names must be unique"#
        );
    }

    #[test]
    fn thresholds_lay_a_probe_over_the_defaults_key_by_key() {
        let config = parse(
            r#"
defaults:
  thresholds: { window: 20, failed: { warning: 0.2, fail: 0.6 } }
probes:
  - { name: plain, tcp: { target: "x:1" } }
  - name: slow
    expect: blocked
    thresholds: { min_rounds: 5, round_trip: { warning: 100ms, fail: 300ms } }
    tcp: { target: "x:2" }
"#,
        )
        .unwrap();
        let (plain, slow) = (&config.probes[0], &config.probes[1]);
        assert_eq!(plain.expect, Expect::Reachable);
        assert_eq!(slow.expect, Expect::Blocked);
        let failed = Levels {
            warning: 0.2,
            fail: 0.6,
        };
        assert_eq!(
            plain.thresholds,
            Thresholds {
                window: 20,
                min_rounds: 3,
                failed,
                round_trip: None,
            }
        );
        assert_eq!(
            slow.thresholds,
            Thresholds {
                window: 20,
                min_rounds: 5,
                failed,
                round_trip: Some(Levels {
                    warning: Duration::from_millis(100),
                    fail: Duration::from_millis(300),
                }),
            }
        );
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let got = errors(
            "probes:\n - {name: a, interval: 1s, timeout: 3s, tcp: {target: 'x:1'}}\n - {name: b}",
        );
        assert_eq!(got.lines().count(), 2, "{got}");
    }
}
