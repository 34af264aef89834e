//! The `evidence:` section: whether the agent captures evidence when a check turns failing, how
//! often at most, and how long a capture may take.

use std::time::Duration;

use serde::Deserialize;

use super::{problem, Problem, Timing};

/// How evidence is captured when a check turns failing (see `docs/configuration.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceConfig {
    /// Captures on failure; off, the agent captures nothing by itself.
    pub enabled: bool,
    /// At most one capture per check within this long: a flapping fault cannot produce more.
    pub min_interval: Duration,
    /// The most a whole capture may take; each piece has its own, smaller budget within it.
    pub timeout: Duration,
    /// Hops of the short traceroute a capture runs toward the target.
    pub traceroute_max_hops: u8,
    /// Captures running at once over every check; a failure past it is rate limited.
    pub max_concurrent: usize,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            enabled: true,
            min_interval: Duration::from_secs(5 * 60),
            timeout: Duration::from_secs(5),
            traceroute_max_hops: 5,
            max_concurrent: 2,
        }
    }
}

/// The longest a capture may take: it runs beside the rounds, and its evidence ages.
const MAX_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HOPS: u8 = 30;
const MAX_CONCURRENT: usize = 16;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvidence {
    enabled: Option<bool>,
    min_interval: Option<Timing>,
    timeout: Option<Timing>,
    traceroute_max_hops: Option<u8>,
    max_concurrent: Option<usize>,
}

impl RawEvidence {
    /// The section with defaults filled in, or every value out of range with its path.
    pub(super) fn validate(self) -> Result<EvidenceConfig, Vec<Problem>> {
        let defaults = EvidenceConfig::default();
        let mut problems = Vec::new();
        let timeout = self.timeout.map_or(defaults.timeout, |t| t.0);
        if timeout > MAX_TIMEOUT {
            problems.push(problem(
                "evidence.timeout",
                format!(
                    "{} is longer than {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(MAX_TIMEOUT)
                ),
            ));
        }
        let hops = self
            .traceroute_max_hops
            .unwrap_or(defaults.traceroute_max_hops);
        if !(1..=MAX_HOPS).contains(&hops) {
            problems.push(problem(
                "evidence.traceroute_max_hops",
                format!("must be between 1 and {MAX_HOPS}"),
            ));
        }
        let concurrent = self.max_concurrent.unwrap_or(defaults.max_concurrent);
        if !(1..=MAX_CONCURRENT).contains(&concurrent) {
            problems.push(problem(
                "evidence.max_concurrent",
                format!("must be between 1 and {MAX_CONCURRENT}"),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(EvidenceConfig {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            min_interval: self.min_interval.map_or(defaults.min_interval, |t| t.0),
            timeout,
            traceroute_max_hops: hops,
            max_concurrent: concurrent,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn parse(evidence: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "evidence: {evidence}\nprobes: [{{name: dc1, tcp: {{target: '198.19.10.1:389'}}}}]"
        );
        Config::parse(&text, &|_| None)
    }

    #[test]
    fn defaults_apply_and_each_key_overrides_its_own() {
        let config = Config::parse(
            "probes: [{name: dc1, tcp: {target: '198.19.10.1:389'}}]",
            &|_| None,
        )
        .unwrap();
        assert_eq!(config.evidence, super::EvidenceConfig::default());
        assert!(config.evidence.enabled);
        let set = parse("{enabled: false, min_interval: 1m, timeout: 2s, traceroute_max_hops: 8}")
            .unwrap()
            .evidence;
        assert!(!set.enabled);
        assert_eq!(set.min_interval.as_secs(), 60);
        assert_eq!(set.timeout.as_secs(), 2);
        assert_eq!(set.traceroute_max_hops, 8);
        assert_eq!(set.max_concurrent, 2);
    }

    #[test]
    fn out_of_range_values_name_their_path() {
        let err = parse("{timeout: 1m, traceroute_max_hops: 0, max_concurrent: 99}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("evidence.timeout: 1m is longer than 30s"),
            "{err}"
        );
        assert!(
            err.contains("evidence.traceroute_max_hops: must be between 1 and 30"),
            "{err}"
        );
        assert!(
            err.contains("evidence.max_concurrent: must be between 1 and 16"),
            "{err}"
        );
        let err = parse("{min_interval: soon}").unwrap_err().to_string();
        assert!(err.contains("evidence.min_interval"), "{err}");
        assert!(err.contains("is not a duration"), "{err}");
        let err = parse("{every: 5m}").unwrap_err().to_string();
        assert!(err.contains("unknown field `every`"), "{err}");
    }
}
