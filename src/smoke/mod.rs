//! The post-deploy smoke check: find every agent behind one name, ask each for its verdict, and
//! judge the rollout.
//!
//! The name is a headless Service, so it resolves to one address per agent. Each agent is asked
//! for `/healthz?format=json` concurrently, one GET per connection over the shared HTTP/1 client
//! ([`crate::net::http1`]).

use std::fmt::{self, Write};
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::net::http1::{self, HttpError};

mod explain;
mod junit;

pub use explain::explain;
pub use junit::junit;

/// At most this many agents are asked at once: enough for a large cluster in one timeout, few
/// enough not to exhaust file descriptors in a small Job.
const CONCURRENCY: usize = 64;
/// A verdict is a few kilobytes; a larger answer is not an agent's.
const MAX_BODY: usize = 1 << 20;
/// Node names are DNS names (253 characters at most); probe names and results are shorter.
/// A failure's detail or a diagnosis' summary is one sentence; longer ones are cut here too.
const MAX_FIELD_CHARS: usize = 253;
/// A piece of evidence (a route, a traceroute) is a few lines; the report holds no more.
const MAX_TEXT_CHARS: usize = 4096;
const MAX_SENTENCE_CHARS: usize = 1024;

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
/// agents of a newer version still answer, and missing ones default, so older agents do too.
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
    /// `ipv4` or `ipv6` for a check of a probe split by `family: both`; empty otherwise.
    #[serde(default, deserialize_with = "one_line")]
    pub family: String,
    pub ok: bool,
    #[serde(deserialize_with = "one_line")]
    pub result: String,
    #[serde(default, deserialize_with = "sentence")]
    pub detail: String,
    /// What the agent captured when the check turned failing, newest first. An answer whose
    /// evidence this version cannot read still gives its verdict.
    #[serde(default, deserialize_with = "lenient")]
    pub evidence: Vec<Evidence>,
}

impl HealthCheck {
    /// `probe/netns`, or `probe/netns/family` for a check of a split probe.
    pub fn name(&self) -> String {
        match self.family.as_str() {
            "" => format!("{}/{}", self.probe, self.netns),
            family => format!("{}/{}/{family}", self.probe, self.netns),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HealthDiagnosis {
    #[serde(deserialize_with = "one_line")]
    pub code: String,
    /// What the diagnosis rests on (`hybridprobe node-condition` prints it).
    #[serde(default, deserialize_with = "sentence")]
    pub summary: String,
    #[serde(default, deserialize_with = "sentence")]
    pub hint: String,
}

/// One capture of evidence: what the agent saw around a check when it turned failing.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Evidence {
    #[serde(deserialize_with = "one_line")]
    pub taken_at: String,
    pub trigger: Trigger,
    #[serde(deserialize_with = "one_line")]
    pub netns: String,
    pub pieces: Vec<Piece>,
}

/// The round that made the agent capture.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Trigger {
    #[serde(deserialize_with = "one_line")]
    pub result: String,
    #[serde(deserialize_with = "sentence")]
    pub detail: String,
}

/// One piece of evidence, such as the route to the target, and how and when it was obtained.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Piece {
    #[serde(deserialize_with = "one_line")]
    pub what: String,
    #[serde(deserialize_with = "one_line")]
    pub netns: String,
    #[serde(deserialize_with = "one_line")]
    pub source: String,
    #[serde(deserialize_with = "one_line")]
    pub taken_at: String,
    #[serde(deserialize_with = "lines")]
    pub text: Option<String>,
    #[serde(deserialize_with = "some_sentence")]
    pub unavailable: Option<String>,
}

/// A string from an agent's answer, as at most [`MAX_FIELD_CHARS`] characters of one line: a
/// control character in a node name would let whatever answers on an agent's address forge
/// lines of the report.
fn one_line<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    cut_to_line(d, MAX_FIELD_CHARS)
}

/// A failure's detail, a diagnosis' summary or hint: one line, like [`one_line`], but longer.
fn sentence<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    cut_to_line(d, MAX_SENTENCE_CHARS)
}

