use super::*;
use crate::probe::tls::TlsSpec;

fn parse(yaml: &str) -> Result<HttpSpec, String> {
    serde_norway::from_str::<HttpSpec>(yaml).map_err(|e| e.to_string())
}

#[test]
fn defaults() {
    let spec = parse("{url: https://api.corp.example/healthz}").unwrap();
    assert_eq!(spec.method, Method::Get);
    assert_eq!(spec.valid_status.to_string(), "2xx");
    assert_eq!(spec.max_redirects, 0);
    assert_eq!(spec.url.port, 443);
    assert_eq!(spec.url.path_and_query, "/healthz");
    assert_eq!(spec.url.to_string(), "https://api.corp.example/healthz");
    assert_eq!(spec.describe(), "http GET https://api.corp.example/healthz");
    assert_eq!(spec.tls, TlsSpec::default());
}

#[test]
fn urls() {
    let url = |s: &str| Url::parse(s).map(|u| (u.to_string(), u.authority()));
    assert_eq!(
        url("http://198.19.10.1:8080").unwrap(),
        ("http://198.19.10.1:8080/".into(), "198.19.10.1:8080".into())
    );
    assert_eq!(
        url("https://[2001:db8::1]/x?y=1").unwrap(),
        ("https://[2001:db8::1]/x?y=1".into(), "[2001:db8::1]".into())
    );
    for bad in [
        "ftp://a.example/",
        "a.example/x",
        "http://user:pw@a.example/",
        "http://bad_name/",
        "http://gateway/",
        "http://a.example:0/",
    ] {
        assert!(Url::parse(bad).is_err(), "{bad} should be rejected");
    }
    let base = Url::parse("https://a.example/x").unwrap();
    assert_eq!(base.join("/y").unwrap().to_string(), "https://a.example/y");
    assert_eq!(
        base.join("http://b.example/z").unwrap().to_string(),
        "http://b.example/z"
    );
}

#[test]
fn status_ranges() {
    let ranges = StatusRanges::parse("2xx, 301-304,418").unwrap();
    for (code, ok) in [
        (200, true),
        (299, true),
        (300, false),
        (302, true),
        (418, true),
    ] {
        assert_eq!(ranges.contains(code), ok, "{code}");
    }
    assert_eq!(ranges.to_string(), "2xx,301-304,418");
    for bad in ["", "6xx", "304-301", "abc", "99", "2xx,"] {
        assert!(
            StatusRanges::parse(bad).is_err(),
            "{bad:?} should be rejected"
        );
    }
}

#[test]
fn validation() {
    let err = |yaml: &str| parse(yaml).unwrap_err();
    assert!(err("{url: http://a.example/, body: x}").contains("only a POST"));
    assert!(err("{url: http://a.example/, max_redirects: 11}").contains("at most 10"));
    assert!(err("{url: http://a.example/, tls: {insecure_skip_verify: true}}").contains("https"));
    assert!(err("{url: http://a.example/, method: HEAD, body_regex: x}").contains("HEAD"));
    assert!(err("{url: http://a.example/, body_regex: '('}").contains("body_regex"));
    assert!(err("{url: http://a.example/, nope: 1}").contains("unknown field"));
    assert!(err("{url: https://a.example/, tls: {nope: 1}}").contains("unknown field"));
    assert!(err("{url: http://a.example/, method: PUT}").contains("unknown variant"));
    let ok = parse(
        "{url: https://a.example/, method: POST, body: '{}', valid_status: '2xx,301-304',
          body_regex: 'ok', tls: {ca_file: /ca.pem, server_name: b.example},
          resolve_to: 198.19.10.5, max_redirects: 2}",
    )
    .unwrap();
    assert_eq!(ok.resolve_to, Some("198.19.10.5".parse().unwrap()));
    assert_eq!(ok.tls.server_name.as_deref(), Some("b.example"));
}

#[test]
fn proxy_keys() {
    let err = |yaml: &str| parse(yaml).unwrap_err();
    assert!(
        err("{url: http://a.example/, no_proxy: [.corp.example]}").contains("only with a proxy")
    );
    assert!(err("{url: http://a.example/, proxy: 'https://p.example:3128'}").contains("proxy: "));
    assert!(
        err("{url: http://a.example/, proxy: 'http://p.example:3128', no_proxy: ['a b']}")
            .contains("no_proxy: ")
    );
    let spec = parse(
        "{url: 'https://api.corp.example/', proxy: 'http://proxy.corp.example:3128',
          no_proxy: [db.corp.example, 198.19.0.0/16]}",
    )
    .unwrap();
    let proxy = spec.proxy.as_ref().unwrap();
    assert_eq!(proxy.to_string(), "proxy.corp.example:3128");
    assert_eq!(proxy.no_proxy.len(), 2);
    assert_eq!(
        spec.describe(),
        "http GET https://api.corp.example/ via proxy proxy.corp.example:3128"
    );
    let bypassed = parse(
        "{url: 'https://db.corp.example/', proxy: 'http://198.18.1.1:3128',
          no_proxy: [db.corp.example]}",
    )
    .unwrap();
    assert_eq!(bypassed.describe(), "http GET https://db.corp.example/");
}

