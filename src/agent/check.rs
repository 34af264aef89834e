//! A check: one probe in one namespace (and over one address family, for a probe split by
//! `family: both`), planned from the config with the executor that reaches that namespace and
//! its own metric series.

use std::sync::Arc;

use crate::config::{Config, NamespaceConfig, ProbeConfig};
use crate::metrics::{CheckSeries, Metrics};
use crate::netns::{Executor, NetnsContext, NetnsId};
use crate::results::CheckKey;

/// One probe in one namespace (and family, when split), with the executor that reaches that
/// namespace and the check's own metric series.
pub struct Check {
    pub key: CheckKey,
    pub probe: Arc<ProbeConfig>,
    /// The probe's place in the config file, so reports follow the file's order.
    pub position: usize,
    pub executor: Executor,
    pub series: CheckSeries,
}

impl Check {
    pub fn netns(&self) -> NetnsId {
        self.key.netns
    }
}

/// A check a config asks for, before it has metric series.
pub(super) struct PlannedCheck {
    pub(super) key: CheckKey,
    pub(super) probe: Arc<ProbeConfig>,
    position: usize,
    pub(super) executor: Executor,
}

impl PlannedCheck {
    pub(super) fn into_check(self, metrics: &Metrics) -> Check {
        Check {
            series: metrics.check_series(self.key.labels(), self.probe.kind.name()),
            key: self.key,
            probe: self.probe,
            position: self.position,
            executor: self.executor,
        }
    }
}

/// Pairs every probe with the executors of the namespaces it runs in, a check per family for
/// a probe split by `family: both`.
pub(super) fn planned(probes: &[Arc<ProbeConfig>], executors: &[Executor]) -> Vec<PlannedCheck> {
    let mut checks = Vec::new();
    for (position, probe) in probes.iter().enumerate() {
        for executor in executors.iter().filter(|e| probe.netns.contains(&e.id())) {
            for family in probe.families() {
                checks.push(PlannedCheck {
                    key: CheckKey {
                        probe: probe.name.clone(),
                        netns: executor.id(),
                        family: *family,
                    },
                    probe: probe.clone(),
                    position,
                    executor: executor.clone(),
                });
            }
        }
    }
    checks
}

/// Every check of `probes`, with its series created.
pub fn plan(probes: &[Arc<ProbeConfig>], executors: &[Executor], metrics: &Metrics) -> Vec<Check> {
    planned(probes, executors)
        .into_iter()
        .map(|w| w.into_check(metrics))
        .collect()
}

/// One executor per configured namespace. A namespace that cannot be entered still gets one,
/// which reports why on every use. The host's is made first, so probes elsewhere can reach it.
pub fn executors(config: &Config) -> Vec<Executor> {
    let make = |ns: &NamespaceConfig, host: Option<Executor>| {
        let context = NetnsContext {
            id: ns.id,
            resolv_conf: ns.resolv_conf.clone(),
            host,
            kept: Default::default(),
        };
        match &ns.path {
            None => Executor::own(context),
            Some(path) => Executor::enter(context, path),
        }
    };
    let host = config.namespace(NetnsId::Host).map(|ns| make(ns, None));
    config
        .namespaces
        .iter()
        .map(|ns| match (&host, ns.id) {
            (Some(host), NetnsId::Host) => host.clone(),
            _ => make(ns, host.clone()),
        })
        .collect()
}
