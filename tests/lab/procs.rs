//! Long-running processes inside namespaces: start, logs, stop, and teardown on drop.

use super::{Host, Lab, ProcHandle};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a process gets to exit after SIGTERM before it is SIGKILLed.
const GRACE: Duration = Duration::from_secs(3);

pub(super) struct Proc {
    label: String,
    child: Child,
    status: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Lab {
    /// Starts `program args` in the namespace with extra `envs`, stdout and stderr going to
    /// files in [`Lab::tmpdir`]. It is stopped when the lab drops.
    pub fn spawn(
        &self,
        h: Host,
        program: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> ProcHandle {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        let n = procs.len();
        let base = program.rsplit('/').next().unwrap_or(program);
        let stdout = self.tmp.join(format!("{n}-{base}.stdout"));
        let stderr = self.tmp.join(format!("{n}-{base}.stderr"));
        let create =
            |p: &PathBuf| File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        // `ip netns exec` execs the program, so the child's pid is the program's pid.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns_name(h), program])
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(create(&stdout))
            .stderr(create(&stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} in {h:?}: {e}"));
        procs.push(Proc {
            label: format!("{program} {} in {h:?} (pid {})", args.join(" "), child.id()),
            child,
            status: None,
            stdout,
            stderr,
        });
        ProcHandle(n)
    }

    pub fn pid(&self, p: ProcHandle) -> u32 {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())[p.0]
            .child
            .id()
    }

    /// Exit status if the process has already exited, without waiting.
    pub fn try_status(&self, p: ProcHandle) -> Option<ExitStatus> {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        let proc = &mut procs[p.0];
        if proc.status.is_none() {
            proc.status = proc.child.try_wait().ok().flatten();
        }
        proc.status
    }

    /// SIGTERM, then SIGKILL after a grace period; returns the exit status.
    pub fn stop(&self, p: ProcHandle) -> ExitStatus {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        terminate(std::slice::from_mut(&mut procs[p.0]));
        procs[p.0].status.expect("terminate reaps the process")
    }

    /// The process's stdout and stderr so far, labelled.
    pub fn logs(&self, p: ProcHandle) -> String {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        render(&procs[p.0])
    }

    /// Logs of every process spawned so far; empty if there were none.
    pub fn all_logs(&self) -> String {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs.iter().map(render).collect()
    }

    pub(super) fn stop_all(&self) {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        terminate(&mut procs);
    }
}

/// Signals all at once and waits for them together, so teardown costs one grace period at most.
fn terminate(procs: &mut [Proc]) {
    let mut running: Vec<&mut Proc> = procs.iter_mut().collect();
    running.retain_mut(|p| reap(p));
    for p in &running {
        // The child is unreaped, so its pid cannot have been reused.
        let _ = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status();
    }
    let end = Instant::now() + GRACE;
    while !running.is_empty() && Instant::now() < end {
        running.retain_mut(|p| reap(p));
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in running {
        let _ = p.child.kill();
        p.status = p.child.wait().ok();
    }
}

/// Records the exit status if the process is done; true while it still runs.
fn reap(p: &mut Proc) -> bool {
    if p.status.is_none() {
        p.status = p.child.try_wait().ok().flatten();
    }
    p.status.is_none()
}

fn render(p: &Proc) -> String {
    let read = |f: &PathBuf| std::fs::read_to_string(f).unwrap_or_else(|e| format!("<{e}>"));
    let status = p.status.map_or("running".to_string(), |s| s.to_string());
    format!(
        "==== {} [{status}]\n---- stdout\n{}---- stderr\n{}\n",
        p.label,
        read(&p.stdout),
        read(&p.stderr)
    )
}
