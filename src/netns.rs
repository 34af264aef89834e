//! Network namespaces: the only code that enters one. An executor per namespace runs probes there.
//!
//! `setns(2)` moves only the calling thread, and a socket belongs for life to the namespace of the
//! thread that created it. So a foreign namespace gets one dedicated OS thread that enters it once
//! and runs its own current-thread runtime; work is sent to it and results come back over
//! channels. The agent's own namespace needs no thread: its work runs on the caller's runtime.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// The namespaces the agent knows: a closed set, since `netns` is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetnsId {
    /// The agent's own namespace: on the pod path.
    Pod,
    /// The node's namespace, entered from a file: one the node pinned and a hostPath volume
    /// mounts, or `/proc/1/ns/net` with hostPID.
    Host,
}

impl NetnsId {
    pub fn as_str(self) -> &'static str {
        match self {
            NetnsId::Pod => "pod",
            NetnsId::Host => "host",
        }
    }
}

impl fmt::Display for NetnsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a namespace can be used, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsStatus {
    pub id: NetnsId,
    pub unavailable: Option<String>,
}

/// What a probe may know about the namespace it runs in.
#[derive(Debug, Clone)]
pub struct NetnsContext {
    pub id: NetnsId,
    /// The resolver configuration applications in this namespace use.
    pub resolv_conf: PathBuf,
    /// Reaches the host namespace from a probe running elsewhere, for evidence only the host
    /// holds (its conntrack table). `None` in the host namespace itself, where such work runs
    /// inline, and when no host namespace is configured. Use [`NetnsContext::in_host`].
    pub host: Option<Executor>,
    /// What probe kinds keep for the namespace's life, such as a socket every check shares.
    pub kept: Kept,
}

/// A slot per type for state a probe kind keeps per namespace (an ICMP socket shared by every
/// check, say), so that the kind, not this layer, says what it is. The kind fills its slot on
/// first use from inside the namespace, where every probe runs, so a socket opened then belongs
/// to the namespace; clones of a context share the slots, and they go with its last clone.
#[derive(Clone, Default)]
pub struct Kept(Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>);

impl Kept {
    /// The namespace's `T`, made with `T::default()` on first use.
    pub fn get<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let mut slots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        Arc::clone(slot)
            .downcast::<T>()
            .unwrap_or_else(|_| unreachable!("a slot holds the type it is keyed by"))
    }
}

impl fmt::Debug for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Kept").field("slots", &slots.len()).finish()
    }
}

impl NetnsContext {
    /// Runs `work` in the host namespace: inline when this is it, else on the host's executor.
    pub async fn in_host<F, Fut, T>(&self, work: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        match (self.id, &self.host) {
            (NetnsId::Host, _) => Ok(work().await),
            (_, Some(host)) => host.run(|_| work()).await,
            (_, None) => Err(NetnsError::Unavailable(
                "no host namespace is configured".into(),
            )),
        }
    }
}

