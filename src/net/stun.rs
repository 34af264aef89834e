//! RFC 5389 STUN Binding requests and responses: the only STUN the source-IP probe and the
//! reflector speak.
//!
//! Every byte comes from a network we do not control, so every length is checked before it is
//! read and every malformed message is a [`StunError`], never a panic. Only what a Binding
//! exchange needs is understood: XOR-MAPPED-ADDRESS (IPv4 and IPv6), MAPPED-ADDRESS from older
//! servers, ERROR-CODE, and FINGERPRINT when a server adds one. Other attributes are skipped
//! after their framing is checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed value in every RFC 5389 header; RFC 3489 messages carry random bytes here.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
pub const HEADER_LEN: usize = 20;
/// The largest message accepted, header included. A Binding exchange needs about 100 bytes;
/// the bound keeps a TCP reader from waiting on an attacker-chosen length.
pub const MAX_MESSAGE_LEN: usize = 1280;
/// The largest response [`encode_response`] writes: a header and an IPv6 XOR-MAPPED-ADDRESS.
pub const MAX_RESPONSE_LEN: usize = HEADER_LEN + 4 + 20;

const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;

const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// The code drafts of RFC 5389 used; some deployed servers still send it.
const ATTR_XOR_MAPPED_ADDRESS_DRAFT: u16 = 0x8020;
const ATTR_FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554E;

const FAMILY_IPV4: u8 = 0x01;
const FAMILY_IPV6: u8 = 0x02;

/// Error reason phrases are shown to people; a hostile server gets no more than this.
const MAX_REASON_CHARS: usize = 128;

/// 96 random bits that pair a response with its request.
pub type TransactionId = [u8; 12];

/// Why bytes are not the STUN message that was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("{0} bytes is shorter than a STUN header (20 bytes)")]
    TooShort(usize),
    #[error("not a STUN message (the first two bits are not zero)")]
    NotStun,
    #[error("magic cookie {0:#010x} is not RFC 5389's (an RFC 3489 server, or not STUN)")]
    BadCookie(u32),
    #[error("message length {0} is not a multiple of 4")]
    UnalignedLength(usize),
    #[error("message length {0} is over the {MAX_MESSAGE_LEN}-byte limit")]
    TooLong(usize),
    #[error("header says {declared} bytes follow it, but {actual} do")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("attribute {kind:#06x} at byte {at} runs past the end of the message")]
    TruncatedAttribute { kind: u16, at: usize },
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    #[error("FINGERPRINT does not match the message")]
    BadFingerprint,
    #[error("transaction ID does not match the request")]
    TransactionMismatch,
    #[error("message type {0:#06x} is not the expected Binding message")]
    UnexpectedType(u16),
    #[error("malformed {attribute}: {why}")]
    BadAttribute {
        attribute: &'static str,
        why: &'static str,
    },
    #[error("the response has neither XOR-MAPPED-ADDRESS nor MAPPED-ADDRESS")]
    NoAddress,
    #[error("the server answered error {code}: {reason}")]
    ErrorResponse { code: u16, reason: String },
}

/// A fresh Binding request with a random transaction ID: what to send, and the ID to expect back.
pub fn new_request() -> std::io::Result<(TransactionId, [u8; HEADER_LEN])> {
    let mut id = [0u8; 12];
    getrandom::fill(&mut id).map_err(std::io::Error::other)?;
    Ok((id, encode_request(&id)))
}

/// A Binding request without attributes: all a server needs to answer.
pub fn encode_request(id: &TransactionId) -> [u8; HEADER_LEN] {
    header(BINDING_REQUEST, 0, id)
}

