//! The `tcp` probe: can a connection to HOST:PORT be opened from this namespace?

use serde::Deserialize;
use tokio::net::TcpStream;

use std::time::Duration;

use super::resolver::{self, Family, Resolver};
use super::target::{Host, HostPort};
use super::{Failure, Families, Measurements, Outcome, Probe, Reason, Target};
use crate::netns::NetnsContext;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {
    /// `HOST:PORT`; a host name is resolved in the probe's namespace on every round.
    pub target: HostPort,
    /// Who resolves a host name: `system` (the namespace's resolv.conf) or a list of servers.
    #[serde(default)]
    pub resolver: Resolver,
    /// Which addresses of the host are probed: `any` (A first), `ipv4` or `ipv6`.
    #[serde(default)]
    pub family: Family,
}

impl Probe for TcpSpec {
    type Measurements = ();
    type Series = ();

    fn register(_: &mut dyn Families) {}

    fn describe(&self) -> String {
        format!("tcp connect {}{}", self.target, self.family.note())
    }

    /// Connects to the first address of the target, then closes. A handshake is the whole test:
    /// it proves the route, the firewalls and the listener, and sends no payload.
    async fn run(&self, ctx: &NetnsContext, _budget: Duration) -> Result<Outcome, Failure> {
        let host = &self.target.host;
        let ips = host
            .resolve_family(ctx, &self.resolver, self.family)
            .await?;
        let addr = resolver::socket_addr(ips[0], self.target.port);
        match TcpStream::connect(addr).await {
            Ok(_stream) => Ok(Outcome::new(
                format!("connected to {addr}"),
                Measurements::None,
            )),
            Err(e) => Err(Failure::new(
                Reason::of_io(&e),
                format!("connect {addr}: {e}"),
            )),
        }
    }

    fn targets(&self, failure: Option<&Failure>) -> Vec<Target> {
        vec![Target::by_reason(
            &self.target.host,
            self.target.to_string(),
            failure,
        )]
    }

    fn family(&self) -> Option<(&Host, Family)> {
        Some((&self.target.host, self.family))
    }
}
