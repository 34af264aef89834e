//! Unit tests of the evidence captures: the JSON shape, the store and its rate bound, the size
//! bounds, what each kind aims at, and a namespace that cannot be entered.

use std::path::Path;

use super::*;
use crate::config::Config;
use crate::netns::NetnsContext;

fn key() -> CheckKey {
    CheckKey {
        probe: "dc1".into(),
        netns: NetnsId::Pod,
        family: None,
    }
}

fn capture(detail: &str) -> Arc<Capture> {
    Arc::new(Capture {
        taken_at: "2027-01-15T08:00:00Z".into(),
        trigger: Trigger {
            result: "timeout".into(),
            detail: detail.into(),
        },
        netns: NetnsId::Pod,
        pieces: vec![Piece {
            what: What::Route,
            netns: NetnsId::Host,
            source: "netlink RTM_GETROUTE (ip route get)".into(),
            taken_at: "2027-01-15T08:00:01Z".into(),
            body: Body::Text("198.19.10.1 via 198.18.1.1 dev eth0".into()),
        }],
    })
}

#[test]
fn a_capture_serializes_to_the_documented_shape() {
    let mut json = serde_json::to_value(&*capture("no answer")).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "taken_at": "2027-01-15T08:00:00Z",
            "trigger": { "result": "timeout", "detail": "no answer" },
            "netns": "pod",
            "pieces": [{
                "what": "route", "netns": "host",
                "source": "netlink RTM_GETROUTE (ip route get)",
                "taken_at": "2027-01-15T08:00:01Z",
                "text": "198.19.10.1 via 198.18.1.1 dev eth0"
            }]
        })
    );
    let piece = Piece::unavailable(What::Conntrack, NetnsId::Host, "conntrack", "needs X");
    json = serde_json::to_value(&piece).unwrap();
    assert_eq!(json["what"], "conntrack");
    assert_eq!(json["unavailable"], "needs X");
    assert!(json.get("text").is_none());
}

#[test]
fn the_store_keeps_the_newest_three_of_tracked_checks_only() {
    let mut store = Store::default();
    assert!(!store.keep(&key(), capture("before tracking")));
    store.declare(&key());
    for i in 0..5 {
        assert!(store.keep(&key(), capture(&format!("round {i}"))));
    }
    let kept: Vec<String> = store
        .of(&key())
        .iter()
        .map(|c| c.trigger.detail.clone())
        .collect();
    assert_eq!(kept, ["round 4", "round 3", "round 2"]);
    store.remove(&key());
    assert!(store.of(&key()).is_empty());
    assert!(!store.keep(&key(), capture("after removal")));
}

#[tokio::test(start_paused = true)]
async fn a_check_is_admitted_once_per_min_interval() {
    let mut store = Store::default();
    let every = Duration::from_secs(300);
    assert!(!store.admit(&key(), Instant::now(), every), "untracked");
    store.declare(&key());
    let start = Instant::now();
    assert!(store.admit(&key(), start, every));
    let admitted = (1..=600)
        .filter(|s| store.admit(&key(), start + Duration::from_secs(*s), every))
        .count();
    assert_eq!(admitted, 2, "at 300 s and 600 s");
}

#[test]
fn text_is_bounded_per_piece_and_per_capture() {
    let long = "é".repeat(MAX_PIECE);
    let piece = Piece::text(What::Rounds, NetnsId::Pod, "", long);
    assert!(piece.len() <= MAX_PIECE, "{}", piece.len());
    let Body::Text(text) = &piece.body else {
        panic!("{piece:?}")
    };
    assert!(text.ends_with("[truncated]"));
    let mut pieces = vec![piece; 8];
    bound_total(&mut pieces);
    let total: usize = pieces.iter().map(Piece::len).sum();
    assert!(total <= MAX_CAPTURE, "{total}");
    assert!(
        pieces[0].len() > MAX_PIECE - 32,
        "earlier pieces are kept whole"
    );
    assert_eq!(pieces[7].body, Body::Unavailable(DROPPED.into()));
}

fn probe(yaml: &str) -> Arc<ProbeConfig> {
    let text = format!("probes: [{yaml}]");
    Config::parse(&text, &|_| None).unwrap().probes[0].clone()
}