/// A Binding success response naming `addr` in an XOR-MAPPED-ADDRESS, and nothing else, so an
/// answer is never longer than [`MAX_RESPONSE_LEN`] whatever the request was.
pub fn encode_response(id: &TransactionId, addr: SocketAddr) -> Response {
    let mut buf = [0u8; MAX_RESPONSE_LEN];
    let (family, value_len) = match addr.ip() {
        IpAddr::V4(_) => (FAMILY_IPV4, 8),
        IpAddr::V6(_) => (FAMILY_IPV6, 20),
    };
    let len = HEADER_LEN + 4 + value_len;
    buf[..HEADER_LEN].copy_from_slice(&header(BINDING_SUCCESS, (4 + value_len) as u16, id));
    buf[20..22].copy_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    buf[22..24].copy_from_slice(&(value_len as u16).to_be_bytes());
    buf[25] = family;
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    buf[26..28].copy_from_slice(&port.to_be_bytes());
    let (octets, n) = match addr.ip() {
        IpAddr::V4(ip) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&ip.octets());
            (o, 4)
        }
        IpAddr::V6(ip) => (ip.octets(), 16),
    };
    for (i, (byte, mask)) in octets.iter().zip(xor_mask(id)).take(n).enumerate() {
        buf[28 + i] = byte ^ mask;
    }
    Response { buf, len }
}

/// An encoded response: at most [`MAX_RESPONSE_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    buf: [u8; MAX_RESPONSE_LEN],
    len: usize,
}

impl Response {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Checks a 20-byte header and says how many bytes of attributes follow it: how a TCP reader
/// frames messages.
pub fn body_len(header: &[u8]) -> Result<usize, StunError> {
    parse_header(header).map(|h| h.body_len)
}

/// The transaction ID of a well-formed Binding request: what the reflector answers.
pub fn decode_request(buf: &[u8]) -> Result<TransactionId, StunError> {
    let message = parse(buf)?;
    if message.kind != BINDING_REQUEST {
        return Err(StunError::UnexpectedType(message.kind));
    }
    Ok(message.id)
}

/// The address a server saw, from its answer to the request with transaction ID `expected`.
pub fn decode_response(buf: &[u8], expected: &TransactionId) -> Result<SocketAddr, StunError> {
    let message = parse(buf)?;
    if &message.id != expected {
        return Err(StunError::TransactionMismatch);
    }
    match message.kind {
        BINDING_SUCCESS => {
            let find = |kinds: &[u16]| {
                message
                    .attributes
                    .iter()
                    .find(|(kind, _)| kinds.contains(kind))
            };
            if let Some((_, value)) =
                find(&[ATTR_XOR_MAPPED_ADDRESS, ATTR_XOR_MAPPED_ADDRESS_DRAFT])
            {
                return address(value, Some(&message.id), "XOR-MAPPED-ADDRESS");
            }
            if let Some((_, value)) = find(&[ATTR_MAPPED_ADDRESS]) {
                return address(value, None, "MAPPED-ADDRESS");
            }
            Err(StunError::NoAddress)
        }
        BINDING_ERROR => {
            let (_, value) = message
                .attributes
                .iter()
                .find(|(kind, _)| *kind == ATTR_ERROR_CODE)
                .ok_or(StunError::BadAttribute {
                    attribute: "error response",
                    why: "no ERROR-CODE attribute",
                })?;
            Err(error_code(value))
        }
        other => Err(StunError::UnexpectedType(other)),
    }
}

struct Header {
    kind: u16,
    body_len: usize,
    id: TransactionId,
}

struct Message<'a> {
    kind: u16,
    id: TransactionId,
    attributes: Vec<(u16, &'a [u8])>,
}

fn header(kind: u16, body_len: u16, id: &TransactionId) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0..2].copy_from_slice(&kind.to_be_bytes());
    out[2..4].copy_from_slice(&body_len.to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out[8..20].copy_from_slice(id);
    out
}

