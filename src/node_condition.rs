//! `hybridprobe node-condition`: node-problem-detector's custom plugin, answered from the agent
//! on the same node.
//!
//! NPD runs a plugin on an interval and reads its exit code (0 OK, 1 problem, anything else
//! unknown) and the first [`MAX_MESSAGE`] bytes of its output, which become the node
//! condition's message. This asks the agent's `/healthz?format=json` (through the smoke check's
//! client, [`crate::smoke::ask_over`]) and condenses the verdict into that contract: the first
//! diagnosis code and its summary, or the first failing check when nothing is diagnosed.
//! Whatever stops it from getting a verdict within its timeout is "unknown", never "OK".

use std::fmt::{self, Write};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::net::http1::HttpError;
use crate::smoke::{self, AgentsTarget, AskError, Health};

/// NPD's default `max_output_length`: it cuts the message there, in bytes.
pub const MAX_MESSAGE: usize = 80;
/// The agent's port, when the URL names none.
const DEFAULT_PORT: u16 = 80;

/// `http://HOST:PORT`, where the agent on this node answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUrl(pub AgentsTarget);

impl FromStr for AgentUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<AgentUrl, String> {
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| format!("{text:?} is not an http:// URL"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{text:?}: give only http://HOST:PORT (the path is /healthz)"
            ));
        }
        let has_port = match authority.rfind(']') {
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        let with_port = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:{DEFAULT_PORT}")
        };
        with_port
            .parse()
            .map(AgentUrl)
            .map_err(|_| format!("{text:?} is not http://HOST:PORT"))
    }
}

impl fmt::Display for AgentUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.0)
    }
}

/// NPD's three answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Problem,
    Unknown,
}

impl Status {
    /// The exit code NPD reads.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Problem => 1,
            Status::Unknown => 2,
        }
    }
}

/// What to tell NPD: a status and one line of at most [`MAX_MESSAGE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub status: Status,
    pub message: String,
}

impl Condition {
    fn new(status: Status, message: &str) -> Condition {
        Condition {
            status,
            message: fit(message),
        }
    }
}

/// Asks the agent at `url` for its verdict, connection included, within `timeout`.
pub async fn ask(url: &AgentUrl, timeout: Duration) -> Condition {
    let deadline = Instant::now() + timeout;
    match fetch(url, deadline).await {
        Ok(health) => judge(&health),
        Err(NoVerdict::Late) => Condition::new(
            Status::Unknown,
            &format!(
                "unknown: {url}: no answer within {}",
                humantime::format_duration(timeout)
            ),
        ),
        Err(NoVerdict::Failed(why)) => {
            Condition::new(Status::Unknown, &format!("unknown: {url}: {why}"))
        }
    }
}

/// Why there is no verdict to judge.
enum NoVerdict {
    /// The deadline passed first, wherever in the exchange.
    Late,
    /// Anything else, for people.
    Failed(String),
}

