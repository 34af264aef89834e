//! Wire code shared by the probes, the smoke check and the reflector: STUN, conntrack over
//! netlink, the HTTP/1 client, the accept loop, the transport enum.

pub mod accept;
pub mod conntrack;
pub mod http1;
pub mod stun;
pub mod transport;

pub use transport::Transport;
