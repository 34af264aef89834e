//! The tunnel through a forward proxy: `CONNECT host:port`, and the proxy's reply head read
//! (bounded) and judged into `proxy_refused`, `proxy_error` or an open tunnel.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::probe::Reason;

/// The most of a proxy's reply head read before giving up on it.
pub const MAX_REPLY_HEAD: usize = 16 * 1024;
/// The most of a header value or reason phrase a detail quotes.
pub const QUOTED: usize = 120;

/// A proxy's reply to CONNECT, as far as the judgement needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    /// Squid's `X-Squid-Error` (`ERR_CONNECT_FAIL 111`), which says why it failed.
    pub squid_error: Option<String>,
    /// Bytes after the head.
    pub extra: usize,
}

/// What a head read so far is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not complete yet: read more.
    Partial,
    Complete(Reply),
    /// Not an HTTP/1 reply: a short description of what is wrong.
    NotHttp(String),
}

/// Parses a proxy's reply head from the bytes read so far.
pub fn parse_reply(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(e) => Parsed::NotHttp(format!("{e}, starting {}", quoted(bytes, 32))),
        Ok(httparse::Status::Complete(len)) => {
            let squid_error = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("x-squid-error"))
                .map(|h| quoted(h.value, QUOTED));
            Parsed::Complete(Reply {
                status: response.code.unwrap_or_default(),
                reason: quoted(response.reason.unwrap_or_default().as_bytes(), QUOTED),
                squid_error,
                extra: bytes.len() - len,
            })
        }
    }
}

/// Printable ASCII of at most `max` bytes, for a one-line detail.
pub fn quoted(bytes: &[u8], max: usize) -> String {
    let mut text: String = bytes
        .iter()
        .take(max)
        .map(|&b| match b {
            b' '..=b'~' => char::from(b),
            _ => '?',
        })
        .collect();
    if bytes.len() > max {
        text.push('…');
    }
    text
}

/// The proxy's own failure, when `reply` is one: a 403 or 407 is `proxy_refused` (its access
/// rules or authentication), any other status but 2xx is `proxy_error` (it could not reach or
/// ask the target). `proxy` and `asked` (`CONNECT host:port`, `GET http://…`) name both in the
/// detail.
pub fn refusal(reply: &Reply, proxy: &str, asked: &str) -> Option<(Reason, String)> {
    let said = match &reply.squid_error {
        Some(error) => format!("{} {} (X-Squid-Error: {error})", reply.status, reply.reason),
        None => format!("{} {}", reply.status, reply.reason),
    };
    match reply.status {
        200..=299 => None,
        403 | 407 => Some((
            Reason::ProxyRefused,
            format!("proxy {proxy} refused {asked}: {said}"),
        )),
        _ => Some((
            Reason::ProxyError,
            format!("proxy {proxy} answered {asked} with {said}"),
        )),
    }
}

/// The reply to CONNECT judged: `Ok` when the tunnel is open and nothing came before the
/// target spoke (a TLS server never speaks first).
pub fn judge_connect(reply: &Reply, proxy: &str, target: &str) -> Result<(), (Reason, String)> {
    let asked = format!("CONNECT {target}");
    if let Some(failed) = refusal(reply, proxy, &asked) {
        return Err(failed);
    }
    if reply.extra > 0 {
        return Err((
            Reason::ProxyError,
            format!(
                "proxy {proxy} sent {} bytes after {} {} to {asked}, before the tunnel carried \
                 anything",
                reply.extra, reply.status, reply.reason
            ),
        ));
    }
    Ok(())
}

