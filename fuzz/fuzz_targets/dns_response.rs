//! Fuzzes what the dns probe does with a server's answer: any bytes hickory decodes must be
//! judged against every kind of expectation without a panic, and the detail shown in /healthz
//! stays one line however hostile the records.
#![no_main]

use hybridprobe::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|wire: &[u8]| {
    for round in fuzzing::dns_response(wire).into_iter().flatten() {
        let detail = match &round {
            Ok(outcome) => &outcome.detail,
            Err(failure) => &failure.detail,
        };
        assert!(!detail.contains(char::is_control), "{detail:?}");
    }
});
