//! Sockets created inside a namespace from Rust, without moving any test thread.
//!
//! A socket belongs for life to the namespace it was created in, so a short-lived thread enters
//! the namespace, creates the socket and hands it back. Test threads are shared between tests
//! and never call `setns` themselves.

use super::{Host, Lab};
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Lab {
    /// Runs `f` on a fresh thread that has joined the namespace, and returns its result.
    pub fn in_ns<T: Send + 'static>(&self, h: Host, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.ns_path(h);
        let thread = std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
            f()
        });
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    pub fn tcp_listen(&self, h: Host, addr: SocketAddr) -> TcpListener {
        self.in_ns(h, move || {
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr} in {h:?}: {e}"))
        })
    }

    /// Connects from inside the namespace; the stream can then be used from any thread.
    pub fn tcp_connect(
        &self,
        h: Host,
        addr: SocketAddr,
        timeout: Duration,
    ) -> std::io::Result<TcpStream> {
        self.in_ns(h, move || TcpStream::connect_timeout(&addr, timeout))
    }

    /// A plain "port open" listener: accepts and immediately closes connections until the lab
    /// drops.
    pub fn serve_tcp(&self, h: Host, addr: SocketAddr) {
        let listener = self.tcp_listen(h, addr);
        // Non-blocking so the thread notices the lab stopping without a wake-up connection.
        listener
            .set_nonblocking(true)
            .expect("set_nonblocking on listener");
        let stopping = self.stopping.clone();
        let server = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => {
                        eprintln!("lab: accept on {addr} in {h:?}: {e}");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        });
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(server);
    }

    pub(super) fn stop_servers(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let servers = std::mem::take(&mut *self.servers.lock().unwrap_or_else(|e| e.into_inner()));
        for server in servers {
            let _ = server.join();
        }
    }
}