#[test]
fn the_aim_follows_the_kind() {
    let tcp = Aim::of(
        &probe("{name: a, tcp: {target: 'ldap.corp.example:389'}}"),
        Family::Any,
    );
    assert_eq!(tcp.host, Ok(Host::Name("ldap.corp.example".into())));
    assert_eq!(tcp.port, Some(389));
    assert_eq!(
        tcp.name.map(|(n, _)| n).as_deref(),
        Some("ldap.corp.example")
    );
    let route = Aim::of(
        &probe("{name: b, route: {destination: 198.19.0.0/16}}"),
        Family::Any,
    );
    assert_eq!(route.host, Ok(Host::Ip("198.19.0.0".parse().unwrap())));
    let file = Aim::of(&probe("{name: c, resolv_conf: {}}"), Family::Any);
    assert_eq!(file.host, Err("kind resolv_conf has no IP target".into()));
    let dns = Aim::of(
        &probe("{name: d, dns: {query: dc1.corp.example, servers: ['198.19.10.1']}}"),
        Family::Any,
    );
    assert_eq!(dns.host, Ok(Host::Ip("198.19.10.1".parse().unwrap())));
    assert_eq!(dns.port, Some(53));
    assert_eq!(
        dns.name.map(|(n, _)| n).as_deref(),
        Some("dc1.corp.example")
    );
    let system = Aim::of(
        &probe("{name: e, dns: {query: dc1.corp.example}}"),
        Family::Any,
    );
    assert_eq!(system.host, Err("kind dns has no IP target".into()));
    assert!(matches!(system.name, Some((_, Resolver::System))));
    let mx = Aim::of(
        &probe("{name: f, dns: {query: corp.example, type: MX, servers: ['198.19.10.1']}}"),
        Family::Any,
    );
    assert!(mx.name.is_none(), "not an address lookup");
}

/// The name is resolved to the check's family: a split check's own, else the probe's, and a
/// dns check's A or AAAA query to its record's.
#[test]
fn the_aim_resolves_the_checks_family() {
    let mut results = crate::results::Results::default();
    let both = probe("{name: dual, tcp: {target: 'dual.corp.example:389', family: both}}");
    let six = probe("{name: six, icmp: {target: dual.corp.example, family: ipv6}}");
    let split = |family| CheckKey {
        probe: "dual".into(),
        netns: NetnsId::Pod,
        family,
    };
    let whole = CheckKey {
        probe: "six".into(),
        ..key()
    };
    results.declare(split(Some(Family::Ipv4)), both.clone(), 0);
    results.declare(split(Some(Family::Ipv6)), both, 0);
    results.declare(whole.clone(), six, 1);
    for (key, family) in [
        (split(Some(Family::Ipv4)), Family::Ipv4),
        (split(Some(Family::Ipv6)), Family::Ipv6),
        (whole, Family::Ipv6),
    ] {
        let subject = Subject::of(&key, results.get(&key).unwrap());
        assert_eq!(subject.family, family, "{key:?}");
        assert_eq!(Aim::of(&subject.probe, subject.family).family, family);
    }
    let aaaa =
        probe("{name: d, dns: {query: db6.corp.example, type: AAAA, servers: ['2001:2::53']}}");
    assert_eq!(Aim::of(&aaaa, Family::Any).family, Family::Ipv6);
    let a = probe("{name: d, dns: {query: db.corp.example}}");
    assert_eq!(Aim::of(&a, Family::Any).family, Family::Ipv4);
}

#[tokio::test]
async fn a_namespace_that_cannot_be_entered_says_so_in_each_of_its_pieces() {
    let host = Executor::enter(
        NetnsContext {
            id: NetnsId::Host,
            resolv_conf: "/nonexistent/resolv.conf".into(),
            host: None,
            kept: Default::default(),
        },
        Path::new("/nonexistent/ns/net"),
    );
    let probe = probe("{name: dc1, netns: [host], resolv_conf: {}}");
    let subject = Subject {
        probe,
        netns: NetnsId::Host,
        family: Family::Any,
        trigger: Trigger {
            result: "error".into(),
            detail: "read failed".into(),
        },
        rounds: Piece::unavailable(What::Rounds, NetnsId::Host, "", "no round"),
    };
    let captured = super::capture(subject, &[host], &EvidenceConfig::default()).await;
    assert_eq!(captured.outcome(), CaptureOutcome::Failed);
    let whats: Vec<&str> = captured.pieces.iter().map(|p| p.what.as_str()).collect();
    assert_eq!(
        whats,
        [
            "resolv_conf",
            "route",
            "path_mtu",
            "traceroute",
            "conntrack",
            "rounds"
        ]
    );
    for piece in &captured.pieces[..5] {
        let Body::Unavailable(why) = &piece.body else {
            panic!("{piece:?}")
        };
        assert!(
            why.starts_with("namespace host not available: cannot open"),
            "{why}"
        );
    }
}
