//! Evidence captured when a check turns failing: what an engineer would type by hand (`ip route
//! get`, `traceroute`, `conntrack -L`, `cat /etc/resolv.conf`), taken from the namespace where
//! the check failed and from the other one for comparison, bounded in size and time, and the
//! store that keeps the last few captures per check in memory.
//!
//! The pieces live in their own files: the route and the cached path MTU (`route.rs`), the short
//! traceroute (`trace.rs`), the flow's conntrack entry (`conntrack.rs`), the resolv.conf and
//! what the name resolved to (`resolver.rs`), the check's recent rounds (`rounds.rs`).

mod conntrack;
mod resolver;
mod rounds;
mod route;
mod trace;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::CounterVec;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{EvidenceConfig, ProbeConfig};
use crate::netns::{Executor, NetnsContext, NetnsId};
use crate::probe::dns::{DnsSpec, QueryType, Server};
use crate::probe::resolver::{Family, Resolver};
use crate::probe::target::{Host, HostPort};
use crate::probe::{CheckLabels, Families, ProbeKind};
use crate::results::{CheckKey, CheckState};

/// Captures kept per check, newest first; an older one is dropped for a new one.
pub const KEPT: usize = 3;
/// The most text one piece holds; longer text is cut and says so.
pub const MAX_PIECE: usize = 4 * 1024;
/// The most text one capture holds over all its pieces: three captures of every check stay
/// within 48 KiB per check.
pub const MAX_CAPTURE: usize = 16 * 1024;

/// One capture: the check's failure that triggered it and the pieces taken for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capture {
    /// When the capture started (RFC 3339).
    pub taken_at: String,
    pub trigger: Trigger,
    /// Where the check failed.
    pub netns: NetnsId,
    /// From the failing namespace first, then the other, then the check's recent rounds.
    pub pieces: Vec<Piece>,
}

/// The round a capture was taken for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trigger {
    /// `success` or the failure reason, as the check's `result`.
    pub result: String,
    pub detail: String,
}

/// What a piece shows: a closed set, since it names the piece in the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    Route,
    Traceroute,
    Conntrack,
    ResolvConf,
    Resolved,
    PathMtu,
    Rounds,
}

impl What {
    pub fn as_str(self) -> &'static str {
        match self {
            What::Route => "route",
            What::Traceroute => "traceroute",
            What::Conntrack => "conntrack",
            What::ResolvConf => "resolv_conf",
            What::Resolved => "resolved",
            What::PathMtu => "path_mtu",
            What::Rounds => "rounds",
        }
    }
}

/// One thing looked at, in one namespace: how, when, and what it showed or why it could not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Piece {
    pub what: What,
    pub netns: NetnsId,
    /// How it was obtained: `netlink RTM_GETROUTE`, `UDP traceroute, 5 hops`.
    pub source: String,
    /// RFC 3339.
    pub taken_at: String,
    #[serde(flatten)]
    pub body: Body,
}

/// A piece's content: readable text (bounded), or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    Text(String),
    Unavailable(String),
}

impl Piece {
    pub fn text(what: What, netns: NetnsId, source: impl Into<String>, text: String) -> Piece {
        Piece::new(what, netns, source, Body::Text(bounded(text, MAX_PIECE)))
    }

    pub fn unavailable(
        what: What,
        netns: NetnsId,
        source: impl Into<String>,
        why: impl Into<String>,
    ) -> Piece {
        let why = bounded(why.into(), MAX_PIECE);
        Piece::new(what, netns, source, Body::Unavailable(why))
    }

    fn new(what: What, netns: NetnsId, source: impl Into<String>, body: Body) -> Piece {
        Piece {
            what,
            netns,
            source: source.into(),
            taken_at: rfc3339(SystemTime::now()),
            body,
        }
    }

