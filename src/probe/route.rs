//! The `route` probe: where does the kernel send traffic for a destination, from this namespace?
//!
//! The answer comes from netlink (`ip route get`): output interface, gateway and preferred
//! source. Routes on the Azure side of the node (UDRs, BGP propagation) are invisible here; what
//! this catches is the local part: a lost on-prem prefix, a more specific route into a bridge, a
//! default route through the wrong interface.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};
use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::series::InfoSeries;
use super::{CheckLabels, Failure, Families, Measurements, Outcome, Probe, Reason, Target};
use crate::netns::NetnsContext;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// An address, or a prefix whose first address is looked up (`198.19.0.0/16`).
    #[serde(deserialize_with = "ip_or_cidr")]
    pub destination: IpNet,
    /// The gateway the route must use.
    #[serde(default, deserialize_with = "some_ip")]
    pub via: Option<IpAddr>,
    /// The interface the route must leave by.
    pub dev: Option<String>,
    /// The preferred source address the route must have.
    #[serde(default, deserialize_with = "some_ip")]
    pub src: Option<IpAddr>,
    /// Interfaces the route must not leave by: the node's bridges (`docker0`, `cbr0`, `cni0`),
    /// whose ranges capture an on-prem prefix they overlap.
    #[serde(default)]
    pub not_dev: Vec<String>,
    /// Ranges the destination must not overlap: the cluster's Service and pod CIDRs, whose
    /// traffic kube-proxy or the CNI takes before any route is consulted.
    #[serde(default, deserialize_with = "cidrs")]
    pub not_overlapping: Vec<IpNet>,
}

/// What the kernel answered for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// As configured: the address or the prefix.
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    pub dev: String,
    pub src: Option<IpAddr>,
    /// The output interface's MTU (not a cached path MTU).
    pub dev_mtu: u32,
    /// The path MTU the kernel holds for the destination: one learned from a "fragmentation
    /// needed" (a cached exception, as `ip route get` shows `cache ... mtu 1400`) or set on the
    /// route. `None` when the device MTU applies.
    pub mtu: Option<u32>,
}

/// A route round's measurement: `None` when there is no route at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteReport {
    pub route: Option<Route>,
}

impl fmt::Display for Route {
    /// `198.19.0.0/16 via 198.18.1.1 dev eth0 src 198.18.1.4`, as `ip route` would say it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.destination.prefix_len() == self.destination.max_prefix_len() {
            write!(f, "{}", self.destination.addr())?;
        } else {
            write!(f, "{}", self.destination)?;
        }
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        write!(f, " dev {}", self.dev)?;
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        Ok(())
    }
}

/// Parses `198.19.0.0/16` or `198.19.10.1` (a single address); used wherever config takes either.
pub fn parse_ip_or_cidr(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

pub fn ip_or_cidr<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let text = String::deserialize(d)?;
    parse_ip_or_cidr(&text)
        .ok_or_else(|| de::Error::custom(format!("{text:?} is not a valid address or prefix")))
}

pub fn some_ip_or_cidr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
    ip_or_cidr(d).map(Some)
}

fn cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|text| {
            parse_ip_or_cidr(text).ok_or_else(|| {
                de::Error::custom(format!("{text:?} is not a valid address or prefix"))
            })
        })
        .collect()
}

fn some_ip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse::<IpAddr>()
        .map(Some)
        .map_err(|_| de::Error::custom(format!("{text:?} is not a valid IP address")))
}

impl Probe for RouteSpec {
    type Measurements = RouteReport;
    type Series = InfoSeries;

    fn register(families: &mut dyn Families) -> InfoSeries {
        InfoSeries::new(families.gauges(
            "hybridprobe_route_info",
            "Always 1; the gateway and dev labels say where the kernel routes the destination \
             (gateway empty when on-link).",
            &CheckLabels::names(&["gateway", "dev"]),
        ))
    }

    fn describe(&self) -> String {
        format!("route lookup {}", self.destination)
    }

    async fn run(&self, ctx: &NetnsContext, _budget: Duration) -> Result<Outcome, Failure> {
        self.round(ctx).await
    }

    /// One `_info` series per check: a new route replaces the old series; no route removes it.
    fn observe(series: &InfoSeries, check: CheckLabels<'_>, measured: &RouteReport) {
        let labels = measured.route.as_ref().map(|route| {
            vec![
                route.gateway.map(|g| g.to_string()).unwrap_or_default(),
                route.dev.clone(),
            ]
        });
        series.set(check, labels);
    }

    fn forget(series: &InfoSeries, check: CheckLabels<'_>) {
        series.forget(check);
    }

    /// A route lookup reaches nothing: it asks the local kernel.
    fn targets(&self, _failure: Option<&Failure>) -> Vec<Target> {
        Vec::new()
    }
}