fn parse_header(buf: &[u8]) -> Result<Header, StunError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Err(StunError::TooShort(buf.len()));
    };
    if header[0] & 0xC0 != 0 {
        return Err(StunError::NotStun);
    }
    let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if cookie != MAGIC_COOKIE {
        return Err(StunError::BadCookie(cookie));
    }
    let body_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if body_len % 4 != 0 {
        return Err(StunError::UnalignedLength(body_len));
    }
    if HEADER_LEN + body_len > MAX_MESSAGE_LEN {
        return Err(StunError::TooLong(HEADER_LEN + body_len));
    }
    let mut id = [0u8; 12];
    id.copy_from_slice(&header[8..20]);
    Ok(Header {
        kind: u16::from_be_bytes([header[0], header[1]]),
        body_len,
        id,
    })
}

/// Parses a whole message: a checked header, exactly as many bytes as it declares, attributes
/// whose padded lengths fit, and a matching FINGERPRINT if there is one.
fn parse(buf: &[u8]) -> Result<Message<'_>, StunError> {
    let header = parse_header(buf)?;
    let actual = buf.len() - HEADER_LEN;
    if actual != header.body_len {
        return Err(StunError::LengthMismatch {
            declared: header.body_len,
            actual,
        });
    }
    let mut attributes = Vec::new();
    let mut at = HEADER_LEN;
    while at < buf.len() {
        let rest = &buf[at..];
        let (Some(kind), Some(len)) = (be16(rest, 0), be16(rest, 2)) else {
            return Err(StunError::TruncatedAttribute { kind: 0, at });
        };
        let len = usize::from(len);
        let padded = (len + 3) & !3;
        let Some(value) = rest.get(4..4 + len) else {
            return Err(StunError::TruncatedAttribute { kind, at });
        };
        if rest.len() < 4 + padded {
            return Err(StunError::TruncatedAttribute { kind, at });
        }
        if kind == ATTR_FINGERPRINT {
            if at + 4 + padded != buf.len() {
                return Err(StunError::FingerprintNotLast);
            }
            let stored =
                value
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| StunError::BadAttribute {
                        attribute: "FINGERPRINT",
                        why: "not 4 bytes long",
                    })?;
            if crc32(&buf[..at]) ^ FINGERPRINT_XOR != stored {
                return Err(StunError::BadFingerprint);
            }
        }
        attributes.push((kind, value));
        at += 4 + padded;
    }
    Ok(Message {
        kind: header.kind,
        id: header.id,
        attributes,
    })
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let bytes = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// The cookie then the transaction ID: what XOR-MAPPED-ADDRESS masks an address with.
fn xor_mask(id: &TransactionId) -> [u8; 16] {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(id);
    mask
}

