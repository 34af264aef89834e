//! What must hold for any input to each fuzz target, one function per target in `fuzz/`.
//!
//! The targets call these, and so does `tests/fuzz_corpora.rs`, which replays every kept corpus
//! on stable Rust: the properties live once, here, whether libFuzzer or a plain test feeds them.
//! Each function panics when a property fails; that is how both report it.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::config::{Config, MAX_INTERVAL};
use crate::net::conntrack::Evidence;
use crate::net::stun;
use crate::probe::conntrack::Events;
use crate::probe::raw::{self, Message};
use crate::probe::Reason;

/// The text a `&str` fuzz target sees of `data`: its longest valid UTF-8 prefix, as the
/// `arbitrary` crate hands bytes to such a target.
fn text(data: &[u8]) -> &str {
    match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// A reason fit for a `/healthz` line: short, and no control character to break the table.
fn fits(why: &str, max_chars: usize) {
    assert!(why.chars().count() <= max_chars, "{why:?}");
    assert!(!why.contains(char::is_control), "{why:?}");
}

fn config_env(name: &str) -> Option<String> {
    match name {
        "HOST_IP" => Some("198.18.1.4".into()),
        "POD_IP" => Some("198.18.2.10".into()),
        "NODE_NAME" => Some("aks-nodepool1-0".into()),
        _ => None,
    }
}

/// A config either fails with a printable error or holds every invariant the agent relies on.
pub fn config_parse(data: &[u8]) {
    let config = match Config::parse(text(data), &config_env) {
        Ok(config) => config,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(!config.namespaces.is_empty() && !config.probes.is_empty());
    let configured: BTreeSet<_> = config.namespaces.iter().map(|n| n.id).collect();
    assert_eq!(
        configured.len(),
        config.namespaces.len(),
        "a namespace twice"
    );
    let mut names = BTreeSet::new();
    let now = Instant::now();
    for probe in &config.probes {
        assert!(names.insert(&probe.name), "{:?} twice", probe.name);
        let netns: BTreeSet<_> = probe.netns.iter().collect();
        assert_eq!(
            netns.len(),
            probe.netns.len(),
            "{:?}: a namespace twice",
            probe.name
        );
        assert!(!netns.is_empty() && netns.iter().all(|id| configured.contains(id)));
        assert!(!probe.timeout.is_zero() && probe.timeout <= probe.interval);
        // Deadlines are the clock plus these.
        assert!(probe.interval <= MAX_INTERVAL && now.checked_add(probe.interval).is_some());
        assert!((1..=100).contains(&probe.fail_after) && (1..=100).contains(&probe.recover_after));
        let _ = probe.kind.describe();
    }
}

/// `/proc/net/stat/nf_conntrack` counters come from at least one CPU line, or are all zero.
pub fn conntrack_stat(data: &[u8]) {
    let text = text(data);
    if let Ok(events) = Events::parse(text) {
        let cpus = text
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count();
        assert!(
            cpus > 0 || events == Events::default(),
            "{events:?} from no CPU line"
        );
    }
}

/// A conntrack answer, of either family, is read or refused without a panic, and a translation
/// is always to another address than the flow's own source.
pub fn conntrack_reply(data: &[u8]) {
    for (flow, read) in super::conntrack_reply(data) {
        if let Ok(Evidence::Translated { to }) = read {
            assert_ne!(to.ip(), flow.source.ip(), "{flow}: translated to itself");
        }
    }
}

/// A DNS answer, judged every way, never puts a control character into a detail.
pub fn dns_response(wire: &[u8]) {
    for round in super::dns_response(wire) {
        let detail = match &round {
            Ok(outcome) => &outcome.detail,
            Err(failure) => &failure.detail,
        };
        assert!(!detail.contains(char::is_control), "{detail:?}");
    }
}

/// Any server reply gives the whoami probe and the smoke check a short reason or a report.
pub fn http_response(raw: &[u8]) {
    let readings = super::http_response(raw);
    for why in readings.whoami.iter().filter_map(|r| r.as_ref().err()) {
        fits(why, 200);
    }
    match readings.smoke {
        Ok(report) => {
            assert_eq!(report.lines().count(), 2, "{report:?}");
            assert!(
                !report.contains(|c: char| c.is_control() && c != '\n'),
                "{report:?}"
            );
        }
        Err(why) => fits(&why, 200),
    }
}

/// Any ICMP packet, and any ICMPv6 message, parses to something, and a quoted datagram's fields
/// read without panicking.
pub fn icmp_parse(packet: &[u8]) {
    let from = std::net::Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 1);
    for message in [raw::parse(packet), raw::parse_v6(from, packet)] {
        if let Message::Error { quoted, .. } = message {
            let _ = (quoted.echo(), quoted.ports());
        }
    }
}

/// A proxy's refusal is one of the proxy reasons, with a short printable detail.
pub fn proxy_reply(raw: &[u8]) {
    if let Some(Err((reason, why))) = super::proxy_reply(raw) {
        assert!(
            matches!(reason, Reason::ProxyRefused | Reason::ProxyError),
            "{reason}"
        );
        fits(&why, 400);
    }
}

/// Any resolv.conf gives a bounded `ndots` and fully qualified search candidates.
pub fn resolv_conf(data: &[u8]) {
    let (conf, names) = super::resolv_conf(text(data));
    assert!(conf.ndots <= 15);
    for name in names {
        assert!(name.ends_with('.'), "{name:?}");
    }
}

/// Any bytes decode to a STUN message or an error, and the answer to a request decodes back to
/// the address it carries, within the fixed response size.
pub fn stun_decode(data: &[u8]) {
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
}
