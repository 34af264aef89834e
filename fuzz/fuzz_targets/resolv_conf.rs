//! Fuzzes the resolv.conf reader (the host's file, read through /proc/1/root) and the names its
//! search list makes: never a panic, ndots capped as glibc caps it, every name fully qualified.
#![no_main]

use hybridprobe::fuzzing::holds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| holds::resolv_conf(data));
