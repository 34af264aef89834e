//! Fuzzes the HTTP client's reading of a server's reply, as both of its users read it: the
//! source_ip probe's whoami answer and the smoke check's /healthz verdict. Any bytes give an
//! answer or a reason; a reason is fit for a /healthz detail (short, one line, no control
//! characters), and one agent is one line of the smoke report, whatever its answer says.
#![no_main]

use hybridprobe::fuzzing;
use libfuzzer_sys::fuzz_target;

fn assert_fit(why: &str) {
    assert!(why.chars().count() <= 200, "{why:?}");
    assert!(!why.contains(char::is_control), "{why:?}");
}

fuzz_target!(|raw: &[u8]| {
    let readings = fuzzing::http_response(raw);
    for why in readings.whoami.iter().filter_map(|r| r.as_ref().err()) {
        assert_fit(why);
    }
    match readings.smoke {
        Ok(report) => {
            assert_eq!(report.lines().count(), 2, "{report:?}");
            assert!(
                !report.contains(|c: char| c.is_control() && c != '\n'),
                "{report:?}"
            );
        }
        Err(why) => assert_fit(&why),
    }
});