async fn fetch(url: &AgentUrl, deadline: Instant) -> Result<Health, NoVerdict> {
    let target = &url.0;
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    let addrs: Vec<SocketAddr> = match timeout_at(deadline, lookup).await {
        Err(_) => return Err(NoVerdict::Late),
        Ok(Err(e)) => {
            let why = format!("cannot resolve {}: {e}", target.host);
            return Err(NoVerdict::Failed(why));
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    let mut why = format!("{} resolves to no address", target.host);
    // A name may have several addresses (v4 and v6): the first that connects is asked.
    for addr in addrs {
        let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(NoVerdict::Late),
            Ok(Err(e)) => {
                why = format!("connect: {e}");
                continue;
            }
            Ok(Ok(stream)) => stream,
        };
        return match smoke::ask_over(stream, &target.to_string(), deadline).await {
            Ok(health) => Ok(health),
            Err(AskError::Http(HttpError::Timeout)) => Err(NoVerdict::Late),
            Err(e) => Err(NoVerdict::Failed(e.to_string())),
        };
    }
    Err(NoVerdict::Failed(why))
}

/// The verdict as NPD's answer: green is OK, red a problem named by its first diagnosis (the
/// verdict lists them by precedence) or else its first failing check, and a starting agent
/// unknown.
pub fn judge(health: &Health) -> Condition {
    let failing: Vec<_> = health.checks.iter().filter(|c| !c.ok).collect();
    match health.status.as_str() {
        "ok" => Condition::new(
            Status::Ok,
            &format!("ok: all {} checks pass", health.checks.len()),
        ),
        "starting" => Condition::new(
            Status::Unknown,
            "unknown: the agent has not finished its first round",
        ),
        _ => {
            let mut message = match (health.diagnoses.first(), failing.first()) {
                (Some(d), _) if d.summary.is_empty() => d.code.clone(),
                (Some(d), _) => format!("{}: {}", d.code, d.summary),
                (None, Some(c)) => format!("{} {}", c.name(), c.result),
                (None, None) => format!("status {}", health.status),
            };
            if health.diagnoses.is_empty() && failing.len() > 1 {
                let _ = write!(
                    message,
                    " ({} of {} checks fail)",
                    failing.len(),
                    health.checks.len()
                );
            }
            Condition::new(Status::Problem, &message)
        }
    }
}

/// `text` as one line of at most [`MAX_MESSAGE`] bytes, cut on a character boundary with `...`
/// when longer: NPD cuts at a byte count, which could split a character.
fn fit(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() <= MAX_MESSAGE {
        return line;
    }
    let mut end = MAX_MESSAGE - 3;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", line[..end].trim_end())
}

/// Why the binary could not be installed for NPD.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot find this binary: {0}")]
    CurrentExe(#[source] io::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Copies this binary to `to`, executable, through a temporary file beside it and a rename, so
/// NPD never runs a half-written plugin. For the init container in NPD's pod: the image has no
/// shell and no `cp`.
pub fn install(to: &Path) -> Result<(), InstallError> {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().map_err(InstallError::CurrentExe)?;
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::copy(&exe, &partial).map_err(|e| write_error(&partial, e))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| write_error(&partial, e))?;
    std::fs::rename(&partial, to).map_err(|e| write_error(to, e))
}

fn write_error(path: &Path, source: io::Error) -> InstallError {
    InstallError::Write {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(json: &str) -> Health {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn urls_name_a_host_and_port_only() {
        let url: AgentUrl = "http://hybridprobe-node-local.hybridprobe.svc:9739/"
            .parse()
            .unwrap();
        assert_eq!(url.0.host, "hybridprobe-node-local.hybridprobe.svc");
        assert_eq!(url.0.port, 9739);
        assert_eq!(
            url.to_string(),
            "http://hybridprobe-node-local.hybridprobe.svc:9739"
        );
        let v6: AgentUrl = "http://[2001:2::1]:9739".parse().unwrap();
        assert_eq!((v6.0.host.as_str(), v6.0.port), ("2001:2::1", 9739));
        let no_port: AgentUrl = "http://198.18.0.1".parse().unwrap();
        assert_eq!(no_port.0.port, 80);
        for bad in [
            "198.18.0.1:9739",
            "https://198.18.0.1:9739",
            "http://198.18.0.1:9739/healthz",
            "http://user@198.18.0.1:9739",
            "http://:9739",
            "http://198.18.0.1:99999",
        ] {
            assert!(bad.parse::<AgentUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_red_verdict_names_its_first_diagnosis() {
        let red = health(
            r#"{"status":"fail","node":"n1","checks":[
                {"probe":"dc1-ldap","netns":"pod","ok":false,"result":"timeout"}],
               "diagnoses":[
                {"code":"onprem_unreachable","summary":"no on-prem target answers from pod or host (4 checks)","hint":"h"},
                {"code":"onprem_dns_down","summary":"s","hint":"h"}]}"#,
        );
        let condition = judge(&red);
        assert_eq!(condition.status, Status::Problem);
        assert_eq!(
            condition.message,
            "onprem_unreachable: no on-prem target answers from pod or host (4 checks)"
        );
    }

    #[test]
    fn without_a_diagnosis_the_first_failing_check_is_named() {
        let red = health(
            r#"{"status":"fail","node":"n1","checks":[
                {"probe":"a","netns":"pod","ok":true,"result":"success"},
                {"probe":"b","netns":"host","ok":false,"result":"refused"},
                {"probe":"c","netns":"pod","ok":false,"result":"timeout"}]}"#,
        );
        assert_eq!(
            judge(&red),
            Condition {
                status: Status::Problem,
                message: "b/host refused (2 of 3 checks fail)".into()
            }
        );
    }

    #[test]
    fn green_is_ok_and_starting_is_unknown() {
        let green = health(
            r#"{"status":"ok","node":"n1","checks":[{"probe":"a","netns":"pod","ok":true,"result":"success"}]}"#,
        );
        assert_eq!(judge(&green).status, Status::Ok);
        assert_eq!(judge(&green).message, "ok: all 1 checks pass");
        let starting = health(r#"{"status":"starting","node":"n1"}"#);
        assert_eq!(judge(&starting).status, Status::Unknown);
        assert_eq!(
            [Status::Ok, Status::Problem, Status::Unknown].map(Status::exit_code),
            [0, 1, 2]
        );
    }

    #[test]
    fn messages_fit_npds_limit_on_a_character_boundary() {
        let long = format!("route_mismatch: {}", "é".repeat(100));
        let message = fit(&long);
        assert!(message.len() <= MAX_MESSAGE, "{}", message.len());
        assert!(message.ends_with("..."), "{message}");
        assert!(message.starts_with("route_mismatch: é"), "{message}");
        assert_eq!(fit("a\nb\tc"), "a b c");
        let exact = "x".repeat(MAX_MESSAGE);
        assert_eq!(fit(&exact), exact);
    }

    #[test]
    fn install_copies_an_executable() {
        let dir = std::env::temp_dir().join(format!("hybridprobe-install-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let to = dir.join("hybridprobe");
        install(&to).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&to).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            meta.len(),
            std::fs::metadata(std::env::current_exe().unwrap())
                .unwrap()
                .len()
        );
        let missing = dir.join("no-such-dir").join("hybridprobe");
        let why = install(&missing).unwrap_err().to_string();
        assert!(why.starts_with("cannot write "), "{why}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
