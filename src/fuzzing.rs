//! Entry points for the fuzz targets in `fuzz/`: each parser of input from outside the agent,
//! reached the way the agent reaches it. Not an API: hidden from the docs, and it changes with
//! the fuzz targets. Parsers that are public already (`Config::parse`, `ResolvConf::parse`,
//! `probe::raw::parse`, the `stun` codec) are fuzzed directly.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use hickory_net::proto::op::DnsResponse;
use hickory_net::proto::rr::Name;

use crate::net::Transport;
use crate::probe::dns::{self, DnsSpec, ResolvConf};
use crate::probe::{source_ip, Failure, Outcome};
use crate::smoke::{self, AgentReport, Answer, Summary};

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

/// Decodes a DNS message as hickory does for the probe, then judges it against every kind of
/// expectation, over UDP and TCP. `None` when hickory rejects the bytes (the probe then reports
/// hickory's error).
pub fn dns_response(wire: &[u8]) -> Option<Vec<Result<Outcome, Failure>>> {
    let response = DnsResponse::from_buffer(wire.to_vec()).ok()?;
    let at = SocketAddr::from(([198, 19, 10, 1], 53));
    let mut rounds = Vec::new();
    for spec in dns_specs() {
        for transport in [Transport::Udp, Transport::Tcp] {
            rounds.push(spec.judge_response(&response, at, transport));
        }
    }
    Some(rounds)
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

/// The address a whoami reflector's whole HTTP response names.
pub fn whoami_response(raw: &[u8], json_field: &str) -> Result<IpAddr, String> {
    source_ip::parse_http_response(raw, json_field)
}

/// An agent's whole answer to the smoke check, and the smoke report's text for it.
pub fn smoke_answer(raw: &[u8]) -> Result<String, String> {
    let health = smoke::parse_answer(raw)?;
    let summary = Summary {
        agents: vec![AgentReport {
            addr: SocketAddr::from(([198, 18, 2, 10], 9739)),
            answer: Answer::Health(health),
        }],
        expect_nodes: 1,
    };
    Ok(summary.render())
}
