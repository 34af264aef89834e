//! Fuzzes the config parser with any UTF-8 text, as `validate`, the agent and a reload read a
//! ConfigMap: it must never panic, its errors must render, and a config it accepts must hold the
//! invariants the scheduler and the probes rely on.
#![no_main]

use hybridprobe::fuzzing::holds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| holds::config_parse(data));
