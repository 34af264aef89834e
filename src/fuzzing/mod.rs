//! Entry points for the fuzz targets in `fuzz/`: each parser of input from outside the agent,
//! reached the way the agent reaches it. Not an API: hidden from the docs, and it changes with
//! the fuzz targets. Parsers that are public already (`Config::parse`, `ResolvConf::parse`,
//! `probe::raw::parse`, the `stun` codec) are fuzzed directly. [`holds`] has what must hold
//! for each target's input.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use hickory_net::proto::op::DnsResponse;
use hickory_net::proto::rr::Name;

use crate::net::conntrack::{self, ConntrackError, Evidence, Flow};
use crate::net::{http1, Transport};
use crate::probe::dns::{self, DnsSpec, DnsTransport, ResolvConf};
use crate::probe::http::{judge_connect, parse_reply, Parsed};
use crate::probe::source_ip::{self, HttpUrl};
use crate::probe::{Failure, Outcome, Reason};
use crate::smoke::{self, AgentReport, Answer, Summary};

pub mod holds;

/// One `dns:` probe per kind of expectation, so an answer meets every judging path.
const DNS_SPECS: &[&str] = &[
    "{query: db.corp.example, expect: {within: [198.19.0.0/16]}}",
    "{query: db.corp.example, type: AAAA, expect: {equals: ['2001:db8::5']}}",
    "{query: gone.corp.example, expect: {rcode: NXDOMAIN}}",
    "{query: corp.example, type: TXT, search: true, expect: {min_answers: 0}}",
    "{query: 198.19.10.5, type: PTR, expect: {min_answers: 2}}",
];

fn dns_specs() -> &'static [DnsSpec] {
    static SPECS: OnceLock<Vec<DnsSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        DNS_SPECS
            .iter()
            .map(|yaml| serde_norway::from_str(yaml).expect("a valid dns spec"))
            .collect()
    })
}

/// Meets a DNS message the two ways the probe does, and judges it against every kind of
/// expectation: as the datagram answering each spec's question over UDP (matched and decoded as
/// the probe's own UDP exchange does, its ID taken for the question's), and decoded by hickory as
/// its TCP and TLS clients hand it over (none of those when hickory rejects the bytes).
pub fn dns_response(wire: &[u8]) -> Vec<Result<Outcome, Failure>> {
    let at = SocketAddr::from(([198, 19, 10, 1], 53));
    let mut rounds: Vec<_> = dns_specs()
        .iter()
        .filter_map(|spec| spec.judge_datagram(wire, at))
        .collect();
    if let Ok(response) = DnsResponse::from_buffer(wire.to_vec()) {
        for spec in dns_specs() {
            for transport in [DnsTransport::Tcp, DnsTransport::Tls] {
                rounds.push(spec.judge_response(&response, at, transport));
            }
        }
    }
    rounds
}

/// A host's resolv.conf, and the names its search list makes of a short and a dotted query.
pub fn resolv_conf(text: &str) -> (ResolvConf, Vec<String>) {
    let conf = ResolvConf::parse(text);
    let names = ["db", "db.dc1.corp"]
        .iter()
        .filter_map(|q| Name::from_ascii(q).ok())
        .flat_map(|name| dns::candidates(&name, &conf))
        .map(|name| name.to_ascii())
        .collect();
    (conf, names)
}

/// What the HTTP client's two users make of one server reply: the whoami probe, for the JSON
/// fields `address` and `ip`, and the smoke check, as the report's text.
#[derive(Debug)]
pub struct HttpReadings {
    pub whoami: Vec<Result<IpAddr, String>>,
    pub smoke: Result<String, String>,
}

/// `raw` as a server's whole reply on a connection (it then closes its side), read by the
/// whoami probe and the smoke check the way each reads a real one.
pub fn http_response(raw: &[u8]) -> HttpReadings {
    let url = &HttpUrl::parse("http://198.19.10.1:8080/whoami").expect("a valid URL");
    let whoami = ["address", "ip"]
        .iter()
        .map(|field| {
            http1::replay(raw, |stream, deadline| async move {
                source_ip::ask(stream, url, field, deadline).await
            })
            .map_err(|e| e.to_string())
        })
        .collect();
    let smoke = http1::replay(raw, |stream, deadline| async move {
        smoke::ask_over(stream, "198.18.2.10:9739", deadline).await
    })
    .map(|health| {
        Summary {
            agents: vec![AgentReport {
                addr: SocketAddr::from(([198, 18, 2, 10], 9739)),
                answer: Answer::Health(health),
            }],
            expect_nodes: 1,
        }
        .render()
    })
    .map_err(|e| e.to_string());
    HttpReadings { whoami, smoke }
}

/// A forward proxy's reply to CONNECT, read and judged as the `http` probe does: `None` while
/// the head is incomplete, else the tunnel opened or the reason and detail.
pub fn proxy_reply(raw: &[u8]) -> Option<Result<(), (Reason, String)>> {
    let (proxy, target) = ("198.18.1.1:3128", "api.corp.example:443");
    match parse_reply(raw) {
        Parsed::Partial => None,
        Parsed::Complete(reply) => Some(judge_connect(&reply, proxy, target)),
        Parsed::NotHttp(why) => Some(Err((Reason::ProxyError, why))),
    }
}

/// The kernel's answer to the conntrack GET, read as the `source_ip` probe and the evidence read
/// it, for an IPv4 and an IPv6 flow (the ones the kept answers were captured for).
pub fn conntrack_reply(wire: &[u8]) -> Vec<(Flow, Result<Evidence, ConntrackError>)> {
    let flow = |source: SocketAddr, destination: SocketAddr| Flow {
        transport: Transport::Udp,
        source,
        destination,
    };
    let v4 = flow(
        ([198, 18, 2, 10], 40000).into(),
        ([198, 19, 10, 1], 3478).into(),
    );
    let v6 = flow(
        ([0x2001, 2, 0, 0x1802, 0, 0, 0, 0x10], 40000).into(),
        ([0x2001, 2, 0, 0x1910, 0, 0, 0, 1], 3478).into(),
    );
    [v4, v6]
        .into_iter()
        .map(|flow| (flow, conntrack::decode_reply(wire, &flow)))
        .collect()
}