    fn len(&self) -> usize {
        match &self.body {
            Body::Text(text) | Body::Unavailable(text) => text.len(),
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, saying that it was.
fn bounded(mut text: String, max: usize) -> String {
    const CUT: &str = "\n[truncated]";
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(CUT.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(CUT);
    text
}

pub(crate) fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// How a capture that was asked for ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureOutcome {
    /// Taken and kept.
    Captured,
    /// Not taken: the check was captured within `min_interval`, or `max_concurrent` captures
    /// were running.
    RateLimited,
    /// Taken, but no piece could be obtained (every namespace unavailable, no privilege).
    Failed,
}

impl CaptureOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureOutcome::Captured => "captured",
            CaptureOutcome::RateLimited => "rate_limited",
            CaptureOutcome::Failed => "failed",
        }
    }
}

impl Capture {
    pub fn outcome(&self) -> CaptureOutcome {
        let learned = self
            .pieces
            .iter()
            .any(|p| p.what != What::Rounds && matches!(p.body, Body::Text(_)));
        if learned {
            CaptureOutcome::Captured
        } else {
            CaptureOutcome::Failed
        }
    }
}

/// The `hybridprobe_evidence_captures_total` family, registered with the other families.
pub fn register(families: &mut dyn Families) -> CounterVec {
    families.counters(
        "hybridprobe_evidence_captures_total",
        "Evidence captures asked for when a check turned failing, by outcome: captured, \
         rate_limited (within evidence.min_interval or at evidence.max_concurrent), failed (no \
         piece could be obtained).",
        &CheckLabels::names(&["outcome"]),
    )
}

/// What a capture is about: a check, and what it saw up to now.
#[derive(Debug, Clone)]
pub struct Subject {
    pub probe: Arc<ProbeConfig>,
    pub netns: NetnsId,
    /// The family the check resolves its target to: its own for a check of a split probe
    /// (`family: both`), else the probe's `family:`.
    pub family: Family,
    pub trigger: Trigger,
    /// Taken when the subject is made, from the results the check has.
    pub rounds: Piece,
}

impl Subject {
    /// The subject for a check as its results stand now: its latest round is the trigger.
    pub fn of(key: &CheckKey, state: &CheckState) -> Subject {
        let trigger = match &state.last {
            Some(last) => Trigger {
                result: last.result.to_owned(),
                detail: last.detail.clone(),
            },
            None => Trigger {
                result: "pending".into(),
                detail: String::new(),
            },
        };
        Subject {
            probe: state.probe.clone(),
            netns: key.netns,
            family: key.family.or(state.probe.kind.family()).unwrap_or_default(),
            trigger,
            rounds: rounds::piece(state, key.netns),
        }
    }
}

/// Where a check's traffic goes, as far as the evidence needs it.
#[derive(Debug, Clone)]
struct Aim {
    /// Why there is none, for kinds that reach nothing (a file read).
    host: Result<Host, String>,
    /// The port the check connects to, for the conntrack flow.
    port: Option<u16>,
    /// A name whose resolution is evidence, and whom to ask.
    name: Option<(String, Resolver)>,
    /// The addresses the check asks for, which the name resolves to.
    family: Family,
}

impl Aim {
    fn of(probe: &ProbeConfig, family: Family) -> Aim {
        let kind = probe.kind.name();
        if let ProbeKind::Route(spec) = &probe.kind {
            return Aim {
                host: Ok(Host::Ip(spec.destination.network())),
                port: None,
                name: None,
                family,
            };
        }
        let dns = match &probe.kind {
            ProbeKind::Dns(spec) => Some(spec),
            _ => None,
        };
        // A dns check that asks only the resolv.conf's servers still has a query to resolve.
        let target = probe.kind.targets(None).into_iter().next();
        let Some(target) = target else {
            return Aim {
                host: Err(format!("kind {kind} has no IP target")),
                port: None,
                name: dns.and_then(address_query),
                family: dns.map_or(family, query_family),
            };
        };
        // A DNS server is written without its port when it is 53.
        let port = HostPort::parse(&target.text)
            .map(|hp| hp.port)
            .or(dns.map(|_| 53));
        let name = match (dns, &target.host) {
            (Some(spec), _) => address_query(spec),
            (None, Host::Name(name)) => Some((name.clone(), Resolver::System)),
            (None, _) => None,
        };
        Aim {
            host: Ok(target.host),
            port,
            name,
            family: dns.map_or(family, query_family),
        }
    }
}

