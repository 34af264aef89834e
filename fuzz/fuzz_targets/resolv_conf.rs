//! Fuzzes the resolv.conf reader (the host's file, read through /proc/1/root) and the names its
//! search list makes: never a panic, ndots capped as glibc caps it, every name fully qualified.
#![no_main]

use hybridprobe::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let (conf, names) = fuzzing::resolv_conf(text);
    assert!(conf.ndots <= 15);
    for name in names {
        assert!(name.ends_with('.'), "{name:?}");
    }
});