/// Decodes a (XOR-)MAPPED-ADDRESS value; `xor_with` is the transaction ID for the XOR form.
fn address(
    value: &[u8],
    xor_with: Option<&TransactionId>,
    attribute: &'static str,
) -> Result<SocketAddr, StunError> {
    let bad = |why| StunError::BadAttribute { attribute, why };
    let (family, port) = match value {
        [_, family, hi, lo, ..] => (*family, u16::from_be_bytes([*hi, *lo])),
        _ => return Err(bad("shorter than 4 bytes")),
    };
    let mask = xor_with.map_or([0u8; 16], xor_mask);
    let port = port ^ u16::from_be_bytes([mask[0], mask[1]]);
    let raw = &value[4..];
    let want = match family {
        FAMILY_IPV4 => 4,
        FAMILY_IPV6 => 16,
        _ => return Err(bad("unknown address family")),
    };
    if raw.len() != want {
        return Err(bad("address length does not match its family"));
    }
    let mut o = [0u8; 16];
    for (i, byte) in raw.iter().enumerate() {
        o[i] = byte ^ mask[i];
    }
    let ip = if want == 4 {
        IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Ok(SocketAddr::new(ip, port))
}

fn error_code(value: &[u8]) -> StunError {
    let [_, _, class, number, reason @ ..] = value else {
        return StunError::BadAttribute {
            attribute: "ERROR-CODE",
            why: "shorter than 4 bytes",
        };
    };
    let code = u16::from(class & 0x07) * 100 + u16::from(*number);
    let reason: String = String::from_utf8_lossy(reason)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect();
    StunError::ErrorResponse { code, reason }
}

/// CRC-32 (IEEE 802.3), as FINGERPRINT uses; bitwise, since messages are short.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 5769 section 2.2: a Binding success response for 192.0.2.1:32853, with SOFTWARE
    /// (padded with a space, not a zero), MESSAGE-INTEGRITY and FINGERPRINT.
    const RFC5769_IPV4: &[u8] = &[
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];

    /// RFC 5769 section 2.3: the same for [2001:db8:1234:5678:11:2233:4455:6677]:32853.
    const RFC5769_IPV6: &[u8] = &[
        0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01,
        0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9,
        0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb,
        0x0b, 0x4c,
    ];

    fn id_of(message: &[u8]) -> TransactionId {
        message[8..20].try_into().unwrap()
    }

    #[test]
    fn rfc5769_vectors_decode() {
        assert_eq!(
            decode_response(RFC5769_IPV4, &id_of(RFC5769_IPV4)),
            Ok("192.0.2.1:32853".parse().unwrap())
        );
        assert_eq!(
            decode_response(RFC5769_IPV6, &id_of(RFC5769_IPV6)),
            Ok("[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .unwrap())
        );
    }

    /// coturn 4.6.1's answers, captured on loopback and kept in the fuzz corpus: XOR-MAPPED-ADDRESS
    /// with MAPPED-ADDRESS, RESPONSE-ORIGIN and SOFTWARE beside it; and a 420 for a request with
    /// an unknown comprehension-required attribute.
    #[test]
    fn coturn_answers_decode() {
        let id = [
            0x0c, 0x0f, 0x7e, 0x3a, 0x9d, 0x51, 0xb2, 0xc4, 0xe6, 0xf8, 0x0a, 0x1b,
        ];
        let success = include_bytes!("../../fuzz/corpus/stun_decode/coturn-4.6.1-success");
        assert_eq!(
            decode_response(success, &id),
            Ok("127.0.0.1:55229".parse().unwrap())
        );
        let error = include_bytes!("../../fuzz/corpus/stun_decode/coturn-4.6.1-error-420");
        assert_eq!(
            decode_response(error, &id),
            Err(StunError::ErrorResponse {
                code: 420,
                reason: "Unknown Attribute".into()
            })
        );
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_corrupted_fingerprinted_message_is_refused() {
        let mut bad = RFC5769_IPV4.to_vec();
        bad[27] ^= 1; // inside SOFTWARE, covered by the fingerprint
        assert_eq!(
            decode_response(&bad, &id_of(&bad)),
            Err(StunError::BadFingerprint)
        );
    }

    #[test]
    fn mapped_address_is_the_fallback() {
        let id = [7u8; 12];
        let mut msg = header(BINDING_SUCCESS, 12, &id).to_vec();
        msg.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x0d, 0x96]);
        msg.extend_from_slice(&[198, 19, 10, 1]);
        assert_eq!(
            decode_response(&msg, &id),
            Ok("198.19.10.1:3478".parse().unwrap())
        );
    }

    #[test]
    fn error_responses_carry_code_and_reason() {
        let id = [1u8; 12];
        let mut msg = header(BINDING_ERROR, 16, &id).to_vec();
        msg.extend_from_slice(&[0x00, 0x09, 0x00, 0x0b, 0, 0, 4, 20]);
        msg.extend_from_slice(b"Bad\nReq\0"); // 7 bytes of reason plus padding
        let err = decode_response(&msg, &id).unwrap_err();
        assert_eq!(
            err,
            StunError::ErrorResponse {
                code: 420,
                reason: "BadReq".into()
            }
        );
    }

    #[test]
    fn header_checks() {
        let id = [3u8; 12];
        let good = encode_response(&id, "198.18.2.10:40000".parse().unwrap());
        let good = good.as_bytes();
        let mut wrong_cookie = good.to_vec();
        wrong_cookie[4] = 0;
        let mut unaligned = good.to_vec();
        unaligned[3] = 13;
        let mut not_stun = good.to_vec();
        not_stun[0] = 0x80;
        let cases: Vec<(Vec<u8>, StunError)> = vec![
            (good[..19].to_vec(), StunError::TooShort(19)),
            (wrong_cookie, StunError::BadCookie(0x0012_A442)),
            (unaligned, StunError::UnalignedLength(13)),
            (not_stun, StunError::NotStun),
            (
                good[..28].to_vec(),
                StunError::LengthMismatch {
                    declared: 12,
                    actual: 8,
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_response(&bytes, &id), Err(want), "{bytes:02x?}");
        }
        assert_eq!(
            decode_response(good, &[4u8; 12]),
            Err(StunError::TransactionMismatch)
        );
        assert_eq!(
            decode_request(good),
            Err(StunError::UnexpectedType(BINDING_SUCCESS))
        );
        let mut huge = header(BINDING_REQUEST, 0xFFFC, &id).to_vec();
        huge.resize(20 + 0xFFFC, 0);
        assert_eq!(body_len(&huge[..20]), Err(StunError::TooLong(20 + 0xFFFC)));
    }

    #[test]
    fn an_attribute_longer_than_the_message_is_refused() {
        let id = [5u8; 12];
        let mut msg = header(BINDING_SUCCESS, 8, &id).to_vec();
        msg.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0, 1, 0, 0]);
        assert_eq!(
            decode_response(&msg, &id),
            Err(StunError::TruncatedAttribute {
                kind: 0x0020,
                at: 20
            })
        );
    }

    fn any_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(Ipv6Addr::from(ip).into(), port)),
        ]
    }

    proptest! {
        #[test]
        fn responses_round_trip(id in any::<[u8; 12]>(), addr in any_addr()) {
            let response = encode_response(&id, addr);
            prop_assert!(response.as_bytes().len() <= MAX_RESPONSE_LEN);
            prop_assert_eq!(decode_response(response.as_bytes(), &id), Ok(addr));
        }

        #[test]
        fn requests_round_trip(id in any::<[u8; 12]>()) {
            prop_assert_eq!(decode_request(&encode_request(&id)), Ok(id));
        }

        #[test]
        fn arbitrary_bytes_are_an_error_or_a_message(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let id = bytes.get(8..20).map(|s| <TransactionId>::try_from(s).unwrap()).unwrap_or_default();
            let _ = decode_response(&bytes, &id);
            let _ = decode_request(&bytes);
            let _ = body_len(&bytes);
        }

        /// Bytes that pass the header checks exercise the attribute walk, which random bytes
        /// rarely reach.
        #[test]
        fn arbitrary_attributes_never_panic(
            kind in prop_oneof![Just(BINDING_SUCCESS), Just(BINDING_ERROR), Just(BINDING_REQUEST)],
            id in any::<[u8; 12]>(),
            words in proptest::collection::vec(any::<[u8; 4]>(), 0..40),
            attr_kind in prop_oneof![Just(0x0001u16), Just(0x0009), Just(0x0020), Just(0x8020), Just(0x8028), any::<u16>()],
            attr_len in 0u16..64,
        ) {
            let mut body: Vec<u8> = attr_kind.to_be_bytes().into_iter().chain(attr_len.to_be_bytes()).collect();
            body.extend(words.iter().flatten());
            let declared = (body.len() as u16) & !3;
            let mut msg = header(kind, declared, &id).to_vec();
            msg.extend_from_slice(&body);
            let _ = decode_response(&msg, &id);
            let _ = decode_request(&msg);
        }

        #[test]
        fn every_truncation_of_a_valid_response_is_an_error(id in any::<[u8; 12]>(), addr in any_addr(), cut in 0usize..44) {
            let response = encode_response(&id, addr);
            let bytes = response.as_bytes();
            prop_assume!(cut < bytes.len());
            prop_assert!(decode_response(&bytes[..cut], &id).is_err());
        }
    }
}
