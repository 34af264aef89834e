//! Fuzzes the STUN decoder with what a reflector or a probe might receive: any bytes must decode
//! to a message or an error, and an answer to a request is never longer than the fixed response.
#![no_main]

use hybridprobe::net::stun;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The bytes that would be the transaction ID, so responses get past the ID check and reach
    // the attribute decoding.
    let id: stun::TransactionId = data
        .get(8..20)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default();
    let _ = stun::decode_response(data, &id);
    let _ = stun::body_len(data);
    if let Ok(request_id) = stun::decode_request(data) {
        let seen = "198.18.2.10:40000".parse().expect("a valid address");
        let response = stun::encode_response(&request_id, seen);
        assert!(response.as_bytes().len() <= stun::MAX_RESPONSE_LEN);
        assert_eq!(
            stun::decode_response(response.as_bytes(), &request_id),
            Ok(seen)
        );
    }
});