fn cut_to_line<'de, D: Deserializer<'de>>(d: D, max: usize) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    Ok(text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect())
}

fn some_sentence<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    sentence(d).map(Some)
}

/// Evidence text, which has lines of its own: kept to [`MAX_TEXT_CHARS`], its line breaks kept
/// and every other control character replaced. The report indents each of its lines, so none
/// can pass for a line of the report.
fn lines<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    Ok(Some(
        text.chars()
            .take(MAX_TEXT_CHARS)
            .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
            .collect(),
    ))
}

/// `T` if the value reads as one, else its default: for fields that explain a verdict, which
/// must never cost the verdict itself.
fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
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
        let mut out = self.rows();
        self.verdict_line(&mut out);
        out
    }

    /// Like [`Summary::render`], with what each red agent knows of why between the agents'
    /// lines and the verdict: its diagnoses, failing checks and the evidence it captured.
    pub fn render_explained(&self) -> String {
        let mut out = self.rows();
        for agent in &self.agents {
            let Answer::Health(health) = &agent.answer else {
                continue;
            };
            if health.is_ok() {
                continue;
            }
            let _ = writeln!(out, "\nwhy {} ({}) is red:", health.node, agent.addr);
            out.push_str(&explain(health, true));
        }
        if out.contains("\nwhy ") {
            out.push('\n');
        }
        self.verdict_line(&mut out);
        out
    }

    fn rows(&self) -> String {
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
        out
    }

    fn verdict_line(&self, out: &mut String) {
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

/// `all 6 checks pass`, or the failing checks as `probe/netns result` (`probe/netns/family
/// result` for a split probe's).
fn describe(health: &Health) -> String {
    let failing: Vec<String> = health
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{} {}", c.name(), c.result))
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
            let answer = match ask(addr, timeout).await {
                Ok(health) => Answer::Health(health),
                Err(why) => Answer::Unreachable(why),
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

/// One `/healthz` exchange with the agent at `addr`, connection included, within `timeout`.
async fn ask(addr: SocketAddr, timeout: Duration) -> Result<Health, String> {
    let deadline = Instant::now() + timeout;
    let late = || format!("no answer within {}", humantime::format_duration(timeout));
    let stream = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| late())?
        .map_err(|e| format!("connect: {e}"))?;
    match ask_over(stream, &addr.to_string(), deadline).await {
        Err(AskError::Http(HttpError::Timeout)) => Err(late()),
        answer => answer.map_err(|e| e.to_string()),
    }
}

/// Why an agent's answer holds no verdict.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AskError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A complete response, but not a verdict.
    #[error("{0}")]
    Answer(String),
}

/// Asks the agent at the other end of `stream` for its verdict. It answers 200 or 503, both
/// with a verdict.
pub(crate) async fn ask_over<S>(
    stream: S,
    authority: &str,
    deadline: Instant,
) -> Result<Health, AskError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let get = http1::Get {
        authority,
        path: "/healthz?format=json",
        accept: "application/json",
        user_agent: concat!("hybridprobe-smoke/", env!("CARGO_PKG_VERSION")),
    };
    let response = http1::get(stream, &get, MAX_BODY, deadline).await?;
    read_verdict(response.status, &response.body).map_err(AskError::Answer)
}

