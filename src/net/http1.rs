//! The one HTTP/1 client: a bounded GET over a stream the caller opened, on hyper's client side.
//!
//! The caller dials (the whoami probe from inside its network namespace, the smoke check toward
//! each agent), so this takes a connected stream, never a URL. One request per connection
//! (`Connection: close`), and every bound holds whatever the server sends: a head of at most
//! [`MAX_HEAD`] bytes, a body of at most the caller's limit (more is an error, never a truncated
//! success), and the whole exchange, handshake to last body byte, ends at the deadline.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::OnceLock;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::client::conn::http1;
use hyper::header::{ACCEPT, CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::runtime::Runtime;
use tokio::time::{timeout_at, Instant};

/// The status line and headers of a response: a whoami or `/healthz` answer needs far less.
pub const MAX_HEAD: usize = 16 * 1024;

/// A GET to send.
#[derive(Debug, Clone, Copy)]
pub struct Get<'a> {
    /// The `Host` header: `name`, `name:port` or `[v6]:port`.
    pub authority: &'a str,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    pub accept: &'a str,
    pub user_agent: &'a str,
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why there is no complete response. Each message is one short line, fit for a report.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The deadline passed first.
    #[error("no answer")]
    Timeout,
    /// The request cannot be sent as given.
    #[error("invalid request: {0}")]
    Request(#[source] hyper::http::Error),
    /// The socket failed while sending or receiving.
    #[error("{0}")]
    Io(#[source] io::Error),
    #[error("response headers are over {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("response is over {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the server closed the connection before the response was complete")]
    Incomplete,
    /// The server's bytes are not an HTTP/1 response: hyper's word for what is wrong.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// Anything else hyper reports.
    #[error("{0}")]
    Other(#[source] hyper::Error),
}

impl From<hyper::Error> for HttpError {
    fn from(e: hyper::Error) -> HttpError {
        if e.is_parse_too_large() {
            return HttpError::HeadTooLarge;
        }
        if e.is_parse() || e.is_parse_status() {
            return HttpError::Malformed(e.to_string());
        }
        if e.is_incomplete_message() {
            return HttpError::Incomplete;
        }
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                // Without an OS error code, the error is hyper's own about the body: cut short
                // by the server's close, or badly framed.
                if io.raw_os_error().is_none() {
                    match io.kind() {
                        io::ErrorKind::UnexpectedEof => return HttpError::Incomplete,
                        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
                            return HttpError::Malformed(io.to_string())
                        }
                        _ => {}
                    }
                }
                // Rebuilt rather than borrowed: the OS error code, which says refused, reset or
                // unreachable, is what callers need.
                let io = match io.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(io.kind(), io.to_string()),
                };
                return HttpError::Io(io);
            }
            source = cause.source();
        }
        HttpError::Other(e)
    }
}

/// Sends `get` over `stream` and reads the whole response, its body at most `max_body` bytes,
/// by `deadline`.
pub async fn get<S>(
    stream: S,
    get: &Get<'_>,
    max_body: usize,
    deadline: Instant,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = Request::get(get.path)
        .header(HOST, get.authority)
        .header(USER_AGENT, get.user_agent)
        .header(ACCEPT, get.accept)
        .header(CONNECTION, "close")
        .body(String::new())
        .map_err(HttpError::Request)?;
    timeout_at(deadline, exchange(stream, request, max_body))
        .await
        .unwrap_or(Err(HttpError::Timeout))
}

async fn exchange<S>(
    stream: S,
    request: Request<String>,
    max_body: usize,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sender, connection) = http1::Builder::new()
        .max_header_size(MAX_HEAD)
        .handshake(TokioIo::new(stream))
        .await?;
    let mut response = pin!(async {
        let response = sender.send_request(request).await?;
        read_body(response, max_body).await
    });
    // Both run in this task, so nothing outlives the call: returning drops the stream.
    let mut connection = pin!(connection);
    tokio::select! {
        biased;
        response = &mut response => return response,
        _ = &mut connection => {}
    }
    // The connection ended first: the response reads what it delivered, or gets its error.
    response.await
}

