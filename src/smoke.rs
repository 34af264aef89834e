//! The post-deploy smoke check: find every agent behind one name, ask each for its verdict, and
//! judge the rollout.
//!
//! The name is a headless Service, so it resolves to one address per agent. Each agent is asked
//! for `/healthz?format=json` concurrently, over a minimal HTTP/1.0 exchange: the agent answers
//! and closes, so the body needs no chunked decoding and no client crate.

use std::fmt::{self, Write};
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// At most this many agents are asked at once: enough for a large cluster in one timeout, few
/// enough not to exhaust file descriptors in a small Job.
const CONCURRENCY: usize = 64;
/// A verdict is a few kilobytes; a larger answer is not an agent's.
const MAX_RESPONSE: u64 = 1 << 20;
/// Node names are DNS names (253 characters at most); probe names and results are shorter.
const MAX_FIELD_CHARS: usize = 253;

/// `NAME:PORT`, as given to `--agents`: a DNS name (or an address) and the agents' HTTP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentsTarget {
    pub host: String,
    pub port: u16,
}

impl FromStr for AgentsTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<AgentsTarget, String> {
        let invalid = || format!("{text:?} is not NAME:PORT");
        let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        let valid = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => {
                !host.is_empty()
                    && !host.contains(|c: char| c == ':' || c == '/' || c.is_whitespace())
            }
        };
        if !valid {
            return Err(invalid());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(AgentsTarget {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for AgentsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why the smoke check could not even start asking agents.
#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    #[error("cannot resolve {target}: {source}")]
    Resolve {
        target: AgentsTarget,
        source: std::io::Error,
    },
    #[error("{target} resolves to no address")]
    NoAddress { target: AgentsTarget },
}

/// The part of an agent's `/healthz` JSON the smoke check reads; other fields are ignored, so
/// agents of a newer version still answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Health {
    #[serde(deserialize_with = "one_line")]
    pub status: String,
    #[serde(deserialize_with = "one_line")]
    pub node: String,
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
    #[serde(default)]
    pub diagnoses: Vec<HealthDiagnosis>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HealthCheck {
    #[serde(deserialize_with = "one_line")]
    pub probe: String,
    #[serde(deserialize_with = "one_line")]
    pub netns: String,
    pub ok: bool,
    #[serde(deserialize_with = "one_line")]
    pub result: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HealthDiagnosis {
    #[serde(deserialize_with = "one_line")]
    pub code: String,
}

/// A string from an agent's answer, as at most [`MAX_FIELD_CHARS`] characters of one line: a
/// control character in a node name would let whatever answers on an agent's address forge
/// lines of the report.
fn one_line<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    Ok(text
        .chars()
        .take(MAX_FIELD_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect())
}

impl Health {
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// What one address answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Health(Health),
    /// No verdict: why, for people.
    Unreachable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentReport {
    pub addr: SocketAddr,
    pub answer: Answer,
}

/// Every agent's answer, and how many were expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Sorted by address, so repeated runs print in the same order.
    pub agents: Vec<AgentReport>,
    pub expect_nodes: usize,
}

impl Summary {
    fn count(&self, f: impl Fn(&Answer) -> bool) -> usize {
        self.agents.iter().filter(|a| f(&a.answer)).count()
    }

    pub fn answered(&self) -> usize {
        self.count(|a| matches!(a, Answer::Health(_)))
    }

    pub fn green(&self) -> usize {
        self.count(|a| matches!(a, Answer::Health(h) if h.is_ok()))
    }

    /// True when every agent answered green and at least `expect_nodes` answered.
    pub fn passed(&self) -> bool {
        self.green() == self.agents.len() && self.answered() >= self.expect_nodes
    }

    /// One line per agent, then a verdict line.
    pub fn render(&self) -> String {
        let rows: Vec<[String; 4]> = self.agents.iter().map(row).collect();
        let mut widths = [0usize; 3];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let mut out = String::new();
        for [mark, node, addr, detail] in &rows {
            let [w0, w1, w2] = widths;
            let _ = writeln!(out, "{mark:<w0$}  {node:<w1$}  {addr:<w2$}  {detail}");
        }
        let red = self.answered() - self.green();
        let unreachable = self.agents.len() - self.answered();
        let verdict = if self.passed() { "ok" } else { "FAIL" };
        let _ = write!(
            out,
            "smoke {verdict}: {} of {} agents answered ({} expected), {} green, {red} red, \
             {unreachable} unreachable",
            self.answered(),
            self.agents.len(),
            self.expect_nodes,
            self.green(),
        );
        out.push('\n');
        out
    }
}

fn row(agent: &AgentReport) -> [String; 4] {
    let addr = agent.addr.to_string();
    match &agent.answer {
        Answer::Unreachable(why) => ["DOWN".into(), "-".into(), addr, why.clone()],
        Answer::Health(health) => {
            let mark = if health.is_ok() { "ok" } else { "FAIL" };
            [mark.into(), health.node.clone(), addr, describe(health)]
        }
    }
}

/// `all 6 checks pass`, or the failing checks as `probe/netns result`.
fn describe(health: &Health) -> String {
    let failing: Vec<String> = health
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}/{} {}", c.probe, c.netns, c.result))
        .collect();
    let mut text = match health.status.as_str() {
        "ok" => format!("all {} checks pass", health.checks.len()),
        "starting" => "starting: first round not finished".to_owned(),
        _ if failing.is_empty() => format!("status {}", health.status),
        _ => format!(
            "{} of {} checks fail: {}",
            failing.len(),
            health.checks.len(),
            failing.join(", ")
        ),
    };
    if !health.diagnoses.is_empty() {
        let codes: Vec<&str> = health.diagnoses.iter().map(|d| d.code.as_str()).collect();
        let _ = write!(text, "; diagnoses: {}", codes.join(", "));
    }
    text
}

/// Resolves `target` to every agent and asks each for its verdict, each within `timeout`.
pub async fn run(
    target: &AgentsTarget,
    expect_nodes: usize,
    timeout: Duration,
) -> Result<Summary, SmokeError> {
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|source| SmokeError::Resolve {
            target: target.clone(),
            source,
        })?
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(SmokeError::NoAddress {
            target: target.clone(),
        });
    }
    let mut agents: Vec<AgentReport> = futures_util::stream::iter(addrs)
        .map(|addr| async move {
            let answer = match tokio::time::timeout(timeout, ask(addr)).await {
                Ok(Ok(health)) => Answer::Health(health),
                Ok(Err(why)) => Answer::Unreachable(why),
                Err(_) => Answer::Unreachable(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                )),
            };
            AgentReport { addr, answer }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    agents.sort_by_key(|a| a.addr);
    Ok(Summary {
        agents,
        expect_nodes,
    })
}

/// One `/healthz` exchange. The agent answers 200 or 503, both with a verdict.
async fn ask(addr: SocketAddr) -> Result<Health, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET /healthz?format=json HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\
         User-Agent: hybridprobe-smoke/{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE + 1)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("read: {e}"))?;
    parse_answer(&raw)
}