impl RouteSpec {
    async fn round(&self, ctx: &NetnsContext) -> Result<Outcome, Failure> {
        let route = match lookup(self.destination, ctx).await {
            Ok(route) => route,
            Err(failure) if failure.reason == Reason::Unreachable => {
                return Err(Failure {
                    measurements: Measurements::Route(RouteReport { route: None }),
                    ..failure
                })
            }
            Err(failure) => return Err(failure),
        };
        let wrong = self.mismatches(&route);
        let measurements = Measurements::Route(RouteReport {
            route: Some(route.clone()),
        });
        if wrong.is_empty() {
            return Ok(Outcome {
                detail: route.to_string(),
                measurements,
                resolved: None,
            });
        }
        Err(Failure {
            reason: Reason::Mismatch,
            detail: format!("{route} (expected {})", wrong.join(", ")),
            measurements,
            resolved: None,
        })
    }

    /// The expectations the route breaks, as `via 198.18.9.9`.
    fn mismatches(&self, route: &Route) -> Vec<String> {
        let mut wrong = Vec::new();
        if let Some(via) = self.via {
            if route.gateway != Some(via) {
                wrong.push(format!("via {via}"));
            }
        }
        if let Some(dev) = &self.dev {
            if &route.dev != dev {
                wrong.push(format!("dev {dev}"));
            }
        }
        if let Some(src) = self.src {
            if route.src != Some(src) {
                wrong.push(format!("src {src}"));
            }
        }
        wrong.extend(self.overlaps(route));
        wrong
    }

    /// How the route or the destination overlaps what must stay apart from it: `not dev
    /// docker0`, `not overlapping 10.0.0.0/16`.
    pub fn overlaps(&self, route: &Route) -> Vec<String> {
        let mut found = Vec::new();
        if self.not_dev.contains(&route.dev) {
            found.push(format!("not dev {}", route.dev));
        }
        for range in &self.not_overlapping {
            if range.contains(&self.destination) || self.destination.contains(range) {
                found.push(format!("not overlapping {range}"));
            }
        }
        found
    }
}

/// Asks the kernel of the calling thread's namespace for its route to `destination` (the first
/// address of a prefix). No route at all is `Reason::Unreachable`.
pub async fn lookup(destination: IpNet, ctx: &NetnsContext) -> Result<Route, Failure> {
    let failed = |what: &str, e: rtnetlink::Error| {
        let reason = match &e {
            rtnetlink::Error::NetlinkError(message) => Reason::of_io(&message.to_io()),
            _ => Reason::Error,
        };
        Failure::new(reason, format!("{what} in the {} namespace: {e}", ctx.id))
    };
    // The socket joins the namespace of the thread creating it: this one, the probe's.
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| {
        Failure::new(
            Reason::of_io(&e),
            format!("open a netlink socket in the {} namespace: {e}", ctx.id),
        )
    })?;
    let connection = AbortOnDrop(tokio::spawn(connection));
    let address = destination.network();
    let message = match address {
        IpAddr::V4(v4) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(v4, 32)
            .build(),
        IpAddr::V6(v6) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(v6, 128)
            .build(),
    };
    let answer: Option<RouteMessage> = handle
        .route()
        .get(message)
        .execute()
        .try_next()
        .await
        .map_err(|e| {
            let mut failure = failed(&format!("route lookup for {address}"), e);
            if failure.reason == Reason::Unreachable {
                failure.detail = format!("no route to {address} in the {} namespace", ctx.id);
            }
            failure
        })?;
    let answer = answer.ok_or_else(|| {
        Failure::new(
            Reason::Unreachable,
            format!("no route to {address} in the {} namespace", ctx.id),
        )
    })?;
    if !matches!(answer.header.kind, RouteType::Unicast | RouteType::Local) {
        return Err(Failure::new(
            Reason::Unreachable,
            format!(
                "the route to {address} in the {} namespace is of type {:?}",
                ctx.id, answer.header.kind
            ),
        ));
    }
    let (gateway, src, oif) = route_fields(&answer);
    let oif = oif.ok_or_else(|| {
        Failure::new(
            Reason::Error,
            format!("the route to {address} names no output interface"),
        )
    })?;
    let (dev, dev_mtu) = link(&handle, oif)
        .await
        .map_err(|e| failed(&format!("interface {oif}"), e))?;
    drop(connection);
    Ok(Route {
        destination,
        gateway,
        dev,
        src,
        dev_mtu,
        mtu: path_mtu(&answer),
    })
}

/// Gateway, preferred source and output interface index of a route message.
fn route_fields(message: &RouteMessage) -> (Option<IpAddr>, Option<IpAddr>, Option<u32>) {
    let ip = |address: &RouteAddress| match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    let (mut gateway, mut src, mut oif) = (None, None, None);
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Gateway(a) => gateway = ip(a),
            RouteAttribute::PrefSource(a) => src = ip(a),
            RouteAttribute::Oif(index) => oif = Some(*index),
            _ => {}
        }
    }
    (gateway, src, oif)
}