async fn read_body(
    response: hyper::Response<Incoming>,
    max_body: usize,
) -> Result<Response, HttpError> {
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let too_large = || HttpError::BodyTooLarge { limit: max_body };
    // A declared length says it at once; a chunked or close-delimited body as it arrives.
    if body.size_hint().lower() > max_body as u64 {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > max_body {
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Response { status, body: out })
}

/// Runs `client` against a server that sends `raw`, closes its side, and reads the request
/// For the fuzz targets and unit tests: the client's side of any reply, with no network.
pub fn replay<F, T>(raw: &[u8], client: impl FnOnce(DuplexStream, Instant) -> F) -> T
where
    F: Future<Output = T>,
{
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    });
    runtime.block_on(async {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let server = async {
            let _ = far.write_all(raw).await;
            let _ = far.shutdown().await;
            let _ = far.read_to_end(&mut Vec::new()).await;
        };
        // Far enough never to fire: a reply that makes the client wait for more is a hang,
        // which the fuzzer reports as one.
        let deadline = Instant::now() + Duration::from_secs(3600);
        tokio::join!(client(near, deadline), server).0
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const GET: Get<'static> = Get {
        authority: "198.19.10.1:8080",
        path: "/whoami?format=json",
        accept: "application/json",
        user_agent: "hybridprobe-test",
    };

    /// What the client makes of `reply` from a server that then closes, and the request it sent.
    async fn answer(reply: &[u8], max_body: usize) -> (Result<Response, HttpError>, String) {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let serve = async {
            server.write_all(reply).await.unwrap();
            server.shutdown().await.unwrap();
            let mut request = Vec::new();
            let _ = server.read_to_end(&mut request).await;
            String::from_utf8(request).unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        tokio::join!(get(client, &GET, max_body, deadline), serve)
    }

    #[tokio::test]
    async fn sends_one_get_and_reads_the_whole_body() {
        let (response, request) =
            answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 100).await;
        let response = response.unwrap();
        assert_eq!((response.status, &response.body[..]), (200, &b"hello"[..]));
        let request = request.to_ascii_lowercase();
        assert!(
            request.starts_with("get /whoami?format=json http/1.1\r\n"),
            "{request}"
        );
        for header in [
            "host: 198.19.10.1:8080",
            "accept: application/json",
            "user-agent: hybridprobe-test",
            "connection: close",
        ] {
            assert!(request.contains(&format!("\r\n{header}\r\n")), "{request}");
        }
    }

    #[tokio::test]
    async fn decodes_chunked_and_close_delimited_bodies() {
        let chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n\
                        5\r\n198.1\r\n6;ext=1\r\n8.2.10\r\n0\r\n\r\n";
        let response = answer(chunked, 100).await.0.unwrap();
        assert_eq!(
            (response.status, &response.body[..]),
            (503, &b"198.18.2.10"[..])
        );
        let close = b"HTTP/1.0 200 OK\r\n\r\n{\"status\":\"ok\"}";
        let response = answer(close, 100).await.0.unwrap();
        assert_eq!(response.body, b"{\"status\":\"ok\"}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_an_error_however_it_is_framed() {
        let declared = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{}",
            "x".repeat(11)
        );
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                       6\r\nxxxxxx\r\n5\r\nxxxxx\r\n0\r\n\r\n"
            .to_string();
        let close = format!("HTTP/1.1 200 OK\r\n\r\n{}", "x".repeat(11));
        for reply in [declared, chunked, close] {
            match answer(reply.as_bytes(), 10).await.0 {
                Err(e @ HttpError::BodyTooLarge { limit: 10 }) => {
                    assert_eq!(e.to_string(), "response is over 10 bytes")
                }
                other => panic!("{reply:?}: {other:?}"),
            }
            let response = answer(reply.as_bytes(), 11).await.0.unwrap();
            assert_eq!(response.body.len(), 11, "exactly the limit is fine");
        }
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_an_error() {
        let reply = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "x".repeat(MAX_HEAD));
        let got = answer(reply.as_bytes(), 100).await.0;
        assert!(matches!(got, Err(HttpError::HeadTooLarge)), "{got:?}");
    }

    #[tokio::test]
    async fn garbage_and_cut_answers_say_what_they_are() {
        for (reply, want) in [
            (
                &b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..],
                "malformed HTTP response",
            ),
            (b"\x1b[2J\x0bgarbage\r\n\r\n", "malformed HTTP response"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
                "malformed HTTP response",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Le",
                "closed the connection before",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                "closed the connection before",
            ),
            (b"", "closed the connection before"),
        ] {
            let why = answer(reply, 100).await.0.unwrap_err().to_string();
            assert!(why.contains(want), "{reply:?}: {why}");
            assert!(!why.contains(char::is_control), "{why:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_answers_meets_the_deadline() {
        let (client, _server) = tokio::io::duplex(1024);
        let started = Instant::now();
        let got = get(client, &GET, 100, started + Duration::from_secs(3)).await;
        assert!(matches!(got, Err(HttpError::Timeout)), "{got:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_path_that_is_no_request_target_is_refused_before_sending() {
        let (client, _server) = tokio::io::duplex(1024);
        let get = Get {
            path: "/a b",
            ..GET
        };
        let got = super::get(client, &get, 100, Instant::now() + Duration::from_secs(1)).await;
        assert!(matches!(got, Err(HttpError::Request(_))), "{got:?}");
    }
}
