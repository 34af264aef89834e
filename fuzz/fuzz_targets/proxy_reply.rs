//! Fuzzes the `http` probe's reading of a forward proxy's reply to CONNECT: any bytes give "read
//! more", an open tunnel or a typed reason, and a reason's detail is fit for /healthz (bounded,
//! one line, no control characters).
#![no_main]

use hybridprobe::fuzzing::holds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| holds::proxy_reply(data));
