//! Fuzzes the STUN decoder with what a reflector or a probe might receive: any bytes must decode
//! to a message or an error, and an answer to a request is never longer than the fixed response.
#![no_main]

use hybridprobe::fuzzing::holds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| holds::stun_decode(data));