/// The family a dns check's A or AAAA query asks for.
fn query_family(spec: &DnsSpec) -> Family {
    match spec.record_type {
        QueryType::A => Family::Ipv4,
        QueryType::AAAA => Family::Ipv6,
        _ => Family::Any,
    }
}

/// A dns check's query, when it asks for addresses, and the servers it asks.
fn address_query(spec: &DnsSpec) -> Option<(String, Resolver)> {
    if !matches!(spec.record_type, QueryType::A | QueryType::AAAA) {
        return None;
    }
    let servers: Vec<SocketAddr> = spec
        .servers
        .iter()
        .filter_map(|server| match server {
            Server::Addr(addr) => Some(*addr),
            Server::System => None,
        })
        .collect();
    let resolver = match servers.is_empty() {
        true => Resolver::System,
        false => Resolver::Servers(servers),
    };
    Some((spec.query.text.clone(), resolver))
}

/// Runs a capture for `subject` now, in every namespace of `executors` (the failing one first),
/// within `settings.timeout`. Never fails: what could not be obtained says why.
pub async fn capture(
    subject: Subject,
    executors: &[Executor],
    settings: &EvidenceConfig,
) -> Capture {
    let taken_at = rfc3339(SystemTime::now());
    let aim = Aim::of(&subject.probe, subject.family);
    let mut ordered: Vec<&Executor> = executors.iter().collect();
    ordered.sort_by_key(|e| e.id() != subject.netns);
    let work = ordered.iter().map(|executor| {
        let failed_here = executor.id() == subject.netns;
        in_namespace(executor, aim.clone(), settings.clone(), failed_here)
    });
    let mut pieces: Vec<Piece> = futures_util::future::join_all(work)
        .await
        .into_iter()
        .flatten()
        .collect();
    pieces.push(subject.rounds);
    bound_total(&mut pieces);
    Capture {
        taken_at,
        trigger: subject.trigger,
        netns: subject.netns,
        pieces,
    }
}

/// The pieces of one namespace, or each piece saying why the namespace gave none.
async fn in_namespace(
    executor: &Executor,
    aim: Aim,
    settings: EvidenceConfig,
    failed_here: bool,
) -> Vec<Piece> {
    let netns = executor.id();
    let timeout = settings.timeout;
    let expected = expected_pieces(&aim, failed_here);
    let work =
        executor.run(move |ctx| async move { gather(ctx, aim, &settings, failed_here).await });
    let why = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(pieces)) => return pieces,
        Ok(Err(e)) => format!("namespace {netns} not available: {e}"),
        Err(_) => format!(
            "the capture's {} ran out",
            humantime::format_duration(timeout)
        ),
    };
    let source = format!("the {netns} namespace's executor");
    expected
        .into_iter()
        .map(|what| Piece::unavailable(what, piece_netns(what, netns), &source, why.clone()))
        .collect()
}

/// The pieces a namespace's part of a capture holds.
fn expected_pieces(aim: &Aim, failed_here: bool) -> Vec<What> {
    let mut whats = vec![What::ResolvConf];
    if aim.name.is_some() {
        whats.push(What::Resolved);
    }
    whats.extend([What::Route, What::PathMtu, What::Traceroute]);
    if failed_here {
        whats.push(What::Conntrack);
    }
    whats
}

/// The conntrack table read is the host's, whichever namespace sent the flow.
fn piece_netns(what: What, netns: NetnsId) -> NetnsId {
    match what {
        What::Conntrack => NetnsId::Host,
        _ => netns,
    }
}

