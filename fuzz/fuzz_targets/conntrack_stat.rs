//! Fuzzes the reader of the kernel's per-CPU conntrack counters (`/proc/net/stat/nf_conntrack`,
//! whose columns vary by kernel): never a panic or an overflow, and an answer only for text
//! whose every CPU line is hex.
#![no_main]

use hybridprobe::fuzzing::holds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| holds::conntrack_stat(data));
