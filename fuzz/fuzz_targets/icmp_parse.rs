//! Fuzzes the raw ICMP and ICMPv6 parsers that path_mtu and traceroute feed every ICMP message
//! the namespace receives: any bytes are a message or `Other`, and what an error quotes reads
//! safely.
#![no_main]

use hybridprobe::fuzzing::holds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| holds::icmp_parse(data));
