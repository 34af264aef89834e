//! Fuzzes the reader of the kernel's per-CPU conntrack counters (`/proc/net/stat/nf_conntrack`,
//! whose columns vary by kernel): never a panic or an overflow, and an answer only for text
//! whose every CPU line is hex.
#![no_main]

use hybridprobe::probe::conntrack::Events;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(events) = Events::parse(text) {
        let cpus = text.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
        assert!(cpus > 0 || events == Events::default(), "{events:?} from no CPU line");
    }
});
