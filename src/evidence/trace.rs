//! The traceroute piece: a short UDP traceroute toward the target, run by the `traceroute`
//! probe's own code with few hops and a small budget, so a silent hop shows where the path ends.

use std::net::IpAddr;
use std::time::Duration;

use super::{Piece, What};
use crate::netns::NetnsContext;
use crate::probe::resolver::Resolver;
use crate::probe::target::Host;
use crate::probe::traceroute::{Protocol, TracerouteSpec, UDP_BASE_PORT};
use crate::probe::{Measurements, Probe};

pub(super) async fn piece(ctx: &NetnsContext, ip: IpAddr, hops: u8, budget: Duration) -> Piece {
    let netns = ctx.id;
    let source = format!(
        "UDP traceroute, {hops} hops, {}",
        humantime::format_duration(budget)
    );
    let spec = TracerouteSpec {
        target: Host::Ip(ip),
        protocol: Protocol::Udp,
        port: UDP_BASE_PORT,
        expect_hop: None,
        max_hops: hops,
        resolver: Resolver::System,
        family: Default::default(),
    };
    // The probe stops within its budget; the timeout only guards against it not doing so.
    let round = tokio::time::timeout(budget + budget / 10, spec.run(ctx, budget)).await;
    match round {
        Ok(Ok(outcome)) => Piece::text(What::Traceroute, netns, source, outcome.detail),
        // A trace that ran says how far it got; one that could not start says why.
        Ok(Err(failure)) => match failure.measurements {
            Measurements::Traceroute(_) => {
                Piece::text(What::Traceroute, netns, source, failure.detail)
            }
            _ => Piece::unavailable(What::Traceroute, netns, source, failure.detail),
        },
        Err(_) => Piece::unavailable(What::Traceroute, netns, source, "did not finish in time"),
    }
}
