//! The `tcp` probe: can a connection to HOST:PORT be opened from this namespace?

use serde::Deserialize;
use tokio::net::TcpStream;

use std::time::Duration;

use super::resolver::Resolver;
use super::target::HostPort;
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
}

impl Probe for TcpSpec {
    type Measurements = ();
    type Series = ();

    fn register(_: &mut dyn Families) {}

    fn describe(&self) -> String {
        format!("tcp connect {}", self.target)
    }

    /// Connects to the first address of the target, then closes. A handshake is the whole test:
    /// it proves the route, the firewalls and the listener, and sends no payload.
    async fn run(&self, ctx: &NetnsContext, _budget: Duration) -> Result<Outcome, Failure> {
        let ips = self.target.host.resolve(ctx, &self.resolver).await?;
        let addr = std::net::SocketAddr::new(ips[0], self.target.port);
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
}
