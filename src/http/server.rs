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

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_at_once() {
        let (addr, _stop) = start(limits()).await;
        // Two idle connections take both slots until the header timeout frees them.
        let _held: Vec<TcpStream> = vec![
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = exchange(addr, GET_PEER).await;
        assert_eq!(refused, "", "a third connection was served");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let served = exchange(addr, GET_PEER).await;
        assert!(served.starts_with("HTTP/1.1 200 OK"), "{served}");
    }

    #[tokio::test]
    async fn a_kept_alive_connection_is_closed_after_its_lifetime() {
        let limits = Limits {
            lifetime: Duration::from_millis(200),
            header_read: Duration::from_secs(5),
            ..limits()
        };
        let (addr, _stop) = start(limits).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut answers = 0;
        let mut buf = [0u8; 1024];
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            if stream
                .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_err()
            {
                break;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => answers += 1,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(answers >= 1, "no request was served");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still open after {answers} requests"
        );
    }

    #[tokio::test]
    async fn shutdown_waits_for_connections_to_finish() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Router::new(), limits(), async move {
            let _ = stop.await;
        }));
        let idle = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("the server stops within its grace")
            .unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
        drop(idle);
    }
}
