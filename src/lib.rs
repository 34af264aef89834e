//! hybridprobe: a connectivity diagnostic agent for Kubernetes joined to on-premises networks.
//!
//! The folders are layers: each imports only from its own layer or those below it. The agent
//! judges on the write side and the HTTP handlers only read. ARCHITECTURE.md draws both, and
//! `.ci/checks/layers.sh` keeps the arrows one-way.

pub mod agent;
pub mod config;
pub mod diagnose;
pub mod evidence;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod net;
pub mod netns;
pub mod node_condition;
pub mod probe;
pub mod reflect;
pub mod results;
pub mod smoke;
