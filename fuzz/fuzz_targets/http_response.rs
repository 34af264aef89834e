//! Fuzzes the HTTP client's reading of a server's reply, as both of its users read it: the
//! source_ip probe's whoami answer and the smoke check's /healthz verdict. Any bytes give an
//! answer or a reason; a reason is fit for a /healthz detail (short, one line, no control
//! characters), and one agent is one line of the smoke report, whatever its answer says.
#![no_main]

use hybridprobe::fuzzing::holds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| holds::http_response(data));
