//! The built-in profile, used when no config is given: checks derived from the machine itself,
//! so the agent is useful on its first run anywhere.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{
    Config, EvidenceConfig, Expect, NamespaceConfig, OnDemandConfig, ProbeConfig, Thresholds,
};
use crate::netns::{self, NetnsId};
use crate::probe::dns::{DnsSpec, ResolvConf};
use crate::probe::icmp::IcmpSpec;
use crate::probe::resolver::Family;
use crate::probe::target::{default_gateway6, Host, HostPort};
use crate::probe::tcp::TcpSpec;
use crate::probe::ProbeKind;

const INTERVAL: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(2);

/// What the profile is derived from, gathered by [`Machine::read`] or given by tests.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// Namespaces with their resolv.conf text (empty when unreadable).
    pub namespaces: Vec<(NamespaceConfig, String)>,
    /// `KUBERNETES_SERVICE_HOST` and `_PORT`, when running in a pod.
    pub kubernetes: Option<(String, String)>,
    /// The namespaces with an IPv6 default route through a gateway.
    pub ipv6_gateway: Vec<NetnsId>,
}

impl Machine {
    /// Reads the machine: the pod namespace always, the host namespace when `host_netns` is set.
    pub fn read(namespaces: Vec<NamespaceConfig>) -> Machine {
        let ipv6_gateway = namespaces
            .iter()
            .filter(|ns| has_ipv6_gateway(ns))
            .map(|ns| ns.id)
            .collect();
        let namespaces = namespaces
            .into_iter()
            .map(|ns| {
                let text = std::fs::read_to_string(&ns.resolv_conf).unwrap_or_else(|e| {
                    tracing::warn!(netns = %ns.id, path = %ns.resolv_conf.display(), error = %e, "cannot read resolv.conf; no resolver checks for this namespace");
                    String::new()
                });
                (ns, text)
            })
            .collect();
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let kubernetes = env("KUBERNETES_SERVICE_HOST").map(|host| {
            (
                host,
                env("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into()),
            )
        });
        Machine {
            namespaces,
            kubernetes,
            ipv6_gateway,
        }
    }
}

/// Whether the namespace has an IPv6 default route through a gateway, read from a thread inside
/// it: `/proc/thread-self/net` shows the calling thread's namespace.
fn has_ipv6_gateway(ns: &NamespaceConfig) -> bool {
    let read = || std::fs::read_to_string("/proc/thread-self/net/ipv6_route");
    match netns::read_once(ns.path.as_deref(), read) {
        Ok(Ok(table)) => default_gateway6(&table).is_some(),
        Ok(Err(e)) => {
            tracing::info!(netns = %ns.id, error = %e, "no IPv6 route table; no IPv6 gateway check");
            false
        }
        Err(e) => {
            tracing::warn!(netns = %ns.id, error = %e, "cannot read the IPv6 routes; no IPv6 gateway check");
            false
        }
    }
}

/// The namespaces of the built-in profile: the agent's own and, if given, the host's.
pub fn namespaces(host_netns: Option<PathBuf>, host_resolv_conf: PathBuf) -> Vec<NamespaceConfig> {
    let pod = NamespaceConfig {
        id: NetnsId::Pod,
        path: None,
        resolv_conf: crate::config::DEFAULT_POD_RESOLV_CONF.into(),
    };
    let host = host_netns.map(|path| NamespaceConfig {
        id: NetnsId::Host,
        path: Some(path),
        resolv_conf: host_resolv_conf,
    });
    std::iter::once(pod).chain(host).collect()
}

/// Derives the checks: the default gateway by ICMP in every namespace, each namespace's
/// resolv.conf nameservers by a DNS query over UDP and TCP, and the Kubernetes API when running
/// in a pod.
pub fn config(machine: &Machine) -> Config {
    let all: Vec<NetnsId> = machine.namespaces.iter().map(|(ns, _)| ns.id).collect();
    let probe = |name: String, netns: Vec<NetnsId>, kind: ProbeKind| {
        Arc::new(ProbeConfig {
            name,
            interval: INTERVAL,
            timeout: TIMEOUT,
            fail_after: 1,
            recover_after: 1,
            netns,
            expect: Expect::Reachable,
            thresholds: Thresholds::default(),
            kind,
        })
    };
    let mut probes = vec![probe("gateway".into(), all.clone(), gateway(Family::Any))];
    if !machine.ipv6_gateway.is_empty() {
        let netns = machine.ipv6_gateway.clone();
        probes.push(probe("gateway-ipv6".into(), netns, gateway(Family::Ipv6)));
    }
    for (ns, resolv_conf) in &machine.namespaces {
        let conf = ResolvConf::parse(resolv_conf);
        let domain = conf.search.first().map(String::as_str);
        for (i, server) in conf.nameservers.iter().enumerate() {
            probes.push(probe(
                format!("nameserver-{}-{}", ns.id, i + 1),
                vec![ns.id],
                ProbeKind::Dns(DnsSpec::nameserver_check(*server, domain)),
            ));
        }
    }
    if let Some((host, port)) = &machine.kubernetes {
        let target = Host::parse(host).zip(port.parse().ok());
        match target {
            Some((host, port)) => probes.push(probe("kubernetes-api".into(), all, tcp(host, port))),
            None => {
                tracing::warn!(%host, %port, "KUBERNETES_SERVICE_HOST/PORT unusable; no API check")
            }
        }
    }
    Config {
        namespaces: machine
            .namespaces
            .iter()
            .map(|(ns, _)| ns.clone())
            .collect(),
        probes,
        evidence: EvidenceConfig::default(),
        // The built-in profile has no file to turn it on in: a write endpoint stays off.
        on_demand: OnDemandConfig::default(),
    }
}

fn tcp(host: Host, port: u16) -> ProbeKind {
    ProbeKind::Tcp(TcpSpec {
        target: HostPort { host, port },
        resolver: Default::default(),
        family: Family::Any,
    })
}

/// Pings the default gateway of `family`'s routes (`any`: the IPv4 one).
fn gateway(family: Family) -> ProbeKind {
    ProbeKind::Icmp(IcmpSpec {
        target: Host::Gateway,
        count: 3,
        size: 56,
        max_loss: 1.0,
        resolver: Default::default(),
        family,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each check's name, namespaces and description.
    fn summary(config: &Config) -> Vec<(String, Vec<NetnsId>, String)> {
        config
            .probes
            .iter()
            .map(|p| (p.name.clone(), p.netns.clone(), p.kind.describe()))
            .collect()
    }

    #[test]
    fn profile_checks_gateway_resolvers_and_api_per_namespace() {
        let ns = namespaces(Some("/proc/1/ns/net".into()), "/h/resolv.conf".into());
        let machine = Machine {
            namespaces: vec![
                (ns[0].clone(), "nameserver 198.18.0.10\n".into()),
                (
                    ns[1].clone(),
                    "search corp.example\nnameserver 198.19.10.1\nnameserver 198.19.10.2\n".into(),
                ),
            ],
            kubernetes: Some(("198.18.0.1".into(), "443".into())),
            ipv6_gateway: Vec::new(),
        };
        let summary = summary(&config(&machine));
        let both = vec![NetnsId::Pod, NetnsId::Host];
        assert_eq!(
            summary,
            vec![
                ("gateway".into(), both.clone(), "icmp echo gateway".into()),
                (
                    "nameserver-pod-1".into(),
                    vec![NetnsId::Pod],
                    "dns NS . via 198.18.0.10 over udp, tcp".into()
                ),
                (
                    "nameserver-host-1".into(),
                    vec![NetnsId::Host],
                    "dns SOA corp.example via 198.19.10.1 over udp, tcp".into()
                ),
                (
                    "nameserver-host-2".into(),
                    vec![NetnsId::Host],
                    "dns SOA corp.example via 198.19.10.2 over udp, tcp".into()
                ),
                (
                    "kubernetes-api".into(),
                    both,
                    "tcp connect 198.18.0.1:443".into()
                ),
            ]
        );
    }

    #[test]
    fn ipv6_gateways_and_nameservers_are_checked_where_they_are() {
        let ns = namespaces(Some("/proc/1/ns/net".into()), "/h/resolv.conf".into());
        let machine = Machine {
            namespaces: vec![
                (ns[0].clone(), "nameserver 2001:2:0:10::53\n".into()),
                (ns[1].clone(), "nameserver 198.19.10.1\n".into()),
            ],
            kubernetes: None,
            ipv6_gateway: vec![NetnsId::Host],
        };
        let summary = summary(&config(&machine));
        assert_eq!(
            summary[..3],
            [
                (
                    "gateway".into(),
                    vec![NetnsId::Pod, NetnsId::Host],
                    "icmp echo gateway".into()
                ),
                (
                    "gateway-ipv6".into(),
                    vec![NetnsId::Host],
                    "icmp echo gateway (ipv6)".into()
                ),
                (
                    "nameserver-pod-1".into(),
                    vec![NetnsId::Pod],
                    "dns NS . via 2001:2:0:10::53 over udp, tcp".into()
                ),
            ]
        );
    }

    #[test]
    fn without_host_namespace_only_the_pod_is_checked() {
        let ns = namespaces(None, "/unused".into());
        let machine = Machine {
            namespaces: vec![(ns[0].clone(), String::new())],
            kubernetes: None,
            ipv6_gateway: Vec::new(),
        };
        let config = config(&machine);
        assert_eq!(config.namespaces.len(), 1);
        assert_eq!(config.probes.len(), 1);
        assert_eq!(config.probes[0].netns, vec![NetnsId::Pod]);
    }
}
