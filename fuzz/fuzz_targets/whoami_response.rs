//! Fuzzes the source_ip probe's reading of an HTTP whoami answer: any bytes give an address or
//! a reason, and a reason is fit for a /healthz detail: short, one line, no control characters.
#![no_main]

use hybridprobe::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    for field in ["address", "ip"] {
        if let Err(why) = fuzzing::whoami_response(raw, field) {
            assert!(why.chars().count() <= 200, "{why:?}");
            assert!(!why.contains(char::is_control), "{why:?}");
        }
    }
});
