//! Unit tests of the `source_ip` probe: config, policy, judging and the whoami client.

use super::*;
use crate::probe::target::Host;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn parse(yaml: &str) -> Result<SourceIpSpec, String> {
    serde_norway::from_str::<SourceIpSpec>(yaml).map_err(|e| e.to_string())
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn config_forms_and_their_errors() {
    let spec = parse("{stun: '198.19.10.1:3478'}").unwrap();
    assert_eq!(spec.policy, Policy::Forbidden);
    assert_eq!(spec.reflector.to_string(), "stun/udp 198.19.10.1:3478");
    let spec = parse(
        "{stun: '198.19.10.1:3478', stun_transport: tcp, masquerade: expected, to: 198.18.1.4}",
    )
    .unwrap();
    assert_eq!(
        spec.policy,
        Policy::Expected {
            to: Some(ip("198.18.1.4"))
        }
    );
    assert_eq!(spec.reflector.to_string(), "stun/tcp 198.19.10.1:3478");
    let spec = parse("{http: 'http://198.19.10.1:8080/whoami', masquerade: any}").unwrap();
    assert_eq!(spec.policy, Policy::Any);
    match spec.reflector {
        Reflector::Http { url, json_field } => {
            assert_eq!((url.port, url.path.as_str()), (8080, "/whoami"));
            assert_eq!(json_field, "address");
        }
        other => panic!("{other:?}"),
    }
    for (yaml, want) in [
        ("{masquerade: any}", "give a reflector"),
        (
            "{stun: '198.19.10.1:3478', http: 'http://x/'}",
            "either stun or http",
        ),
        (
            "{stun: '198.19.10.1:3478', to: 198.18.1.4}",
            "`to` applies only",
        ),
        (
            "{http: 'http://x/', stun_transport: tcp}",
            "stun_transport applies only",
        ),
        ("{stun: 'x:1', json_field: ip}", "json_field applies only"),
        (
            "{stun: 'x:1', masquerade: sometimes}",
            "unknown variant `sometimes`",
        ),
        ("{http: 'https://x/'}", "only http:// is supported"),
        (
            "{stun: 'x:1', expect: 198.18.2.300}",
            "invalid IP address syntax",
        ),
        ("{stun: 'x:1', colour: red}", "unknown field `colour`"),
    ] {
        let got = parse(yaml).unwrap_err();
        assert!(got.contains(want), "{yaml}: want {want}, got {got}");
    }
}

#[test]
fn urls() {
    let url = HttpUrl::parse("http://[2001:db8::1]:8080/whoami?format=json").unwrap();
    assert_eq!(url.host, Host::Ip(ip("2001:db8::1")));
    assert_eq!(url.port, 8080);
    assert_eq!(url.path, "/whoami?format=json");
    assert_eq!(url.authority(), "[2001:db8::1]:8080");
    let url = HttpUrl::parse("http://whoami.corp.example").unwrap();
    assert_eq!((url.port, url.path.as_str()), (80, "/"));
    assert_eq!(url.authority(), "whoami.corp.example");
    assert_eq!(
        HttpUrl::parse("http://198.19.10.1?x=1").unwrap().path,
        "/?x=1"
    );
    for bad in [
        "http://198.19.10.1:0/",
        "http://198.19.10.1:x/",
        "http://[2001:db8::1/",
        "http://a b/",
        "http://198.19.10.1/a b",
        "http://198.19.10.1/?a<b",
        "ftp://198.19.10.1/",
    ] {
        assert!(HttpUrl::parse(bad).is_err(), "{bad} should be rejected");
    }
}

/// What the whoami probe makes of `reply` from a server that then closes.
fn whoami(reply: &[u8], field: &str) -> Result<IpAddr, String> {
    let url = &HttpUrl::parse("http://198.19.10.1:8080/whoami").unwrap();
    crate::net::http1::replay(reply, |stream, deadline| async move {
        whoami::ask(stream, url, field, deadline).await
    })
    .map_err(|e| e.to_string())
}

#[test]
fn whoami_bodies() {
    let ok = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    assert_eq!(
        whoami(&ok("198.18.2.10\n"), "address"),
        Ok(ip("198.18.2.10"))
    );
    assert_eq!(
        whoami(&ok(r#"{"address":"198.18.1.4","port":1}"#), "address"),
        Ok(ip("198.18.1.4"))
    );
    assert_eq!(
        whoami(&ok(r#"{"ip":"198.18.1.4:5000"}"#), "ip"),
        Ok(ip("198.18.1.4"))
    );
    assert_eq!(
        whoami(&ok("::ffff:198.18.2.10"), "address"),
        Ok(ip("198.18.2.10"))
    );
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n198.1\r\n6\r\n8.2.10\r\n0\r\n\r\n";
    assert_eq!(whoami(chunked, "address"), Ok(ip("198.18.2.10")));
    let big = format!("HTTP/1.1 200 OK\r\n\r\n198.18.2.10{}", " ".repeat(20_000));
    for (response, want) in [
        (b"HTTP/1.1 403 Forbidden\r\n\r\n".to_vec(), "status 403"),
        (ok("hello"), "is not an address"),
        (ok(r#"{"origin":"x"}"#), "no field \"address\""),
        (ok(r#"{"address":5}"#), "not a string"),
        (ok("{oops"), "not valid JSON"),
        (b"garbage".to_vec(), "malformed HTTP response"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n".to_vec(),
            "malformed HTTP response",
        ),
        (big.into_bytes(), "response is over 16384 bytes"),
        (
            format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "x".repeat(20_000)).into_bytes(),
            "response headers are over 16384 bytes",
        ),
        // Found by the whoami_response fuzz target: the raw line reached /healthz.
        (
            b"\x1b[2J\x0bgarbage\r\n\r\n198.18.2.10".to_vec(),
            "malformed HTTP response",
        ),
    ] {
        let got = whoami(&response, "address").unwrap_err();
        assert!(got.contains(want), "want {want}, got {got}");
        assert!(!got.contains(char::is_control), "{got:?}");
    }
}

fn judge(policy: Policy, netns: NetnsId, observed: &str) -> Result<Outcome, Failure> {
    let spec = SourceIpSpec {
        reflector: Reflector::Stun {
            server: HostPort::parse("198.19.10.1:3478").unwrap(),
            transport: Transport::Udp,
        },
        expect: None,
        policy,
        resolver: Default::default(),
        family: Default::default(),
    };
    let report = SourceIpReport {
        expected: ip("198.18.2.10"),
        observed: ip(observed),
        snat_observed: Some(observed != "198.18.2.10"),
    };
    spec.judge(netns, report, "note")
}

#[test]
fn policies() {
    let reason = |r: Result<Outcome, Failure>| r.err().map(|f| f.reason);
    let pod = NetnsId::Pod;
    let masq = judge(Policy::Forbidden, pod, "198.18.1.4").unwrap_err();
    assert_eq!(masq.reason, Reason::Masqueraded);
    assert_eq!(
        masq.detail,
        "expected 198.18.2.10, on-prem saw 198.18.1.4 via stun/udp 198.19.10.1:3478; \
         conntrack: note"
    );
    assert_eq!(reason(judge(Policy::Forbidden, pod, "198.18.2.10")), None);
    let kubenet = Policy::Expected {
        to: Some(ip("198.18.1.4")),
    };
    assert_eq!(reason(judge(kubenet, pod, "198.18.1.4")), None);
    assert_eq!(
        reason(judge(kubenet, pod, "198.18.2.10")),
        Some(Reason::NotMasqueraded)
    );
    assert_eq!(
        reason(judge(kubenet, pod, "198.18.9.9")),
        Some(Reason::UnexpectedSource)
    );
    assert_eq!(
        reason(judge(Policy::Expected { to: None }, pod, "198.18.9.9")),
        None
    );
    assert_eq!(reason(judge(Policy::Any, pod, "198.18.9.9")), None);
    let host = judge(kubenet, NetnsId::Host, "198.18.2.10").unwrap_err();
    assert!(host.detail.contains("netns: [pod]"), "{}", host.detail);
}

fn context() -> NetnsContext {
    NetnsContext {
        id: NetnsId::Pod,
        resolv_conf: PathBuf::from("/etc/resolv.conf"),
        host: None,
        kept: Default::default(),
    }
}

/// A loopback STUN server that ignores the first request and sends a stray datagram, so
/// only a retransmission gets the answer.
#[tokio::test]
async fn udp_retransmits_and_skips_stray_datagrams() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let (_, _) = server.recv_from(&mut buf).await.unwrap();
        let (len, peer) = server.recv_from(&mut buf).await.unwrap();
        let id = stun::decode_request(&buf[..len]).unwrap();
        server.send_to(b"not stun at all", peer).await.unwrap();
        let reply = stun::encode_response(&id, peer);
        server.send_to(reply.as_bytes(), peer).await.unwrap();
    });
    let spec = parse(&format!("{{stun: '{addr}'}}")).unwrap();
    let outcome = spec.run(&context(), Duration::from_secs(3)).await.unwrap();
    assert!(
        outcome
            .detail
            .starts_with("expected 127.0.0.1, on-prem saw 127.0.0.1 via stun/udp"),
        "{}",
        outcome.detail
    );
    assert!(
        outcome
            .detail
            .ends_with("conntrack: skipped: no host namespace is configured"),
        "{}",
        outcome.detail
    );
    match outcome.measurements {
        Measurements::SourceIp(r) => assert_eq!(r.snat_observed, None),
        other => panic!("{other:?}"),
    }
}

/// Requests go out at 0, 500 and 1500 ms: three within 1.7 s.
#[tokio::test]
async fn a_silent_server_is_a_timeout_naming_the_requests_sent() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let spec = parse(&format!("{{stun: '{}'}}", server.local_addr().unwrap())).unwrap();
    let failure = spec
        .run(&context(), Duration::from_millis(1700))
        .await
        .unwrap_err();
    assert_eq!(failure.reason, Reason::Timeout);
    assert!(
        failure.detail.ends_with("no answer to 3 requests"),
        "{}",
        failure.detail
    );
}

#[tokio::test]
async fn tcp_and_http_against_the_reflector_logic() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut conn, peer) = listener.accept().await.unwrap();
            let mut head = [0u8; 4];
            conn.peek(&mut head).await.unwrap();
            if &head == b"GET " {
                let mut request = vec![0u8; 1024];
                let _ = conn.read(&mut request).await.unwrap();
                let body = format!("{{\"address\":\"{}\"}}", peer.ip());
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(response.as_bytes()).await.unwrap();
            } else {
                let mut request = [0u8; 20];
                conn.read_exact(&mut request).await.unwrap();
                let id = stun::decode_request(&request).unwrap();
                let reply = stun::encode_response(&id, peer);
                conn.write_all(reply.as_bytes()).await.unwrap();
            }
        }
    });
    for yaml in [
        format!("{{stun: '{addr}', stun_transport: tcp}}"),
        format!("{{http: 'http://{addr}/whoami'}}"),
    ] {
        let spec = parse(&yaml).unwrap();
        let outcome = spec.run(&context(), Duration::from_secs(2)).await;
        let outcome = outcome.unwrap_or_else(|f| panic!("{yaml}: {}", f.detail));
        assert!(
            outcome
                .detail
                .starts_with("expected 127.0.0.1, on-prem saw 127.0.0.1"),
            "{}",
            outcome.detail
        );
    }
}

#[tokio::test]
async fn an_explicit_expectation_overrides_the_route_source() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let (len, peer) = server.recv_from(&mut buf).await.unwrap();
        let id = stun::decode_request(&buf[..len]).unwrap();
        let reply = stun::encode_response(&id, peer);
        server.send_to(reply.as_bytes(), peer).await.unwrap();
    });
    let spec = parse(&format!("{{stun: '{addr}', expect: 127.0.0.2}}")).unwrap();
    let failure = spec
        .run(&context(), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(failure.reason, Reason::Masqueraded);
    assert!(
        failure
            .detail
            .starts_with("expected 127.0.0.2, on-prem saw 127.0.0.1"),
        "{}",
        failure.detail
    );
}
