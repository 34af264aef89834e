//! Fuzzes the reader of the kernel's answer to a conntrack GET (netlink, either address family):
//! never a panic, and a translation only to another address than the flow's own source.
#![no_main]

use hybridprobe::fuzzing::holds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| holds::conntrack_reply(data));