#[test]
fn through_a_proxy_only_the_targets_own_answers_count() {
    let spec =
        parse("{url: 'https://api.corp.example/', proxy: 'http://198.18.1.1:3128'}").unwrap();
    for (reason, answered) in [
        (Reason::ProxyRefused, None),
        (Reason::ProxyError, None),
        (Reason::Refused, None),
        (Reason::Timeout, None),
        (Reason::TlsHandshake, None),
        (Reason::TlsExpired, Some(true)),
        (Reason::HttpStatus, Some(true)),
    ] {
        let failure = Failure::new(reason, "x");
        assert_eq!(
            spec.targets(Some(&failure))[0].answered,
            answered,
            "{reason}"
        );
    }
    assert_eq!(spec.targets(None)[0].answered, Some(true));
    let direct = parse("{url: 'https://api.corp.example/'}").unwrap();
    let refused = Failure::new(Reason::Refused, "x");
    assert_eq!(direct.targets(Some(&refused))[0].answered, Some(true));
}

#[test]
fn tls_and_http_failures_mean_the_far_side_answered() {
    for reason in [
        Reason::TlsUntrusted,
        Reason::TlsExpired,
        Reason::TlsNameMismatch,
        Reason::TlsHandshake,
        Reason::HttpStatus,
        Reason::BodyMismatch,
    ] {
        assert_eq!(reason.answered(), Some(true), "{reason}");
        assert!(Reason::ALL.contains(&reason));
    }
}

#[test]
fn targets_name_the_host() {
    let spec = parse("{url: 'https://api.corp.example:8443/x'}").unwrap();
    let failure = Failure::new(Reason::TlsExpired, "x");
    let targets = spec.targets(Some(&failure));
    assert_eq!(targets[0].text, "api.corp.example:8443");
    assert_eq!(targets[0].host, Host::Name("api.corp.example".into()));
    assert_eq!(targets[0].answered, Some(true));
    let mut stalled = Failure::new(Reason::Timeout, "no answer within 1s (tls)");
    assert_eq!(spec.targets(Some(&stalled))[0].answered, Some(false));
    let mut report = HttpReport::default();
    report.add(Phase::Connect, Duration::from_millis(1));
    stalled.measurements = Measurements::Http(report);
    assert_eq!(
        spec.targets(Some(&stalled))[0].answered,
        Some(true),
        "the TCP connect was an answer"
    );
    let pinned = parse("{url: 'https://api.corp.example/', resolve_to: 198.19.10.5}").unwrap();
    let targets = pinned.targets(None);
    assert_eq!(targets[0].host, Host::Ip("198.19.10.5".parse().unwrap()));
    assert_eq!(targets[0].text, "api.corp.example");
}

#[test]
fn phases_sum_over_redirects() {
    let mut report = HttpReport::default();
    report.add(Phase::Connect, Duration::from_millis(2));
    report.add(Phase::Connect, Duration::from_millis(3));
    assert_eq!(
        report.phases,
        vec![(Phase::Connect, Duration::from_millis(5))]
    );
}

/// A real exchange over a loopback socket, in the test's own namespace: status and body checks.
mod exchange {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn serve_once(response: &'static str) -> u16 {
        serve_and_keep(response).await.0
    }