/// The MTU among a route message's metrics: a cached exception or the route's own.
fn path_mtu(message: &RouteMessage) -> Option<u32> {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Metrics(metrics) => metrics.iter().find_map(|metric| match metric {
                RouteMetric::Mtu(mtu) => Some(*mtu),
                _ => None,
            }),
            _ => None,
        })
}

/// Name and MTU of the interface with `index`.
async fn link(handle: &Handle, index: u32) -> Result<(String, u32), rtnetlink::Error> {
    let message = handle
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await?;
    let attributes = message.map(|m| m.attributes).unwrap_or_default();
    let name = attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    });
    let mtu = attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    });
    Ok((
        name.unwrap_or_else(|| format!("if{index}")),
        mtu.unwrap_or(0),
    ))
}

/// Stops the netlink connection task with the lookup, even when the lookup is cancelled.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        Route {
            destination: "198.19.0.0/16".parse().unwrap(),
            gateway: Some("198.18.1.1".parse().unwrap()),
            dev: "eth0".into(),
            src: Some("198.18.1.4".parse().unwrap()),
            dev_mtu: 1500,
            mtu: None,
        }
    }

    fn spec(yaml: &str) -> Result<RouteSpec, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn routes_read_like_ip_route() {
        assert_eq!(
            route().to_string(),
            "198.19.0.0/16 via 198.18.1.1 dev eth0 src 198.18.1.4"
        );
        let direct = Route {
            destination: "198.19.10.1/32".parse().unwrap(),
            gateway: None,
            src: None,
            ..route()
        };
        assert_eq!(direct.to_string(), "198.19.10.1 dev eth0");
    }

    #[test]
    fn every_broken_expectation_is_named() {
        let all_wrong =
            spec("{destination: 198.19.0.0/16, via: 198.18.9.9, dev: vpn, src: 198.18.2.10}")
                .unwrap();
        assert_eq!(
            all_wrong.mismatches(&route()),
            vec!["via 198.18.9.9", "dev vpn", "src 198.18.2.10"]
        );
        let right = spec("{destination: 198.19.0.0/16, via: 198.18.1.1, dev: eth0}").unwrap();
        assert!(right.mismatches(&route()).is_empty());
        let bare = spec("{destination: 198.19.10.1}").unwrap();
        assert!(bare.mismatches(&route()).is_empty());
        let on_link = Route {
            gateway: None,
            ..route()
        };
        assert_eq!(right.mismatches(&on_link), vec!["via 198.18.1.1"]);
    }

    #[test]
    fn a_route_into_a_bridge_or_an_overlapping_range_is_named() {
        let bridge = Route {
            gateway: None,
            dev: "docker0".into(),
            ..route()
        };
        let guarded = spec(
            "{destination: 198.19.0.0/16, not_dev: [cbr0, docker0], \
             not_overlapping: [198.19.128.0/17, 10.0.0.0/16]}",
        )
        .unwrap();
        assert_eq!(
            guarded.overlaps(&bridge),
            vec!["not dev docker0", "not overlapping 198.19.128.0/17"]
        );
        assert_eq!(
            guarded.overlaps(&route()),
            vec!["not overlapping 198.19.128.0/17"]
        );
        let wider = spec("{destination: 198.19.10.1, not_overlapping: [198.16.0.0/12]}").unwrap();
        assert_eq!(
            wider.overlaps(&route()),
            vec!["not overlapping 198.16.0.0/12"]
        );
        let apart = spec(
            "{destination: 198.19.0.0/16, not_dev: [docker0], not_overlapping: [10.0.0.0/16]}",
        )
        .unwrap();
        assert!(apart.mismatches(&route()).is_empty());
        assert!(spec("{destination: 198.19.0.0/16, not_overlapping: [svc]}")
            .unwrap_err()
            .contains(r#""svc" is not a valid address or prefix"#));
    }

    #[test]
    fn destinations_and_expectations_are_validated() {
        let first = spec("{destination: 198.19.0.0/16}").unwrap();
        assert_eq!(first.destination.network().to_string(), "198.19.0.0");
        let host = spec("{destination: 198.19.10.1}").unwrap();
        assert_eq!(host.destination.prefix_len(), 32);
        assert!(spec("{destination: 198.19.0.0/33}")
            .unwrap_err()
            .contains(r#""198.19.0.0/33" is not a valid address or prefix"#));
        assert!(spec("{destination: 198.19.0.0/16, via: gw}")
            .unwrap_err()
            .contains(r#""gw" is not a valid IP address"#));
        assert!(spec("{destination: 198.19.0.0/16, gateway: 1.2.3.4}")
            .unwrap_err()
            .contains("unknown field `gateway`"));
    }
}
