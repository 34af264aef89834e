//! Unit tests of the `dns` probe: config, resolv.conf, judging and rendering.

use super::judge::show;
use super::*;
use crate::probe::Measurements;
use hickory_net::proto::op::{Message, OpCode};
use hickory_net::proto::rr::rdata::{A, CNAME, OPT, TXT};
use hickory_net::proto::rr::{RData, Record};
use hickory_net::proto::ProtoError;

fn parse(yaml: &str) -> Result<DnsSpec, String> {
    serde_norway::from_str::<DnsSpec>(yaml).map_err(|e| e.to_string())
}

fn spec(yaml: &str) -> DnsSpec {
    parse(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn a(ip: &str) -> Answer {
    Answer {
        owner: "db.corp.example.".into(),
        record_type: RecordType::A,
        text: ip.into(),
        ip: Some(ip.parse().unwrap()),
    }
}

fn asked(server: Server, at: &str, transport: DnsTransport, reply: Reply) -> Asked {
    Asked {
        server,
        at: Some(addr(at)),
        transport,
        took: Some(Duration::from_millis(3)),
        reply,
    }
}

#[test]
fn defaults_ask_the_system_resolvers_over_udp_for_an_a_record() {
    let s = spec("{query: db.corp.example}");
    assert_eq!(s.record_type, QueryType::A);
    assert_eq!(s.servers, vec![Server::System]);
    assert_eq!(s.transports, vec![DnsTransport::Udp]);
    assert!(!s.search);
    assert_eq!(s.expect.rcode, Rcode::NOERROR);
    assert_eq!(s.expect.min_answers, 1);
    assert_eq!(s.describe(), "dns A db.corp.example via system over udp");
}

#[test]
fn full_spec_parses() {
    let s = spec(
        "{query: db.corp.example, type: A, servers: [system, 198.19.10.1, '198.19.10.2:5353', '[2001:db8::53]:53'],
          transport: [udp, tcp, udp], search: true,
          expect: {within: [198.19.0.0/16], equals: [198.19.10.5], min_answers: 1}}",
    );
    assert_eq!(
        s.servers,
        vec![
            Server::System,
            Server::Addr(addr("198.19.10.1:53")),
            Server::Addr(addr("198.19.10.2:5353")),
            Server::Addr(addr("[2001:db8::53]:53")),
        ]
    );
    assert_eq!(s.transports, vec![DnsTransport::Udp, DnsTransport::Tcp]);
    assert_eq!(
        s.describe(),
        "dns A db.corp.example via system, 198.19.10.1, 198.19.10.2:5353, 2001:db8::53 over udp, tcp"
    );
    assert_eq!(
        spec("{query: x.example, transport: tcp}").transports,
        vec![DnsTransport::Tcp]
    );
    let ptr = spec("{query: 198.19.10.5, type: PTR}");
    assert_eq!(ptr.query.name.to_ascii(), "5.10.19.198.in-addr.arpa.");
    let negative = spec("{query: gone.corp.example, expect: {rcode: NXDOMAIN}}");
    assert_eq!(negative.expect.min_answers, 0);
}

#[test]
fn dns_over_tls_asks_port_853_unless_another_port_is_named() {
    let s = parse(
        "{query: x.example, servers: [198.19.10.1, '198.19.10.2:8853'], transport: [udp, tls], \
         tls: {ca_file: /etc/hybridprobe/corp-ca.pem, server_name: dns.corp.example}}",
    )
    .unwrap();
    assert_eq!(s.transports, vec![DnsTransport::Udp, DnsTransport::Tls]);
    assert_eq!(s.tls.server_name.as_deref(), Some("dns.corp.example"));
    assert!(!s.tls.insecure_skip_verify);
    let ports: Vec<(u16, u16)> = s
        .servers
        .iter()
        .map(|server| match server {
            Server::Addr(at) => (
                DnsTransport::Udp.port_of(*at).port(),
                DnsTransport::Tls.port_of(*at).port(),
            ),
            Server::System => unreachable!(),
        })
        .collect();
    assert_eq!(ports, [(53, TLS_PORT), (8853, 8853)]);
    assert_eq!(
        s.describe(),
        "dns A x.example via 198.19.10.1, 198.19.10.2:8853 over udp, tls"
    );
}

#[test]
fn config_errors_say_what_is_wrong() {
    let cases = [
        (
            "{query: x.example, servers: [10.0.0.300]}",
            r#""10.0.0.300" is not an IP address, IP:PORT or "system""#,
        ),
        (
            "{query: x.example, servers: ['198.19.10.1:0']}",
            "is not an IP address",
        ),
        ("{query: x.example, servers: []}", "servers: list `system`"),
        (
            "{query: x.example, transport: quic}",
            "unknown variant `quic`, expected one of `udp`, `tcp`, `tls`",
        ),
        (
            "{query: x.example, transport: []}",
            "must list udp, tcp, tls or several",
        ),
        (
            "{query: x.example, tls: {ca_file: /etc/ca.pem}}",
            "tls: only with transport tls",
        ),
        (
            "{query: x.example, transport: tls, tls: {server_name: 'bad name'}}",
            "tls.server_name: \"bad name\" is not a valid name",
        ),
        (
            "{query: x.example, transport: tls, tls: {verify: no}}",
            "unknown field `verify`",
        ),
        ("{query: x.example, type: a}", "unknown variant `a`"),
        (
            "{query: 'bad name'}",
            r#""bad name" is not a valid DNS name"#,
        ),
        ("{query: 'a..b'}", "is not a valid DNS name"),
        ("{query: 198.19.10.5}", "ask for its name with type PTR"),
        (
            "{query: x.example, expect: {within: [198.19.0.0/33]}}",
            r#""198.19.0.0/33" is not a network"#,
        ),
        (
            "{query: x.example, expect: {equals: [nope]}}",
            r#""nope" is not an IP address"#,
        ),
        (
            "{query: x.example, type: MX, expect: {within: [198.19.0.0/16]}}",
            "apply to A and AAAA queries, not MX",
        ),
        (
            "{query: x.example, type: AAAA, expect: {equals: [198.19.10.5]}}",
            "198.19.10.5 can never be the answer to a AAAA query",
        ),
        (
            "{query: x.example, expect: {rcode: NXDOMAIN, min_answers: 1}}",
            "cannot be combined",
        ),
        ("{query: x.example, colour: red}", "unknown field `colour`"),
    ];
    for (yaml, want) in cases {
        let got = parse(yaml).unwrap_err();
        assert!(
            got.contains(want),
            "for {yaml}\n want: {want}\n  got: {got}"
        );
    }
}

#[test]
fn resolv_conf_as_glibc_reads_it() {
    let conf = ResolvConf::parse(
        "# generated\nsearch old.example\nnameserver 198.18.0.10\nnameserver fe80::1%eth0\n\
         nameserver nonsense\ndomain corp.example\nsearch corp.example svc.example # note\n\
         options ndots:5 timeout:1\n",
    );
    assert_eq!(
        conf.nameservers,
        vec![
            "198.18.0.10".parse::<IpAddr>().unwrap(),
            "fe80::1".parse().unwrap()
        ]
    );
    assert_eq!(conf.search, vec!["corp.example", "svc.example"]);
    assert_eq!(conf.ndots, 5);
    assert_eq!(ResolvConf::parse("options ndots:99").ndots, 15);
    assert_eq!(ResolvConf::parse("").ndots, 1);
}

#[test]
fn search_candidates_follow_ndots() {
    let conf = ResolvConf::parse("search corp.example svc.example\noptions ndots:2\n");
    let names = |q: &str| -> Vec<String> {
        candidates(&Query::parse(q).unwrap().name, &conf)
            .iter()
            .map(Name::to_ascii)
            .collect()
    };
    assert_eq!(names("db"), ["db.corp.example.", "db.svc.example.", "db."]);
    assert_eq!(
        names("db.dc1.corp"),
        [
            "db.dc1.corp.",
            "db.dc1.corp.corp.example.",
            "db.dc1.corp.svc.example."
        ]
    );
    assert_eq!(names("db.corp.example."), ["db.corp.example."]);
}

#[test]
fn each_pair_is_judged_and_reported_on_its_own() {
    let s = spec(
        "{query: db.corp.example, servers: [system, 198.19.10.1], transport: [udp, tcp],
          expect: {within: [198.19.0.0/16]}}",
    );
    let rounds = vec![
        asked(
            Server::System,
            "198.18.1.4:53",
            DnsTransport::Udp,
            Reply::Answers(vec![a("198.19.10.5")]),
        ),
        asked(
            Server::System,
            "198.18.1.4:53",
            DnsTransport::Tcp,
            Reply::Failed(Reason::Timeout, "timeout".into()),
        ),
        asked(
            Server::System,
            "198.18.1.5:53",
            DnsTransport::Udp,
            Reply::Answers(vec![a("198.19.10.5")]),
        ),
        asked(
            Server::System,
            "198.18.1.5:53",
            DnsTransport::Tcp,
            Reply::Answers(vec![a("198.19.10.5")]),
        ),
        asked(
            Server::Addr(addr("198.19.10.1:53")),
            "198.19.10.1:53",
            DnsTransport::Udp,
            Reply::Answers(vec![a("198.18.99.7")]),
        ),
        asked(
            Server::Addr(addr("198.19.10.1:53")),
            "198.19.10.1:53",
            DnsTransport::Tcp,
            Reply::NxDomain,
        ),
    ];
    let failure = s.judge(&rounds).unwrap_err();
    assert_eq!(
        failure.reason,
        Reason::Timeout,
        "the first failing pair decides"
    );
    assert_eq!(
        failure.detail,
        "A db.corp.example: system 198.18.1.4 udp: A 198.19.10.5; tcp: timeout | \
         system 198.18.1.5 udp: A 198.19.10.5; tcp: A 198.19.10.5 | \
         198.19.10.1 udp: A 198.18.99.7 (198.18.99.7 not within 198.19.0.0/16); tcp: NXDOMAIN"
    );
    let Measurements::Dns(report) = failure.measurements else {
        panic!("expected a dns report");
    };
    let pairs: Vec<(&str, &str, Option<Reason>, usize)> = report
        .pairs
        .iter()
        .map(|p| {
            (
                p.server.as_str(),
                p.transport.as_str(),
                p.failure,
                p.durations.len(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("system", "udp", None, 2),
            ("system", "tcp", Some(Reason::Timeout), 2),
            ("198.19.10.1", "udp", Some(Reason::Mismatch), 1),
            ("198.19.10.1", "tcp", Some(Reason::Nxdomain), 1),
        ]
    );
    let mismatches: Vec<Option<&str>> =
        report.pairs.iter().map(|p| p.mismatch.as_deref()).collect();
    assert_eq!(
        mismatches,
        [
            None,
            None,
            Some("A 198.18.99.7 (198.18.99.7 not within 198.19.0.0/16)"),
            None
        ],
        "only a wrong answer is kept, with what was expected"
    );
}

#[test]
fn expectations() {
    let verdict = |yaml: &str, reply: Reply| spec(yaml).verdict(&reply);
    let reason = |yaml: &str, reply: Reply| verdict(yaml, reply).map(|_| ()).map_err(|e| e.0);
    let q = "{query: db.corp.example}";
    assert_eq!(
        verdict(q, Reply::Answers(vec![a("198.19.10.5")])),
        Ok("A 198.19.10.5".into())
    );
    assert_eq!(reason(q, Reply::NxDomain), Err(Reason::Nxdomain));
    assert_eq!(reason(q, Reply::NoData), Err(Reason::Nodata));
    assert_eq!(
        reason(q, Reply::Rcode(ResponseCode::ServFail)),
        Err(Reason::Servfail)
    );
    assert_eq!(
        reason(q, Reply::Rcode(ResponseCode::Refused)),
        Err(Reason::DnsRefused)
    );
    assert_eq!(
        verdict(q, Reply::Rcode(ResponseCode::NotImp)),
        Err((Reason::Error, "NOTIMP".into()))
    );
    let dangling = Answer {
        owner: "alias.corp.example.".into(),
        record_type: RecordType::CNAME,
        text: "gone.corp.example.".into(),
        ip: None,
    };
    assert_eq!(
        verdict(q, Reply::Answers(vec![dangling])),
        Err((
            Reason::Nodata,
            "CNAME gone.corp.example. (no A record)".into()
        ))
    );

    let nx = "{query: gone.corp.example, expect: {rcode: NXDOMAIN}}";
    assert_eq!(verdict(nx, Reply::NxDomain), Ok("NXDOMAIN".into()));
    assert_eq!(
        verdict(nx, Reply::Answers(vec![a("198.19.10.5")])),
        Err((Reason::Mismatch, "A 198.19.10.5 (expected NXDOMAIN)".into()))
    );
    assert_eq!(reason(nx, Reply::NoData), Err(Reason::Mismatch));

    let two = "{query: db.corp.example, expect: {min_answers: 2}}";
    assert_eq!(
        verdict(two, Reply::Answers(vec![a("198.19.10.5")])),
        Err((
            Reason::Mismatch,
            "A 198.19.10.5 (1 A records, expected at least 2)".into()
        ))
    );
    let any = "{query: corp.example, type: SOA, expect: {min_answers: 0}}";
    assert_eq!(verdict(any, Reply::NoData), Ok("NODATA".into()));

    let equals = "{query: db.corp.example, expect: {equals: [198.19.10.6, 198.19.10.5]}}";
    let both = Reply::Answers(vec![a("198.19.10.5"), a("198.19.10.6"), a("198.19.10.5")]);
    assert!(verdict(equals, both).is_ok());
    assert_eq!(
        verdict(equals, Reply::Answers(vec![a("198.19.10.5")])),
        Err((
            Reason::Mismatch,
            "A 198.19.10.5 (expected 198.19.10.5, 198.19.10.6)".into()
        ))
    );
}

#[test]
fn many_answers_are_counted_not_listed() {
    let answers: Vec<Answer> = (1..=6).map(|i| a(&format!("198.19.10.{i}"))).collect();
    assert_eq!(
        show(&answers, false),
        "A 198.19.10.1 A 198.19.10.2 A 198.19.10.3 A 198.19.10.4 (+2 more)"
    );
    assert_eq!(show(&answers[..1], true), "db.corp.example. A 198.19.10.1");
}

fn response(edit: impl FnOnce(&mut Message)) -> DnsResponse {
    let mut message = Message::response(7, OpCode::Query);
    edit(&mut message);
    DnsResponse::from_message(message).unwrap()
}

#[test]
fn responses_become_replies_without_trusting_their_content() {
    let name = Name::from_ascii("db.corp.example.").unwrap();
    let record = |data: RData| Record::from_rdata(name.clone(), 60, data);
    let answered = response(|m| {
        m.add_answer(record(RData::CNAME(CNAME(name.clone()))));
        m.add_answer(record(RData::A(A::new(198, 19, 10, 5))));
        m.add_answer(record(RData::TXT(TXT::new(vec!["x\u{7}".repeat(40)]))));
        // A hostile server may put anything anywhere; rendering must not panic.
        m.add_answer(record(RData::OPT(OPT::default())));
    });
    let Reply::Answers(answers) = Reply::from_response(&answered) else {
        panic!("expected answers");
    };
    assert_eq!(answers[1].ip, Some("198.19.10.5".parse().unwrap()));
    assert!(answers[2].text.ends_with('…'), "{}", answers[2].text);
    assert!(!answers[2].text.contains('\u{7}'), "{}", answers[2].text);
    assert_eq!(answers[3].text, "<unprintable>");

    let empty = response(|_| {});
    assert_eq!(Reply::from_response(&empty), Reply::NoData);
    let nx = response(|m| m.metadata.response_code = ResponseCode::NXDomain);
    assert_eq!(Reply::from_response(&nx), Reply::NxDomain);
    let truncated = response(|m| m.metadata.truncation = true);
    assert_eq!(Reply::from_response(&truncated), Reply::Truncated);
}

#[test]
fn transport_failures_say_what_the_server_did() {
    let failed = |e: NetError| Reply::failed(&e);
    assert_eq!(
        failed(NetError::from(ProtoError::from("label points nowhere"))),
        Reply::Failed(
            Reason::Error,
            "malformed answer: label points nowhere".into()
        )
    );
    assert_eq!(
        failed(NetError::from(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "stream closed"
        ))),
        Reply::Failed(
            Reason::Error,
            "the server closed the connection without a valid answer (stream closed)".into()
        )
    );
    assert_eq!(
        failed(NetError::from(io::Error::from_raw_os_error(
            libc::ECONNRESET
        ))),
        Reply::Failed(
            Reason::Reset,
            "reset (Connection reset by peer (os error 104))".into()
        )
    );
}

#[test]
fn the_profile_check_asks_the_first_search_domain_or_the_root() {
    let ip: IpAddr = "198.18.0.10".parse().unwrap();
    let soa = DnsSpec::nameserver_check(ip, Some("corp.example"));
    assert_eq!(
        soa.describe(),
        "dns SOA corp.example via 198.18.0.10 over udp, tcp"
    );
    assert_eq!(soa.expect.min_answers, 0);
    let root = DnsSpec::nameserver_check(ip, None);
    assert_eq!(root.describe(), "dns NS . via 198.18.0.10 over udp, tcp");
    assert!(root.query.name.is_root());
}

#[test]
fn a_server_answered_when_any_of_its_pairs_did() {
    assert_eq!(
        server_answered([Some(Reason::Timeout), Some(Reason::Refused)].into_iter()),
        Some(true)
    );
    assert_eq!(
        server_answered([Some(Reason::Timeout), Some(Reason::Error)].into_iter()),
        Some(false)
    );
    assert_eq!(server_answered([Some(Reason::Error)].into_iter()), None);
}

#[test]
fn a_truncated_answer_is_followed_over_tcp_and_judged_by_that_leg() {
    let s = spec("{query: db.corp.example, servers: [198.19.10.1]}");
    assert_eq!(s.truncation, Truncation::RetryTcp);
    let bind = Server::Addr(addr("198.19.10.1:53"));
    let over_tcp = |reply: Reply| Reply::OverTcp(Box::new(reply));
    let passed = s
        .judge(&[asked(
            bind,
            "198.19.10.1:53",
            DnsTransport::Udp,
            over_tcp(Reply::Answers(vec![a("198.19.10.5")])),
        )])
        .unwrap();
    assert_eq!(
        passed.detail,
        "A db.corp.example: 198.19.10.1 udp: truncated, followed over tcp: A 198.19.10.5"
    );

    let failure = s
        .judge(&[asked(
            bind,
            "198.19.10.1:53",
            DnsTransport::Udp,
            over_tcp(Reply::Failed(Reason::Timeout, "timeout".into())),
        )])
        .unwrap_err();
    assert_eq!(failure.reason, Reason::Timeout);
    assert_eq!(
        failure.detail,
        "A db.corp.example: 198.19.10.1 udp: truncated, followed over tcp: timeout"
    );
    let Measurements::Dns(report) = failure.measurements else {
        panic!("expected a dns report");
    };
    // The pair keeps its udp label; its legs are told apart for the diagnoses.
    assert_eq!(report.pairs.len(), 1);
    assert_eq!(report.pairs[0].transport, DnsTransport::Udp);
    assert_eq!(report.pairs[0].failure, Some(Reason::Timeout));
    assert_eq!(
        report.pairs[0].followed,
        Some(Followed {
            udp: None,
            tcp: Some(Reason::Timeout)
        })
    );
}

#[test]
fn a_pair_not_followed_has_no_legs_and_a_mixed_system_pair_keeps_both() {
    let s = spec("{query: db.corp.example}");
    let rounds = [
        asked(
            Server::System,
            "198.18.1.4:53",
            DnsTransport::Udp,
            Reply::Failed(Reason::Refused, "refused".into()),
        ),
        asked(
            Server::System,
            "198.18.1.5:53",
            DnsTransport::Udp,
            Reply::OverTcp(Box::new(Reply::Answers(vec![a("198.19.10.5")]))),
        ),
    ];
    let Measurements::Dns(report) = s.judge(&rounds).unwrap_err().measurements else {
        panic!("expected a dns report");
    };
    assert_eq!(
        report.pairs[0].followed,
        Some(Followed {
            udp: Some(Reason::Refused),
            tcp: None
        })
    );
    let plain = s
        .judge(&[asked(
            Server::System,
            "198.18.1.4:53",
            DnsTransport::Udp,
            Reply::Answers(vec![a("198.19.10.5")]),
        )])
        .unwrap();
    let Measurements::Dns(report) = plain.measurements else {
        panic!("expected a dns report");
    };
    assert_eq!(report.pairs[0].followed, None);
}

#[test]
fn truncation_fail_keeps_udp_strict() {
    let s = spec("{query: db.corp.example, servers: [198.19.10.1], truncation: fail}");
    assert_eq!(s.truncation, Truncation::Fail);
    let failure = s
        .judge(&[asked(
            Server::Addr(addr("198.19.10.1:53")),
            "198.19.10.1:53",
            DnsTransport::Udp,
            Reply::Truncated,
        )])
        .unwrap_err();
    assert_eq!(failure.reason, Reason::Error);
    assert_eq!(
        failure.detail,
        "A db.corp.example: 198.19.10.1 udp: truncated (the answer does not fit)"
    );
    assert!(parse("{query: x.example, truncation: tcp}").is_err());
}

#[test]
fn authoritative_and_recursion_desired_parse_with_resolver_defaults() {
    let s = spec("{query: db.corp.example}");
    assert!(!s.authoritative);
    assert!(s.recursion_desired);
    let s = spec("{query: db.corp.example, authoritative: true, recursion_desired: false}");
    assert!(s.authoritative);
    assert!(!s.recursion_desired);
    assert!(parse("{query: x.example, authoritative: maybe}").is_err());
}

#[test]
fn an_answer_without_aa_fails_only_when_authority_is_asked_for() {
    let name = Name::from_ascii("db.corp.example.").unwrap();
    let answer = |aa: bool| {
        response(|m| {
            m.metadata.authoritative = aa;
            m.add_answer(Record::from_rdata(
                name.clone(),
                60,
                RData::A(A::new(198, 19, 10, 5)),
            ));
        })
    };
    let not_aa = answer(false);
    assert!(matches!(Reply::of(&not_aa, false), Reply::Answers(_)));
    assert!(matches!(Reply::of(&answer(true), true), Reply::Answers(_)));
    let marked = Reply::of(&not_aa, true);
    assert_eq!(
        marked,
        Reply::NotAuthoritative(Box::new(Reply::Answers(vec![a("198.19.10.5")])))
    );
    // Only answers are marked: a failure stays what it was.
    let servfail = response(|m| m.metadata.response_code = ResponseCode::ServFail);
    assert_eq!(
        Reply::of(&servfail, true),
        Reply::Rcode(ResponseCode::ServFail)
    );

    let s = spec("{query: db.corp.example, servers: [198.19.10.1], authoritative: true}");
    assert_eq!(
        s.verdict(&marked),
        Err((Reason::Mismatch, "A 198.19.10.5 (not authoritative)".into()))
    );
    let nx = Reply::NotAuthoritative(Box::new(Reply::NxDomain));
    assert_eq!(
        s.verdict(&nx),
        Err((Reason::Mismatch, "NXDOMAIN (not authoritative)".into()))
    );
}

/// The answer a server would give to `query`: its ID and question, one A record.
fn answer_of(query: &Message, ip: [u8; 4]) -> Message {
    let mut answer = Message::response(query.id, OpCode::Query);
    answer.queries = query.queries.clone();
    let name = query.queries[0].name().clone();
    answer.add_answer(Record::from_rdata(
        name,
        60,
        RData::A(A::from(std::net::Ipv4Addr::from(ip))),
    ));
    answer
}

fn db_query() -> Message {
    let s = spec("{query: db.corp.example, servers: [198.19.10.1]}");
    let mut name = s.query.name.clone();
    name.set_fqdn(true);
    s.request(name).into_parts().0
}

#[test]
fn a_datagram_is_the_answer_only_with_the_querys_id_and_question() {
    let query = db_query();
    let wire = |m: &Message| m.to_vec().unwrap();
    let right = answer_of(&query, [198, 19, 10, 5]);
    let got = super::udp::answer_to(&query, &wire(&right))
        .unwrap()
        .unwrap();
    assert_eq!(got.answers, right.answers);

    // A late answer to another round, or a spoofer's guess: another ID.
    let mut late = right.clone();
    late.metadata.id = query.id.wrapping_add(1);
    assert!(super::udp::answer_to(&query, &wire(&late)).is_none());
    // The right ID for another question.
    let mut other = right.clone();
    other.queries = vec![Question::query(
        Name::from_ascii("www.corp.example.").unwrap(),
        RecordType::A,
    )];
    assert!(super::udp::answer_to(&query, &wire(&other)).is_none());
    // Too short to carry an ID.
    assert!(super::udp::answer_to(&query, &[]).is_none());
    assert!(super::udp::answer_to(&query, &query.id.to_be_bytes()[..1]).is_none());

    // With the right ID, bytes that do not decode, or a query sent back, are the server's
    // answer, and a malformed one.
    let mut garbage = query.id.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xC0]);
    let malformed = |datagram: &[u8]| match super::udp::answer_to(&query, datagram) {
        Some(Err(e)) => Reply::failed(&e),
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        malformed(&garbage),
        Reply::Failed(Reason::Error, why) if why.starts_with("malformed answer: ")
    ));
    assert!(matches!(
        malformed(&wire(&query)),
        Reply::Failed(Reason::Error, why) if why.starts_with("malformed answer: ")
    ));
}

