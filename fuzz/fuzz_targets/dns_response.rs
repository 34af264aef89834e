//! Fuzzes what the dns probe does with a server's answer: any bytes hickory decodes must be
//! judged against every kind of expectation without a panic, and the detail shown in /healthz
//! stays one line however hostile the records.
#![no_main]

use hybridprobe::fuzzing::holds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| holds::dns_response(data));