/// The CONNECT request for `target` (`host:port`, `[v6]:port`).
pub fn request(target: &str) -> String {
    format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: hybridprobe/{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Asks the proxy on `stream` for a tunnel to `target` and reads its reply head; on `Ok` the
/// stream carries the tunnel. The round's budget bounds the wait.
pub async fn open(
    stream: &mut TcpStream,
    proxy: &str,
    target: &str,
) -> Result<(), (Reason, String)> {
    let io = |what: &str, e: std::io::Error| {
        (
            Reason::of_io(&e),
            format!("proxy {proxy}: {what} CONNECT {target}: {e}"),
        )
    };
    stream
        .write_all(request(target).as_bytes())
        .await
        .map_err(|e| io("send", e))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| io("read the reply to", e))?;
        if read == 0 {
            let why = if head.is_empty() {
                "closed the connection without answering".to_owned()
            } else {
                format!("closed the connection after {} bytes", head.len())
            };
            return Err((
                Reason::ProxyError,
                format!("proxy {proxy} {why} CONNECT {target}"),
            ));
        }
        head.extend_from_slice(&chunk[..read]);
        match parse_reply(&head) {
            Parsed::Complete(reply) => return judge_connect(&reply, proxy, target),
            Parsed::NotHttp(why) => {
                return Err((
                    Reason::ProxyError,
                    format!("proxy {proxy}: not an HTTP reply to CONNECT {target}: {why}"),
                ))
            }
            Parsed::Partial if head.len() >= MAX_REPLY_HEAD => {
                return Err((
                    Reason::ProxyError,
                    format!(
                        "proxy {proxy}: the reply head to CONNECT {target} is over \
                         {MAX_REPLY_HEAD} bytes"
                    ),
                ))
            }
            Parsed::Partial => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(raw: &[u8]) -> Result<(), (Reason, String)> {
        match parse_reply(raw) {
            Parsed::Complete(reply) => {
                judge_connect(&reply, "198.18.1.1:3128", "api.corp.example:443")
            }
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn a_2xx_opens_the_tunnel() {
        assert_eq!(
            judged(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Ok(())
        );
        assert_eq!(judged(b"HTTP/1.0 200 OK\r\nVia: x\r\n\r\n"), Ok(()));
    }

    #[test]
    fn squids_refusal_is_proxy_refused_with_its_error() {
        let raw = b"HTTP/1.1 403 Forbidden\r\nServer: squid/5.7\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n\
                    Content-Length: 3\r\n\r\nabc";
        let (reason, detail) = judged(raw).unwrap_err();
        assert_eq!(reason, Reason::ProxyRefused);
        assert_eq!(
            detail,
            "proxy 198.18.1.1:3128 refused CONNECT api.corp.example:443: 403 Forbidden \
             (X-Squid-Error: ERR_ACCESS_DENIED 0)"
        );
        let auth = judged(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n");
        assert_eq!(auth.unwrap_err().0, Reason::ProxyRefused);
    }

    #[test]
    fn other_statuses_are_proxy_errors() {
        for raw in [
            &b"HTTP/1.1 503 Service Unavailable\r\nX-Squid-Error: ERR_CONNECT_FAIL 111\r\n\r\n"[..],
            b"HTTP/1.1 502 Bad Gateway\r\n\r\n",
            b"HTTP/1.1 504 Gateway Timeout\r\n\r\n",
            b"HTTP/1.1 301 Moved\r\n\r\n",
        ] {
            let (reason, detail) = judged(raw).unwrap_err();
            assert_eq!(reason, Reason::ProxyError, "{detail}");
            assert!(detail.contains("answered CONNECT"), "{detail}");
        }
        let (_, detail) = judged(
            b"HTTP/1.1 503 Service Unavailable\r\nX-Squid-Error: ERR_CONNECT_FAIL 111\r\n\r\n",
        )
        .unwrap_err();
        assert!(detail.ends_with("503 Service Unavailable (X-Squid-Error: ERR_CONNECT_FAIL 111)"));
    }

    #[test]
    fn bytes_after_a_2xx_head_are_a_proxy_error() {
        let (reason, detail) =
            judged(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01").unwrap_err();
        assert_eq!(reason, Reason::ProxyError);
        assert!(detail.contains("sent 3 bytes after 200"), "{detail}");
    }

    #[test]
    fn partial_and_foreign_replies() {
        assert_eq!(parse_reply(b""), Parsed::Partial);
        assert_eq!(parse_reply(b"HTTP/1.1 200 Conn"), Parsed::Partial);
        assert_eq!(parse_reply(b"HTTP/1.1 200 OK\r\nVia: 1.1"), Parsed::Partial);
        for raw in [
            &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
            b"\x15\x03\x01\x00\x02\x02\x46",
            b"HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            let Parsed::NotHttp(why) = parse_reply(raw) else {
                panic!("{raw:?} should not parse");
            };
            assert!(!why.contains(char::is_control), "{why:?}");
        }
    }

    #[test]
    fn quoted_text_is_one_bounded_line() {
        let mut long = format!("HTTP/1.1 403 {}\r\nX-Squid-Error: a", "x".repeat(500)).into_bytes();
        long.extend_from_slice(b"\xffb\r\n\r\n");
        let Parsed::Complete(reply) = parse_reply(&long) else {
            panic!("should parse");
        };
        assert_eq!(reply.reason.chars().count(), QUOTED + 1);
        assert_eq!(reply.squid_error.as_deref(), Some("a?b"));
    }

    #[test]
    fn the_request_names_the_target_twice() {
        let text = request("198.19.10.1:443");
        assert!(text.starts_with("CONNECT 198.19.10.1:443 HTTP/1.1\r\nHost: 198.19.10.1:443\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
