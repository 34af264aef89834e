//! Serving HTTP to networks we do not control: the agent's endpoints and the reflector's.
//!
//! Each connection is bounded in number, in time and in the memory its request head may take,
//! so slow clients (slowloris), huge headers or many scrapers at once cannot exhaust the agent,
//! and the kubelet's `/livez` keeps its answer. The routes never read a request body, so bodies
//! cost nothing: hyper discards an unread body by closing the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower_service::Service;

use crate::net::accept::accept_loop;

/// What one server allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once. One more is closed as soon as it is accepted: the client
    /// learns at once, and the accept queue never fills with clients waiting for nothing.
    pub connections: u32,
    /// How long a client may take to send a request head, and how long a kept-alive connection
    /// may sit idle before its next one. A slowloris client is cut off after this.
    pub header_read: Duration,
    /// The largest request head (request line and headers); a larger one gets 431 and the
    /// connection is closed.
    pub max_head_bytes: usize,
    /// A connection is asked to close after this long, finishing the request in flight; a
    /// client that reads its response too slowly to finish within `grace` more is cut off.
    pub lifetime: Duration,
    pub grace: Duration,
}

impl Default for Limits {
    /// Kubelet probes, Prometheus and curl send heads of a few hundred bytes in one packet and
    /// read answers at once; 256 connections of at most 16 KiB of head each stay within a few
    /// MiB, while a hundred scrapers at once are still served.
    fn default() -> Limits {
        Limits {
            connections: 256,
            header_read: Duration::from_secs(5),
            max_head_bytes: 16 * 1024,
            lifetime: Duration::from_secs(60),
            grace: Duration::from_secs(5),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then asks every
/// connection to finish and waits for them, each at most `limits.grace`. Handlers can read the
/// peer's address with `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.connections as usize));
    let (stopping_tx, stopping) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(limits.max_head_bytes);
    let on_conn = |stream: TcpStream, peer: SocketAddr| {
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(request)
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let mut stopping = stopping.clone();
        Some(async move {
            tokio::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "HTTP connection ended");
                    }
                    return;
                }
                () = tokio::time::sleep(limits.lifetime) => {}
                _ = stopping.wait_for(|stop| *stop) => {}
            }
            connection.as_mut().graceful_shutdown();
            if tokio::time::timeout(limits.grace, connection)
                .await
                .is_err()
            {
                tracing::debug!(%peer, "HTTP connection cut off: response not read in time");
            }
        })
    };
    let on_full = |peer: SocketAddr| {
        tracing::debug!(%peer, limit = limits.connections, "HTTP connection limit reached; closing");
    };
    tokio::select! {
        () = accept_loop(&listener, &permits, "HTTP", on_conn, on_full) => {}
        () = shutdown => {}
    }
    let _ = stopping_tx.send(true);
    // Each connection holds a permit until it ends: when all are back, all have ended.
    let _ = permits.acquire_many(limits.connections).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    fn limits() -> Limits {
        Limits {
            connections: 2,
            header_read: Duration::from_millis(300),
            max_head_bytes: 8192,
            lifetime: Duration::from_secs(30),
            grace: Duration::from_millis(200),
        }
    }

    /// Serves a router that answers `/peer` with the client's address, until `stop` is sent.
    async fn start(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, limits, async move {
            let _ = stop.await;
        }));
        (addr, stop_tx)
    }

    /// Sends `request` and reads until the server closes the connection.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    const GET_PEER: &[u8] = b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    #[tokio::test]
    async fn handlers_see_the_peer_address() {
        let (addr, _stop) = start(limits()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let local = stream.local_addr().unwrap();
        stream.write_all(GET_PEER).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with(&local.to_string()), "{answer}");
    }

    #[tokio::test]
    async fn a_head_sent_a_byte_at_a_time_is_cut_off() {
        let (addr, _stop) = start(limits()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let mut closed = false;
        for byte in b"GET /peer HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
            .take(200)
        {
            if stream.write_all(&[*byte]).await.is_err() {
                closed = true;
                break;
            }
            let mut buf = [0u8; 256];
            let read = tokio::time::timeout(Duration::from_millis(20), stream.read(&mut buf));
            if let Ok(Ok(0) | Err(_)) = read.await {
                closed = true;
                break;
            }
        }
        assert!(closed, "still open after {:?}", started.elapsed());
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn an_oversized_head_gets_431() {
        let (addr, _stop) = start(limits()).await;
        let mut request = b"GET /peer HTTP/1.1\r\nHost: x\r\n".to_vec();
        request.extend(b"X-Big: ".iter().chain(&[b'a'; 16 * 1024]));
        request.extend(b"\r\n\r\n");
        let answer = exchange(addr, &request).await;
        assert!(
            answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
            "{answer}"
        );
    }

    /// Sends one request on `stream`, kept alive, and reads its whole answer.
    async fn ask_kept_alive(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        // `/peer` answers with a Content-Length and a body of the client's address.
        while !answer.ends_with(stream.local_addr().unwrap().to_string().as_bytes()) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed mid-answer: {answer:?}");
            answer.extend(&buf[..n]);
        }
        String::from_utf8(answer).unwrap()
    }

    /// Reads until the server closes `stream`; how long that took, from `since`.
    async fn wait_closed(stream: &mut TcpStream, since: Instant, limit: Duration) -> Duration {
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(limit, async {
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        closed.await.expect("the server closes the connection");
        since.elapsed()
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_at_once() {
        let limits = limits();
        let (addr, _stop) = start(limits).await;
        // Each slot is taken by a connection that was answered and is now kept alive, idle.
        let mut held = Vec::new();
        for _ in 0..limits.connections {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            assert!(ask_kept_alive(&mut stream)
                .await
                .starts_with("HTTP/1.1 200 OK"));
            held.push((stream, Instant::now()));
        }
        // One more is closed unanswered, at once: not by the header timeout.
        let started = Instant::now();
        let refused = exchange(addr, GET_PEER).await;
        assert_eq!(refused, "", "a connection beyond the limit was served");
        assert!(
            started.elapsed() < limits.header_read / 2,
            "closed only after {:?}",
            started.elapsed()
        );
        // The idle ones are cut at the header timeout, and their slots serve again.
        for (stream, answered) in &mut held {
            let idle = wait_closed(stream, *answered, limits.header_read * 10).await;
            assert!(idle >= limits.header_read / 2, "cut after {idle:?} idle");
        }
        let deadline = Instant::now() + limits.header_read;
        loop {
            // A slot comes back when the connection's task ends, just after the close is sent.
            let served = exchange(addr, GET_PEER).await;
            if served.starts_with("HTTP/1.1 200 OK") {
                break;
            }
            assert!(Instant::now() < deadline, "no slot came back: {served:?}");
            tokio::time::sleep(limits.header_read / 30).await;
        }
    }

    #[tokio::test]
    async fn a_kept_alive_connection_is_closed_after_its_lifetime() {
        let limits = Limits {
            lifetime: Duration::from_millis(300),
            header_read: Duration::from_secs(5),
            ..limits()
        };
        let (addr, _stop) = start(limits).await;
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Requests on the one connection, while it lasts.
        let mut answers = 0;
        let closed_after = loop {
            let request = stream.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n");
            if request.await.is_err() {
                break started.elapsed();
            }
            let mut answer = Vec::new();
            let mut buf = [0u8; 1024];
            let local = stream.local_addr().unwrap().to_string();
            let complete = loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => answer.extend(&buf[..n]),
                }
                if answer.ends_with(local.as_bytes()) {
                    break true;
                }
            };
            if !complete {
                break started.elapsed();
            }
            answers += 1;
            assert!(
                started.elapsed() < limits.lifetime * 10,
                "still open after {answers} answers"
            );
            tokio::time::sleep(limits.lifetime / 10).await;
        };
        assert!(answers >= 2, "kept alive for {answers} answers only");
        assert!(
            closed_after >= limits.lifetime,
            "closed after {closed_after:?}, before the lifetime of {:?}",
            limits.lifetime
        );
    }

    #[tokio::test]
    async fn shutdown_waits_for_connections_to_finish() {
        let limits = Limits {
            grace: Duration::from_secs(5),
            ..limits()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // `/slow` answers when the test says so, having said that it started.
        let (started_tx, started) = tokio::sync::mpsc::channel::<()>(1);
        let (go_tx, go) = watch::channel(false);
        let router = Router::new().route(
            "/slow",
            get(move || {
                let (started_tx, mut go) = (started_tx.clone(), go.clone());
                async move {
                    let _ = started_tx.send(()).await;
                    let _ = go.wait_for(|go| *go).await;
                    "done"
                }
            }),
        );
        let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, limits, async move {
            let _ = stop.await;
        }));
        let mut started = started;
        let client = tokio::spawn(exchange(
            addr,
            b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ));
        started.recv().await.expect("the request is in flight");
        stop_tx.send(()).unwrap();
        // Shutdown has begun; the server must not end while the request is in flight.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!server.is_finished(), "the server ended mid-request");
        go_tx.send(true).unwrap();
        let answer = client.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("the server stops once its connections are done")
            .unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
    }
}
