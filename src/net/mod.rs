//! Wire code shared by the probes and the reflector: STUN, conntrack over netlink, the transport
//! enum.

pub mod conntrack;
pub mod stun;
pub mod transport;

pub use transport::Transport;
