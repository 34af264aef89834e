//! The one accept loop: the agent's HTTP server and the reflector's TCP STUN listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How long to wait after a failed accept before the next.
const BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` for as long as it is polled, serving each on a task of its
/// own that holds one of `permits` until it ends.
///
/// `on_conn` sees each connection first: it returns the future that serves it, or `None` to
/// turn it away (the stream is dropped, which closes it). When no permit is free the future is
/// dropped unpolled, closing the connection at once, and `on_full` is told: the client learns
/// at once, and the accept queue never fills with clients waiting for nothing. `what` names the
/// listener in logs.
pub async fn accept_loop<F, Fut>(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    what: &'static str,
    mut on_conn: F,
    mut on_full: impl FnMut(SocketAddr),
) where
    F: FnMut(TcpStream, SocketAddr) -> Option<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tracing::warn!(error = %e, "{what} accept");
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        let Some(serve) = on_conn(stream, peer) else {
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(serve);
            on_full(peer);
            continue;
        };
        tokio::spawn(async move {
            let _permit = permit;
            serve.await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use tokio::io::AsyncReadExt;
    use tokio::sync::oneshot;

    use super::*;

    /// Waits until `permits` has `n` free, or panics.
    async fn free(permits: &Semaphore, n: usize) {
        tokio::time::timeout(Duration::from_secs(2), async {
            while permits.available_permits() != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} permits free, not {n}", permits.available_permits()));
    }

    /// Whether the server closed `stream` within a second, sending nothing.
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
        matches!(read, Ok(Ok(0) | Err(_)))
    }

    #[tokio::test]
    async fn a_connection_holds_a_permit_and_one_too_many_is_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let permits = Arc::new(Semaphore::new(1));
        let (full, turned_away) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let turn_away = Arc::new(AtomicBool::new(false));
        let (release, released) = oneshot::channel::<()>();
        let mut released = Some(released);
        tokio::spawn({
            let (permits, full, turned_away, turn_away) = (
                permits.clone(),
                full.clone(),
                turned_away.clone(),
                turn_away.clone(),
            );
            async move {
                let on_conn = move |stream: TcpStream, _peer| {
                    if turn_away.load(Ordering::SeqCst) {
                        turned_away.fetch_add(1, Ordering::SeqCst);
                        return None;
                    }
                    // The first connection served is held until released; later ones end.
                    let released = released.take();
                    Some(async move {
                        if let Some(released) = released {
                            let _ = released.await;
                        }
                        drop(stream);
                    })
                };
                let on_full = move |_peer| {
                    full.fetch_add(1, Ordering::SeqCst);
                };
                accept_loop(&listener, &permits, "test", on_conn, on_full).await
            }
        });

        let mut held = TcpStream::connect(addr).await.unwrap();
        free(&permits, 0).await;
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(closed(&mut extra).await, "served beyond the permits");
        assert_eq!(full.load(Ordering::SeqCst), 1);
        // Turned away before a permit is asked for: not counted as full.
        turn_away.store(true, Ordering::SeqCst);
        let mut away = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed(&mut away).await,
            "a turned-away connection stayed open"
        );
        assert_eq!(
            (
                turned_away.load(Ordering::SeqCst),
                full.load(Ordering::SeqCst)
            ),
            (1, 1)
        );
        assert!(!closed(&mut held).await, "the served connection was closed");
        let _ = release.send(());
        assert!(closed(&mut held).await);
        free(&permits, 1).await;
    }
}