/// Takes one namespace's pieces, on a thread inside it. The budgets split the capture's
/// timeout: the name first, then route, traceroute and conntrack at once.
async fn gather(
    ctx: Arc<NetnsContext>,
    aim: Aim,
    settings: &EvidenceConfig,
    failed_here: bool,
) -> Vec<Piece> {
    let small = settings.timeout / 5;
    let mut pieces = vec![resolver::resolv_conf(&ctx).await];
    let mut first: Option<IpAddr> = None;
    if let Some((name, resolver)) = &aim.name {
        let (piece, ips) = resolver::resolved(&ctx, name, (resolver, aim.family), small).await;
        first = ips.first().copied();
        pieces.push(piece);
    }
    let ip = match (&aim.host, first) {
        (Err(why), _) => Err(why.clone()),
        // A name target resolved for its own piece is not asked again.
        (Ok(Host::Name(_)), Some(ip)) => Ok(ip),
        (Ok(host), _) => resolver::address(&ctx, host, aim.family, small).await,
    };
    let ip = match ip {
        Ok(ip) => ip,
        Err(why) => {
            let mut missing = vec![What::Route, What::PathMtu, What::Traceroute];
            if failed_here {
                missing.push(What::Conntrack);
            }
            pieces.extend(missing.into_iter().map(|what| {
                let netns = piece_netns(what, ctx.id);
                Piece::unavailable(what, netns, "the check's target", why.clone())
            }));
            return pieces;
        }
    };
    let routed = route::pieces(&ctx, ip, small);
    let traced = trace::piece(&ctx, ip, settings.traceroute_max_hops, settings.timeout / 2);
    let tracked = async {
        match failed_here {
            true => Some(conntrack::piece(&ctx, ip, aim.port, small).await),
            false => None,
        }
    };
    let (routed, traced, tracked) = tokio::join!(routed, traced, tracked);
    pieces.extend(routed);
    pieces.push(traced);
    pieces.extend(tracked);
    pieces
}

/// What a piece says when the capture's text was full before it.
const DROPPED: &str = "dropped: the capture reached its size bound";
/// Room kept for [`DROPPED`] notes, so that text and notes stay within [`MAX_CAPTURE`].
const NOTES: usize = 1024;
/// Less room than this left, and a piece is dropped rather than cut to a stub.
const SMALLEST_CUT: usize = 64;

/// Cuts the pieces' text to [`MAX_CAPTURE`] in all: the first pieces (the failing namespace's)
/// keep theirs, the last are cut or dropped.
fn bound_total(pieces: &mut [Piece]) {
    let mut left = MAX_CAPTURE - NOTES;
    for piece in pieces.iter_mut() {
        let len = piece.len();
        if len <= left {
            left -= len;
            continue;
        }
        let body = std::mem::replace(&mut piece.body, Body::Unavailable(DROPPED.into()));
        if left < SMALLEST_CUT {
            left = 0;
            continue;
        }
        piece.body = match body {
            Body::Text(text) => Body::Text(bounded(text, left)),
            Body::Unavailable(why) => Body::Unavailable(bounded(why, left)),
        };
        left -= piece.len();
    }
}

/// The last [`KEPT`] captures of every check, and when each check was last captured. Only
/// checks that are tracked keep captures: one finishing after its check was removed is dropped.
#[derive(Debug, Default)]
pub struct Store {
    checks: HashMap<CheckKey, Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    captures: VecDeque<Arc<Capture>>,
    last_started: Option<Instant>,
}

impl Store {
    pub fn declare(&mut self, key: &CheckKey) {
        self.checks.entry(key.clone()).or_default();
    }

    pub fn remove(&mut self, key: &CheckKey) {
        self.checks.remove(key);
    }

    /// Whether `key` may be captured at `now`: not within `min_interval` of its last capture.
    /// An admitted capture counts from now.
    pub fn admit(&mut self, key: &CheckKey, now: Instant, min_interval: Duration) -> bool {
        let Some(kept) = self.checks.get_mut(key) else {
            return false;
        };
        if kept
            .last_started
            .is_some_and(|last| now.saturating_duration_since(last) < min_interval)
        {
            return false;
        }
        kept.last_started = Some(now);
        true
    }

    /// Keeps a finished capture, newest first; false when the check is no longer tracked.
    pub fn keep(&mut self, key: &CheckKey, capture: Arc<Capture>) -> bool {
        let Some(kept) = self.checks.get_mut(key) else {
            return false;
        };
        kept.captures.push_front(capture);
        kept.captures.truncate(KEPT);
        true
    }

    /// The captures of `key`, newest first.
    pub fn of(&self, key: &CheckKey) -> Vec<Arc<Capture>> {
        self.checks
            .get(key)
            .map(|kept| kept.captures.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