/// The verdict in an agent's answer to `/healthz?format=json`, or why there is none.
fn read_verdict(status: u16, body: &[u8]) -> Result<Health, String> {
    if status != 200 && status != 503 {
        return Err(format!("HTTP {status} from /healthz"));
    }
    // serde's messages quote the offending value, which the agent chose: cut to one short line.
    serde_json::from_slice(body)
        .map_err(|e| format!("HTTP {status}, but not a verdict: {:.120}", e.to_string()))
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
    fn a_verdict_comes_with_200_or_503_only() {
        let body = br#"{"status":"fail","node":"n1"}"#;
        assert_eq!(read_verdict(503, body).unwrap().node, "n1");
        assert!(read_verdict(200, body).is_ok());
        assert_eq!(
            read_verdict(404, body),
            Err("HTTP 404 from /healthz".into())
        );
        let why = read_verdict(200, b"<html>").unwrap_err();
        assert!(why.starts_with("HTTP 200, but not a verdict: "), "{why}");
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

    /// Three agents expected: one green, one red, one that does not answer.
    fn green_red_down(green: &Health, red: Health) -> Summary {
        Summary {
            agents: vec![
                report(10, Answer::Health(green.clone())),
                report(11, Answer::Health(red)),
                report(
                    12,
                    Answer::Unreachable("connect: Connection refused".into()),
                ),
            ],
            expect_nodes: 3,
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
                {"probe":"b","netns":"pod","ok":false,"result":"timeout"},
                {"probe":"c","netns":"pod","family":"ipv6","ok":false,"result":"timeout"}],
               "diagnoses":[{"code":"host_netns_unavailable","summary":"s","hint":"h"}]}"#,
        );
        let summary = green_red_down(&green, red);
        assert!(!summary.passed());
        assert_eq!(
            summary.render(),
            "ok    n1  198.18.2.10:9739  all 1 checks pass\n\
             FAIL  n2  198.18.2.11:9739  3 of 4 checks fail: a/host netns_unavailable, b/pod timeout, c/pod/ipv6 timeout; diagnoses: host_netns_unavailable\n\
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

    /// A newline in a node name used to forge a report line (the http_response fuzz target now
    /// checks that one agent is one line).
    #[test]
    fn an_answer_cannot_forge_report_lines() {
        let forged = "{\"status\":\"ok\",\"node\":\"n1\\nsmoke ok: 9 of 9 agents answered\\u001b[2J\",\"checks\":[{\"probe\":\"a\\rb\",\"netns\":\"pod\",\"ok\":true,\"result\":\"success\"}]}";
        let health = read_verdict(200, forged.as_bytes()).unwrap();
        assert_eq!(health.node, "n1?smoke ok: 9 of 9 agents answered?[2J");
        assert_eq!(health.checks[0].probe, "a?b");
        let long = format!("{{\"status\":\"ok\",\"node\":\"{}\"}}", "n".repeat(1000));
        assert_eq!(
            read_verdict(200, long.as_bytes()).unwrap().node.len(),
            MAX_FIELD_CHARS
        );
        // Found by the fuzz target too: serde quotes a wrongly typed value in its message.
        let wrong_type = long.replace("\"node\"", "\"checks\"");
        let why = read_verdict(200, wrong_type.as_bytes()).unwrap_err();
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
    fn explained_reports_say_why_each_red_agent_is_red_before_the_verdict() {
        let red = health(
            r#"{"status":"fail","node":"n2","checks":[{"probe":"b","netns":"pod","ok":false,"result":"timeout","detail":"no answer within 2s"}],"diagnoses":[{"code":"onprem_unreachable","summary":"b fails","hint":"check the tunnel"}]}"#,
        );
        let green = health(r#"{"status":"ok","node":"n1","checks":[]}"#);
        let summary = green_red_down(&green, red);
        let plain = summary.render();
        let explained = summary.render_explained();
        let (rows, rest) = explained.split_at(plain.rfind("smoke FAIL").unwrap());
        assert_eq!(
            rows,
            &plain[..rows.len()],
            "the agents' lines come first, unchanged"
        );
        assert_eq!(
            rest,
            "\nwhy n2 (198.18.2.11:9739) is red:\n\
             \x20 diagnosis onprem_unreachable: b fails\n\
             \x20   hint: check the tunnel\n\
             \x20 check b/pod timeout: no answer within 2s\n\
             \x20   no evidence captured\n\
             \n\
             smoke FAIL: 2 of 3 agents answered (3 expected), 1 green, 1 red, 1 unreachable\n"
        );
        let all_green = Summary {
            agents: vec![report(10, Answer::Health(green))],
            expect_nodes: 1,
        };
        assert_eq!(all_green.render_explained(), all_green.render());
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
