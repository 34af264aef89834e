//! The route and path MTU pieces: what `ip route get` says in the namespace, from one netlink
//! lookup through the `route` probe's own.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::{Piece, What};
use crate::netns::NetnsContext;
use crate::probe::route::{lookup, Route};

const SOURCE: &str = "netlink RTM_GETROUTE (ip route get)";
const MTU_SOURCE: &str = "netlink RTM_GETROUTE, the route's MTU metric (ip route get ... mtu)";

/// The route the kernel picks toward `ip`, and the path MTU it holds for it.
pub(super) async fn pieces(ctx: &NetnsContext, ip: IpAddr, budget: Duration) -> [Piece; 2] {
    let netns = ctx.id;
    match tokio::time::timeout(budget, lookup(IpNet::from(ip), ctx)).await {
        Ok(Ok(route)) => [
            Piece::text(What::Route, netns, SOURCE, route_text(&route)),
            Piece::text(What::PathMtu, netns, MTU_SOURCE, mtu_text(&route)),
        ],
        // No route at all is what the route piece shows, not a missing piece.
        Ok(Err(failure)) => [
            Piece::text(What::Route, netns, SOURCE, failure.detail),
            Piece::unavailable(What::PathMtu, netns, MTU_SOURCE, "no route to read it from"),
        ],
        Err(_) => {
            let why = format!("no answer within {}", humantime::format_duration(budget));
            [
                Piece::unavailable(What::Route, netns, SOURCE, why.clone()),
                Piece::unavailable(What::PathMtu, netns, MTU_SOURCE, why),
            ]
        }
    }
}

fn route_text(route: &Route) -> String {
    format!("{route} (device MTU {})", route.dev_mtu)
}

/// The cached path MTU when the kernel holds one, else the device's.
fn mtu_text(route: &Route) -> String {
    match route.mtu {
        Some(mtu) => format!(
            "{} mtu {mtu} (cached or set on the route; dev {}'s MTU is {})",
            route.destination.addr(),
            route.dev,
            route.dev_mtu
        ),
        None => format!(
            "{}: no path MTU cached; dev {}'s MTU {} applies",
            route.destination.addr(),
            route.dev,
            route.dev_mtu
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(mtu: Option<u32>) -> Route {
        Route {
            destination: "198.19.10.1/32".parse().unwrap(),
            gateway: Some("198.18.1.1".parse().unwrap()),
            dev: "eth0".into(),
            src: Some("198.18.1.4".parse().unwrap()),
            dev_mtu: 1500,
            mtu,
        }
    }

    #[test]
    fn the_route_reads_like_ip_route_get_and_the_mtu_says_whose_it_is() {
        assert_eq!(
            route_text(&route(None)),
            "198.19.10.1 via 198.18.1.1 dev eth0 src 198.18.1.4 (device MTU 1500)"
        );
        assert_eq!(
            mtu_text(&route(None)),
            "198.19.10.1: no path MTU cached; dev eth0's MTU 1500 applies"
        );
        assert_eq!(
            mtu_text(&route(Some(1400))),
            "198.19.10.1 mtu 1400 (cached or set on the route; dev eth0's MTU is 1500)"
        );
    }
}