/// On loopback: a datagram from another port, a late answer and an answer to another question
/// arrive first; the exchange reads past them to its answer.
#[tokio::test]
async fn a_udp_question_waits_past_strangers_for_its_answer() {
    use tokio::net::UdpSocket;
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let at = server.local_addr().unwrap();
    let query = db_query();
    let serve = async {
        let mut buf = [0u8; 1500];
        let (len, client) = server.recv_from(&mut buf).await.unwrap();
        let asked = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(asked.id, query.id);
        assert_eq!(asked.queries, query.queries);
        let send = |m: Message| m.to_vec().unwrap();
        let right = answer_of(&asked, [198, 19, 10, 5]);
        let spoofed = answer_of(&asked, [198, 19, 66, 1]);
        stranger
            .send_to(&send(spoofed.clone()), client)
            .await
            .unwrap();
        let mut late = spoofed.clone();
        late.metadata.id = asked.id.wrapping_sub(1);
        server.send_to(&send(late), client).await.unwrap();
        let mut other = spoofed;
        other.queries[0].set_query_type(RecordType::AAAA);
        server.send_to(&send(other), client).await.unwrap();
        server.send_to(&send(right), client).await.unwrap();
    };
    let (got, ()) = tokio::join!(super::udp::exchange(at, &query), serve);
    let got = got.unwrap();
    assert_eq!(
        Reply::of(&got, false),
        Reply::Answers(vec![a("198.19.10.5")])
    );
}