/// The verdict in an agent's whole answer to `/healthz?format=json`, or why there is none.
pub(crate) fn parse_answer(raw: &[u8]) -> Result<Health, String> {
    if raw.len() as u64 > MAX_RESPONSE {
        return Err(format!("answer larger than {MAX_RESPONSE} bytes"));
    }
    let (code, body) = split_response(raw)?;
    if code != 200 && code != 503 {
        return Err(format!("HTTP {code} from /healthz"));
    }
    // serde's messages quote the offending value, which the agent chose: cut to one short line.
    serde_json::from_slice(body)
        .map_err(|e| format!("HTTP {code}, but not a verdict: {:.120}", e.to_string()))
}

/// The status code and body of a complete HTTP/1.x response.
fn split_response(raw: &[u8]) -> Result<(u16, &[u8]), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP response")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "HTTP header is not UTF-8")?;
    let status = head.lines().next().unwrap_or_default();
    let code = status
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP response: {:.80}", format!("{status:?}")))?;
    Ok((code, &raw[end + 4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_target_parses_names_and_addresses() {
        let t: AgentsTarget = "hybridprobe.hybridprobe.svc:9739".parse().unwrap();
        assert_eq!(t.host, "hybridprobe.hybridprobe.svc");
        assert_eq!(t.port, 9739);
        assert_eq!(t.to_string(), "hybridprobe.hybridprobe.svc:9739");
        let v6: AgentsTarget = "[fd00::1]:9739".parse().unwrap();
        assert_eq!(v6.host, "fd00::1");
        assert_eq!(v6.to_string(), "[fd00::1]:9739");
        for bad in [
            "hybridprobe",
            "hybridprobe:",
            ":9739",
            "x:99999",
            "a b:1",
            "fd00::1:9739",
        ] {
            assert_eq!(
                bad.parse::<AgentsTarget>(),
                Err(format!("{bad:?} is not NAME:PORT")),
                "{bad}"
            );
        }
    }

    #[test]
    fn split_response_finds_the_code_and_body() {
        let raw =
            b"HTTP/1.0 503 Service Unavailable\r\ncontent-type: application/json\r\n\r\n{\"a\":1}";
        assert_eq!(split_response(raw), Ok((503, &b"{\"a\":1}"[..])));
        assert_eq!(
            split_response(b"HTTP/1.1 200 OK\r\n\r\n"),
            Ok((200, &b""[..]))
        );
        assert_eq!(
            split_response(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err("not an HTTP response: \"SSH-2.0-OpenSSH\"".into())
        );
        assert_eq!(
            split_response(b"HTTP/1.1 200 OK\r\n"),
            Err("incomplete HTTP response".into())
        );
        let long = format!("{}\r\n\r\n", "x".repeat(10_000));
        assert_eq!(
            split_response(long.as_bytes()),
            Err(format!("not an HTTP response: \"{}", "x".repeat(79)))
        );
    }

    fn health(json: &str) -> Health {
        serde_json::from_str(json).unwrap()
    }

    fn report(last_octet: u8, answer: Answer) -> AgentReport {
        AgentReport {
            addr: SocketAddr::from(([198, 18, 2, last_octet], 9739)),
            answer,
        }
    }

    #[test]
    fn summary_names_failing_checks_and_judges_the_rollout() {
        let green = health(
            r#"{"status":"ok","node":"n1","checks":[{"probe":"a","netns":"pod","ok":true,"result":"success","extra":1}],"diagnoses":[]}"#,
        );
        let red = health(
            r#"{"status":"fail","node":"n2","checks":[
                {"probe":"a","netns":"pod","ok":true,"result":"success"},
                {"probe":"a","netns":"host","ok":false,"result":"netns_unavailable"},
                {"probe":"b","netns":"pod","ok":false,"result":"timeout"}],
               "diagnoses":[{"code":"host_netns_unavailable","summary":"s","hint":"h"}]}"#,
        );
        let summary = Summary {
            agents: vec![
                report(10, Answer::Health(green.clone())),
                report(11, Answer::Health(red)),
                report(
                    12,
                    Answer::Unreachable("connect: Connection refused".into()),
                ),
            ],
            expect_nodes: 3,
        };
        assert!(!summary.passed());
        assert_eq!(
            summary.render(),
            "ok    n1  198.18.2.10:9739  all 1 checks pass\n\
             FAIL  n2  198.18.2.11:9739  2 of 3 checks fail: a/host netns_unavailable, b/pod timeout; diagnoses: host_netns_unavailable\n\
             DOWN  -   198.18.2.12:9739  connect: Connection refused\n\
             smoke FAIL: 2 of 3 agents answered (3 expected), 1 green, 1 red, 1 unreachable\n"
        );

        let all_green = Summary {
            agents: vec![report(10, Answer::Health(green))],
            expect_nodes: 1,
        };
        assert!(all_green.passed());
        let too_few = Summary {
            expect_nodes: 2,
            ..all_green
        };
        assert!(!too_few.passed(), "fewer agents answered than expected");
    }

    /// A newline in a node name used to forge a report line (the smoke_answer fuzz target now
    /// checks that one agent is one line).
    #[test]
    fn an_answer_cannot_forge_report_lines() {
        let forged = "HTTP/1.0 200 OK\r\n\r\n{\"status\":\"ok\",\"node\":\"n1\\nsmoke ok: 9 of 9 agents answered\\u001b[2J\",\"checks\":[{\"probe\":\"a\\rb\",\"netns\":\"pod\",\"ok\":true,\"result\":\"success\"}]}";
        let health = parse_answer(forged.as_bytes()).unwrap();
        assert_eq!(health.node, "n1?smoke ok: 9 of 9 agents answered?[2J");
        assert_eq!(health.checks[0].probe, "a?b");
        let long = format!(
            "HTTP/1.0 200 OK\r\n\r\n{{\"status\":\"ok\",\"node\":\"{}\"}}",
            "n".repeat(1000)
        );
        assert_eq!(
            parse_answer(long.as_bytes()).unwrap().node.len(),
            MAX_FIELD_CHARS
        );
        // Found by the fuzz target too: serde quotes a wrongly typed value in its message.
        let wrong_type = long.replace("\"node\"", "\"checks\"");
        let why = parse_answer(wrong_type.as_bytes()).unwrap_err();
        assert!(
            why.starts_with("HTTP 200, but not a verdict: invalid type: string"),
            "{why}"
        );
        assert_eq!(
            why.chars().count(),
            "HTTP 200, but not a verdict: ".len() + 120
        );
        let summary = Summary {
            agents: vec![report(10, Answer::Health(health))],
            expect_nodes: 1,
        };
        assert_eq!(summary.render().lines().count(), 2);
    }

    #[test]
    fn a_starting_agent_is_not_green() {
        let starting = health(r#"{"status":"starting","node":"n1","checks":[]}"#);
        assert_eq!(describe(&starting), "starting: first round not finished");
        let summary = Summary {
            agents: vec![report(10, Answer::Health(starting))],
            expect_nodes: 0,
        };
        assert!(!summary.passed());
    }
}
