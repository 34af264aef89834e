//! The `tcp` probe: can a connection to HOST:PORT be opened from this namespace?

use serde::Deserialize;
use tokio::net::TcpStream;

use super::target::HostPort;
use super::{Failure, Outcome, Reason, Report};
use crate::netns::NetnsContext;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {
    /// `HOST:PORT`; a host name is resolved in the probe's namespace on every round.
    pub target: HostPort,
}

impl TcpSpec {
    /// Connects to the first address of the target, then closes. A handshake is the whole test:
    /// it proves the route, the firewalls and the listener, and sends no payload.
    pub async fn run(&self, ctx: &NetnsContext) -> Result<Outcome, Failure> {
        let ips = self.target.host.resolve(ctx).await?;
        let addr = std::net::SocketAddr::new(ips[0], self.target.port);
        match TcpStream::connect(addr).await {
            Ok(_stream) => Ok(Outcome {
                detail: format!("connected to {addr}"),
                report: Report::None,
            }),
            Err(e) => Err(Failure::new(
                Reason::of_io(&e),
                format!("connect {addr}: {e}"),
            )),
        }
    }
}
