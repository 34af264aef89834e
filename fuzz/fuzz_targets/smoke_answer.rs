//! Fuzzes the smoke check's reading of an agent's /healthz answer: any bytes are a verdict or a
//! short reason, and one agent is one line of the report, whatever its answer says.
#![no_main]

use hybridprobe::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    match fuzzing::smoke_answer(raw) {
        Ok(report) => {
            assert_eq!(report.lines().count(), 2, "{report:?}");
            assert!(
                !report.contains(|c: char| c.is_control() && c != '\n'),
                "{report:?}"
            );
        }
        Err(why) => {
            assert!(why.chars().count() <= 200, "{why:?}");
            assert!(!why.contains(char::is_control), "{why:?}");
        }
    }
});
