//! Fuzzes the `http` probe's reading of a forward proxy's reply to CONNECT: any bytes give "read
//! more", an open tunnel or a typed reason, and a reason's detail is fit for /healthz (bounded,
//! one line, no control characters).
#![no_main]

use hybridprobe::fuzzing;
use hybridprobe::probe::Reason;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    if let Some(Err((reason, why))) = fuzzing::proxy_reply(raw) {
        assert!(
            matches!(reason, Reason::ProxyRefused | Reason::ProxyError),
            "{reason}"
        );
        assert!(why.chars().count() <= 400, "{why:?}");
        assert!(!why.contains(char::is_control), "{why:?}");
    }
});
