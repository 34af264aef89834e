//! Wire code shared by the probes and the reflector: STUN, conntrack over netlink.

pub mod conntrack;
pub mod stun;