    /// Serves `response` once; the receiver gets the request's first read.
    async fn serve_and_keep(
        response: &'static str,
    ) -> (u16, tokio::sync::oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tell, told) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let read = stream.read(&mut buf).await.unwrap_or(0);
            let _ = tell.send(String::from_utf8_lossy(&buf[..read]).into_owned());
            let _ = stream.write_all(response.as_bytes()).await;
        });
        (port, told)
    }

    async fn round(spec: &str, response: &'static str) -> Result<Outcome, Failure> {
        let port = serve_once(response).await;
        let spec = parse(&spec.replace("PORT", &port.to_string())).unwrap();
        let ctx = context();
        spec.run(&ctx, Duration::from_secs(2)).await
    }

    fn context() -> crate::netns::NetnsContext {
        crate::netns::NetnsContext {
            id: crate::netns::NetnsId::Pod,
            resolv_conf: "/etc/resolv.conf".into(),
            host: None,
            kept: Default::default(),
        }
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}";

    #[tokio::test]
    async fn a_good_answer_passes_and_is_measured() {
        let outcome = round("{url: 'http://127.0.0.1:PORT/h', body_regex: '\"ok\"'}", OK)
            .await
            .unwrap();
        assert!(outcome.detail.ends_with("/h: 200"), "{}", outcome.detail);
        let Measurements::Http(report) = outcome.measurements else {
            panic!("an http report");
        };
        assert_eq!(report.status, Some(200));
        let phases: Vec<Phase> = report.phases.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            phases,
            [
                Phase::Resolve,
                Phase::Connect,
                Phase::Processing,
                Phase::Transfer
            ]
        );
    }

    #[tokio::test]
    async fn a_bad_status_is_http_status() {
        let failure = round(
            "{url: 'http://127.0.0.1:PORT/'}",
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        )
        .await
        .unwrap_err();
        assert_eq!(failure.reason, Reason::HttpStatus);
        assert!(
            failure
                .detail
                .contains("503 Service Unavailable, expected 2xx"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn a_wrong_body_is_body_mismatch() {
        let failure = round("{url: 'http://127.0.0.1:PORT/', body_regex: 'healthy'}", OK)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::BodyMismatch);
        assert!(
            failure.detail.contains("15 bytes read"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out_naming_the_phase() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let spec = parse(&format!("{{url: 'http://127.0.0.1:{port}/'}}")).unwrap();
        let ctx = context();
        let failure = spec
            .run(&ctx, Duration::from_millis(200))
            .await
            .unwrap_err();
        drop(listener);
        assert_eq!(failure.reason, Reason::Timeout);
        assert!(
            failure.detail.contains("(processing)"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let spec = parse(&format!("{{url: 'http://127.0.0.1:{port}/'}}")).unwrap();
        let ctx = context();
        let failure = spec.run(&ctx, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(failure.reason, Reason::Refused);
    }

    async fn proxied(url: &str, response: &'static str) -> (Result<Outcome, Failure>, String) {
        let (port, told) = serve_and_keep(response).await;
        let spec = parse(&format!(
            "{{url: '{url}', proxy: 'http://127.0.0.1:{port}', resolve_to: 198.19.10.5}}"
        ))
        .unwrap();
        let result = spec.run(&context(), Duration::from_secs(2)).await;
        (result, told.await.unwrap_or_default())
    }

    #[tokio::test]
    async fn plain_http_goes_to_the_proxy_in_absolute_form() {
        let (result, request) = proxied("http://api.corp.example:8080/h", OK).await;
        assert!(result.is_ok(), "{result:?}");
        assert!(
            request.starts_with("GET http://198.19.10.5:8080/h HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("host: api.corp.example:8080\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_squid_error_to_plain_http_is_the_proxys() {
        let (result, _) = proxied(
            "http://api.corp.example/",
            "HTTP/1.1 503 Service Unavailable\r\nX-Squid-Error: ERR_CONNECT_FAIL 111\r\n\
             content-length: 0\r\n\r\n",
        )
        .await;
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::ProxyError);
        assert!(
            failure.detail.contains("proxy 127.0.0.1:")
                && failure.detail.contains("ERR_CONNECT_FAIL 111"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn connect_names_the_pinned_address_and_a_refusal_is_typed() {
        let (result, request) = proxied(
            "https://api.corp.example/",
            "HTTP/1.1 403 Forbidden\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n\r\n",
        )
        .await;
        assert!(
            request.starts_with("CONNECT 198.19.10.5:443 HTTP/1.1\r\nHost: 198.19.10.5:443\r\n"),
            "{request}"
        );
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::ProxyRefused, "{}", failure.detail);
        let Measurements::Http(report) = failure.measurements else {
            panic!("an http report");
        };
        let phases: Vec<Phase> = report.phases.iter().map(|(p, _)| *p).collect();
        assert_eq!(phases, [Phase::Resolve, Phase::Connect]);
    }

    #[tokio::test]
    async fn a_proxy_that_hangs_up_is_a_proxy_error() {
        let (result, _) = proxied("https://api.corp.example/", "").await;
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::ProxyError);
        assert!(
            failure
                .detail
                .contains("closed the connection without answering CONNECT"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn a_closed_proxy_port_is_refused_naming_the_proxy() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let spec = parse(&format!(
            "{{url: 'https://198.19.10.5/', proxy: 'http://127.0.0.1:{port}'}}"
        ))
        .unwrap();
        let failure = spec
            .run(&context(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Refused);
        assert!(
            failure
                .detail
                .starts_with(&format!("connect proxy 127.0.0.1:{port}: ")),
            "{}",
            failure.detail
        );
    }
}