/// Why work could not be run in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetnsError {
    #[error("{0}")]
    Unavailable(String),
    #[error("the {0} namespace worker stopped")]
    WorkerGone(NetnsId),
}

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Runs work inside one network namespace.
#[derive(Clone)]
pub struct Executor {
    context: Arc<NetnsContext>,
    worker: Worker,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("netns", &self.context.id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum Worker {
    /// The caller's own namespace: run inline.
    Own,
    /// A dedicated thread that entered the namespace.
    Thread(mpsc::UnboundedSender<Job>),
    /// The namespace could not be entered; the reason is said on every attempt.
    Unavailable(String),
}

impl Executor {
    /// An executor for the namespace the agent already runs in.
    pub fn own(context: NetnsContext) -> Executor {
        Executor {
            context: Arc::new(context),
            worker: Worker::Own,
        }
    }

    /// Enters the namespace at `path` on a new thread. Never fails: when the namespace cannot be
    /// entered, the executor reports why on every use, so the other namespaces carry on.
    pub fn enter(context: NetnsContext, path: &Path) -> Executor {
        let worker = match spawn_worker(context.id, path) {
            Ok(tx) => Worker::Thread(tx),
            Err(reason) => {
                tracing::warn!(
                    netns = %context.id,
                    path = %path.display(),
                    %reason,
                    "namespace unavailable"
                );
                Worker::Unavailable(reason)
            }
        };
        Executor {
            context: Arc::new(context),
            worker,
        }
    }

    pub fn id(&self) -> NetnsId {
        self.context.id
    }

    /// `Err(reason)` when the namespace could not be entered.
    pub fn availability(&self) -> Result<(), String> {
        match &self.worker {
            Worker::Unavailable(reason) => Err(reason.clone()),
            Worker::Own | Worker::Thread(_) => Ok(()),
        }
    }

    /// Runs `work` inside the namespace and returns its result. Dropping the returned future
    /// cancels the work, wherever it runs: the caller owns timeouts.
    pub async fn run<F, Fut, T>(&self, work: F) -> Result<T, NetnsError>
    where
        F: FnOnce(Arc<NetnsContext>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let context = self.context.clone();
        match &self.worker {
            Worker::Own => Ok(work(context).await),
            Worker::Unavailable(reason) => Err(NetnsError::Unavailable(reason.clone())),
            Worker::Thread(jobs) => {
                let (reply, result) = oneshot::channel();
                let job: Job =
                    Box::new(move || Box::pin(run_until_abandoned(work(context), reply)));
                let gone = || NetnsError::WorkerGone(self.context.id);
                jobs.send(job).map_err(|_| gone())?;
                result.await.map_err(|_| gone())
            }
        }
    }
}

/// Runs `work` unless the caller stops waiting first, in which case the work is dropped.
async fn run_until_abandoned<T>(work: impl Future<Output = T>, mut reply: oneshot::Sender<T>) {
    tokio::select! {
        value = work => { let _ = reply.send(value); }
        _ = reply.closed() => {}
    }
}

/// Starts a thread that enters the namespace at `path` and serves jobs until every sender is gone.
fn spawn_worker(id: NetnsId, path: &Path) -> Result<mpsc::UnboundedSender<Job>, String> {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    let (jobs_tx, mut jobs_rx) = mpsc::unbounded_channel::<Job>();
    std::thread::Builder::new()
        .name(format!("netns-{id}"))
        .spawn(move || {
            let runtime = enter(&path).and_then(|()| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime for {}: {e}", path.display()))
            });
            let runtime = match runtime {
                Ok(runtime) => {
                    let _ = entered_tx.send(Ok(()));
                    runtime
                }
                Err(reason) => {
                    let _ = entered_tx.send(Err(reason));
                    return;
                }
            };
            runtime.block_on(async move {
                while let Some(job) = jobs_rx.recv().await {
                    tokio::spawn(job());
                }
            });
        })
        .map_err(|e| format!("cannot start a thread for the {id} namespace: {e}"))?;
    entered_rx
        .recv()
        .map_err(|_| format!("the {id} namespace thread died while entering"))??;
    Ok(jobs_tx)
}

/// Runs `work` on a thread inside the namespace at `path` (inline, in the caller's own, for
/// `None`): a one-off read before any executor exists, such as the built-in profile's.
pub fn read_once<T: Send>(
    path: Option<&Path>,
    work: impl FnOnce() -> T + Send,
) -> Result<T, String> {
    let Some(path) = path else {
        return Ok(work());
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| enter(path).map(|()| work()))
            .join()
            .unwrap_or_else(|_| Err(format!("the thread reading {} died", path.display())))
    })
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> Result<(), String> {
    // Non-blocking: a FIFO where the namespace file belongs would otherwise wait for a writer
    // forever, and the agent with it. A namespace file ignores the flag.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| open_failure(path, &e))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(format!(
            "cannot enter {}: a directory, not a namespace file{UNPINNED}",
            path.display()
        ));
    }
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| setns_failure(path, errno))
}

/// What an empty hostPath volume means: the runtime mounted the node's path, but nothing had
/// bind-mounted a namespace there.
const UNPINNED: &str = " (the node has not pinned its network namespace there, or the hostPath \
    volume is missing: docs/privileges.md says how to pin it, or use the proc-1-host overlay)";

/// Why a namespace file would not open, with the likely fix.
fn open_failure(path: &Path, e: &std::io::Error) -> String {
    let under_proc = path.starts_with("/proc");
    let why = match e.kind() {
        // /proc/PID/ns/* opens only for a process holding every capability PID has, or this one.
        std::io::ErrorKind::PermissionDenied if under_proc => {
            " (opening another process's namespace needs CAP_SYS_PTRACE)"
        }
        std::io::ErrorKind::PermissionDenied => " (the agent must run as root to open it)",
        std::io::ErrorKind::NotFound if under_proc => {
            " (a /proc path names the node's processes only with hostPID: true)"
        }
        std::io::ErrorKind::NotFound => UNPINNED,
        _ => "",
    };
    format!("cannot open {}: {e}{why}", path.display())
}

