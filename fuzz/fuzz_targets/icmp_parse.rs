//! Fuzzes the raw ICMP parser that path_mtu and traceroute feed every ICMP message the namespace
//! receives: any bytes are a message or `Other`, and what an error quotes reads safely.
#![no_main]

use hybridprobe::probe::raw::{self, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|packet: &[u8]| {
    if let Message::Error { quoted, .. } = raw::parse(packet) {
        let _ = (quoted.echo(), quoted.ports());
    }
});