/// Why `setns(2)` refused an open file, with the likely fix.
fn setns_failure(path: &Path, errno: nix::errno::Errno) -> String {
    let why = match errno {
        nix::errno::Errno::EPERM => " (entering a namespace needs CAP_SYS_ADMIN)",
        nix::errno::Errno::EINVAL if path.starts_with("/proc") => " (not a network namespace file)",
        nix::errno::Errno::EINVAL => {
            return format!(
                "cannot enter {}: not a network namespace file{UNPINNED}",
                path.display()
            )
        }
        _ => "",
    };
    format!("cannot enter {}: {}{why}", path.display(), errno.desc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn context(id: NetnsId) -> NetnsContext {
        NetnsContext {
            id,
            resolv_conf: "/etc/resolv.conf".into(),
            host: None,
            kept: Kept::default(),
        }
    }

    #[test]
    fn kept_state_is_made_once_per_type_and_shared_by_clones() {
        #[derive(Default)]
        struct Counter(std::sync::atomic::AtomicU32);
        let ctx = context(NetnsId::Pod);
        let clone = ctx.clone();
        ctx.kept
            .get::<Counter>()
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seen = clone.kept.get::<Counter>();
        assert_eq!(seen.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(
            *ctx.kept.get::<String>(),
            "",
            "another type has its own slot"
        );
        let other = context(NetnsId::Pod).kept.get::<Counter>();
        assert_eq!(other.0.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn own_namespace_runs_inline_with_its_context() {
        let executor = Executor::own(context(NetnsId::Pod));
        let id = executor.run(|ctx| async move { ctx.id }).await.unwrap();
        assert_eq!(id, NetnsId::Pod);
        assert!(executor.availability().is_ok());
    }

    #[tokio::test]
    async fn host_work_runs_inline_in_the_host_and_via_the_executor_elsewhere() {
        let host = Executor::own(context(NetnsId::Host));
        let mut pod = context(NetnsId::Pod);
        assert_eq!(
            pod.in_host(|| async { 1 }).await,
            Err(NetnsError::Unavailable(
                "no host namespace is configured".into()
            ))
        );
        pod.host = Some(host);
        assert_eq!(pod.in_host(|| async { 2 }).await, Ok(2));
        assert_eq!(context(NetnsId::Host).in_host(|| async { 3 }).await, Ok(3));
    }

    #[tokio::test]
    async fn a_missing_namespace_file_is_reported_not_fatal() {
        let executor = Executor::enter(context(NetnsId::Host), Path::new("/nonexistent/ns/net"));
        let reason = executor.availability().unwrap_err();
        assert!(
            reason.contains("cannot open /nonexistent/ns/net"),
            "{reason}"
        );
        let err = executor.run(|_| async {}).await.unwrap_err();
        assert_eq!(err, NetnsError::Unavailable(reason));
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_namespace_is_refused() {
        let executor = Executor::enter(context(NetnsId::Host), Path::new("/proc/self/stat"));
        let reason = executor.availability().unwrap_err();
        assert!(reason.contains("cannot enter /proc/self/stat"), "{reason}");
    }

    /// An empty hostPath volume: a plain file (or a directory) where the node's pinned
    /// namespace belongs. The reason says the node has not pinned it.
    #[tokio::test]
    async fn an_unpinned_hostpath_says_how_to_pin_it() {
        let dir = std::env::temp_dir().join(format!("hp-netns-unpinned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("netns");
        std::fs::write(&file, "").unwrap();
        for path in [&file, &dir] {
            let executor = Executor::enter(context(NetnsId::Host), path);
            let reason = executor.availability().unwrap_err();
            assert!(
                reason.contains(&format!("cannot enter {}", path.display())),
                "{reason}"
            );
            assert!(reason.contains("has not pinned"), "{reason}");
        }
        let missing = dir.join("missing");
        let reason = Executor::enter(context(NetnsId::Host), &missing)
            .availability()
            .unwrap_err();
        assert!(reason.contains("has not pinned"), "{reason}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A FIFO would block an ordinary open until a writer came: it must be refused at once.
    #[tokio::test]
    async fn a_fifo_is_refused_not_waited_on() {
        let fifo = std::env::temp_dir().join(format!("hp-netns-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR).unwrap();
        let reason = Executor::enter(context(NetnsId::Host), &fifo)
            .availability()
            .unwrap_err();
        std::fs::remove_file(&fifo).unwrap();
        assert!(reason.contains("not a network namespace file"), "{reason}");
    }

    #[tokio::test]
    async fn a_missing_proc_path_names_hostpid() {
        let executor = Executor::enter(context(NetnsId::Host), Path::new("/proc/999999999/ns/net"));
        let reason = executor.availability().unwrap_err();
        assert!(reason.contains("hostPID"), "{reason}");
    }

    /// Entering our own namespace file exercises the thread path without privileges beyond
    /// CAP_SYS_ADMIN; without it the executor must say so instead of failing.
    #[tokio::test]
    async fn thread_executor_runs_work_and_abandoned_work_is_cancelled() {
        let executor = Executor::enter(context(NetnsId::Host), Path::new("/proc/self/ns/net"));
        if let Err(reason) = executor.availability() {
            assert!(reason.contains("CAP_SYS_ADMIN"), "{reason}");
            return;
        }
        let thread = executor
            .run(|_| async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(thread.as_deref(), Some("netns-host"));

        let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
        let slow = executor.run(move |_| async move {
            let _guard = dropped_tx;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        assert!(tokio::time::timeout(Duration::from_millis(50), slow)
            .await
            .is_err());
        // The sender inside the abandoned work is dropped once the worker notices.
        assert!(dropped_rx.await.is_err());
    }
}
