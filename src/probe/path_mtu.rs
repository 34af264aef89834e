//! The `path_mtu` probe: the largest packet that crosses the path to a target unfragmented, and
//! whether larger ones vanish silently (a PMTU black hole).
//!
//! Don't-fragment echo requests of chosen sizes go out in a few rounds; each size ends as an echo
//! reply (it fits), a fragmentation-needed error (ICMPv6 Packet Too Big: too big; its next-hop
//! MTU lets the search jump straight there) or silence. Silence above a size that passes, with no
//! such error to explain it, is the black hole that hangs TLS handshakes and bulk transfers
//! through a tunnel whose gateway's ICMP is filtered. IPv6 routers never fragment, so there every
//! packet is don't-fragment and the search starts at the IPv6 minimum MTU.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use prometheus::GaugeVec;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::raw::{self, IcmpError, Message, RawIcmp};
use super::resolver::{Family, Resolver};
use super::route;
use super::series::flag;
use super::target::{Host, HostPort};
use super::{CheckLabels, Failure, Families, Measurements, Outcome, Probe, Reason, Target};
use crate::netns::NetnsContext;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMtuSpec {
    /// An IP address, or a host name resolved in the probe's namespace every round (to
    /// `family`).
    pub target: Host,
    /// The round fails when the path MTU is below this many bytes (1400 for an IPsec tunnel).
    #[serde(default, deserialize_with = "mtu")]
    pub min: Option<u16>,
    /// `HOST:PORT` to connect to and read the TCP MSS from, to see whether clamping is in effect.
    pub tcp_mss: Option<HostPort>,
    /// Who resolves host names (the target's and `tcp_mss`'s): `system` or a list of servers.
    #[serde(default)]
    pub resolver: Resolver,
    /// Which of the target's addresses is measured: `any` (IPv4 first), `ipv4` or `ipv6`; a
    /// `tcp_mss` host name is resolved to the same family.
    #[serde(default)]
    pub family: Family,
}

/// What a round measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathMtuReport {
    /// The largest IP packet that got an echo reply; `None` when none did.
    pub mtu: Option<u16>,
    pub blackhole: bool,
    pub tcp_mss: Option<u32>,
}

/// The smallest IP packet every IPv4 path must carry unfragmented (RFC 791's 576).
const FLOOR: u16 = 576;
/// The IPv6 minimum link MTU (RFC 8200): every IPv6 path carries this, and a Packet Too Big
/// reporting less does not lower the path MTU below it.
const FLOOR_V6: u16 = 1280;
/// Sizes tried per round: the interval shrinks fivefold each round when nothing answers.
const SIZES_PER_ROUND: usize = 4;
/// Echo requests per size and round, so one lost packet is not taken for a too-big size.
const COPIES: usize = 2;
/// No round waits longer for stragglers than this, however large the budget.
const MAX_ROUND_WAIT: Duration = Duration::from_secs(1);

fn mtu<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let n = u16::deserialize(d)?;
    if n < 68 {
        return Err(de::Error::custom(
            "must be at least 68 (the IPv4 minimum MTU)",
        ));
    }
    Ok(Some(n))
}

/// How one probe size fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Fits,
    /// Too big: a router said so (with its next-hop MTU), or the kernel refused to send it.
    TooBig {
        reported: Option<(u16, IpAddr)>,
    },
    Lost,
}

/// The search over IP packet sizes, as pure state: which sizes to try next, and what the answers
/// so far mean.
#[derive(Debug, Clone)]
struct Search {
    floor: u16,
    ceiling: u16,
    /// The largest size that got an echo reply.
    fits: Option<u16>,
    /// The smallest size known not to pass.
    too_big: u32,
    /// The smallest next-hop MTU a fragmentation-needed reported, and the router that sent it.
    reported: Option<(u16, IpAddr)>,
    /// Sizes that got no answer at all.
    silent: BTreeSet<u16>,
    tried: BTreeSet<u16>,
}

impl Search {
    fn new(floor: u16, ceiling: u16) -> Search {
        let ceiling = ceiling.max(floor);
        Search {
            floor,
            ceiling,
            fits: None,
            too_big: u32::from(ceiling) + 1,
            reported: None,
            silent: BTreeSet::new(),
            tried: BTreeSet::new(),
        }
    }

    /// The sizes for the next round; empty when the search is over.
    fn next_sizes(&self) -> Vec<u16> {
        if self.tried.is_empty() {
            let mut first: BTreeSet<u16> = spread(
                u32::from(self.floor),
                u32::from(self.ceiling),
                SIZES_PER_ROUND - 2,
            )
            .into_iter()
            .collect();
            first.extend([self.floor, self.ceiling]);
            return first.into_iter().collect();
        }
        let lower = match self.fits {
            Some(fits) => u32::from(fits),
            // Nothing fits, not even the floor: only a reported MTU below it is worth a try.
            None => {
                return self
                    .reported
                    .map(|(mtu, _)| mtu)
                    .filter(|mtu| *mtu < self.floor && !self.tried.contains(mtu))
                    .into_iter()
                    .collect();
            }
        };
        if let Some((mtu, _)) = self.reported {
            let mtu32 = u32::from(mtu);
            if mtu32 > lower && mtu32 < self.too_big && !self.tried.contains(&mtu) {
                return vec![mtu];
            }
        }
        spread(lower, self.too_big, SIZES_PER_ROUND)
            .into_iter()
            .filter(|s| !self.tried.contains(s))
            .collect()
    }

    /// Records a round. Replies count first, so a lost copy of a size smaller than one that
    /// fits is taken for the packet loss it is.
    fn record(&mut self, answers: &BTreeMap<u16, Answer>) {
        self.tried.extend(answers.keys().copied());
        for (&size, answer) in answers {
            if *answer == Answer::Fits {
                self.fits = self.fits.max(Some(size));
                self.too_big = self.too_big.max(u32::from(size) + 1);
            }
        }
        let fits = self.fits.map_or(0, u32::from);
        for (&size, answer) in answers {
            match *answer {
                Answer::Fits => {}
                Answer::TooBig { reported } => {
                    let mut bound = u32::from(size);
                    if let Some((mtu, from)) = reported.filter(|(mtu, _)| *mtu >= 68 && *mtu < size)
                    {
                        bound = bound.min(u32::from(mtu) + 1);
                        if self.reported.is_none_or(|(known, _)| mtu < known) {
                            self.reported = Some((mtu, from));
                        }
                    }
                    self.too_big = self.too_big.min(bound.max(fits + 1));
                }
                Answer::Lost => {
                    self.silent.insert(size);
                    if u32::from(size) > fits {
                        self.too_big = self.too_big.min(u32::from(size));
                    }
                }
            }
        }
    }

    /// Rounds still needed at worst, to share the remaining budget between them.
    fn rounds_left(&self) -> u32 {
        let lower = self.fits.map_or(u32::from(self.floor) - 1, u32::from);
        let mut width = self.too_big.saturating_sub(lower);
        let mut rounds = 1;
        while width > 1 {
            width /= SIZES_PER_ROUND as u32 + 1;
            rounds += 1;
        }
        rounds
    }

    /// Larger packets vanished without a fragmentation-needed that would explain it, while
    /// smaller ones passed.
    fn blackhole(&self) -> bool {
        let Some(fits) = self.fits else {
            return false;
        };
        let explained_above = self.reported.map_or(self.ceiling, |(mtu, _)| mtu);
        self.silent
            .iter()
            .any(|&size| size > fits && size <= explained_above)
    }

    /// True when the answer is exact: the next size up is known not to pass.
    fn converged(&self) -> bool {
        self.fits
            .is_some_and(|fits| u32::from(fits) + 1 >= self.too_big)
    }
}

/// `count` sizes evenly spaced strictly between `lower` and `upper`.
fn spread(lower: u32, upper: u32, count: usize) -> Vec<u16> {
    let gap = upper.saturating_sub(lower);
    if gap <= 1 {
        return Vec::new();
    }
    let count = (count as u32).min(gap - 1);
    let sizes: BTreeSet<u16> = (1..=count)
        .filter_map(|i| u16::try_from(lower + gap * i / (count + 1)).ok())
        .collect();
    sizes.into_iter().collect()
}

/// Our requests in flight: identifier, and the size sent under each sequence number.
struct Sent {
    target: IpAddr,
    ident: u16,
    size_of: BTreeMap<u16, u16>,
}

/// What an ICMP message says about one of our requests: the size it was, and the answer. A reply
/// must be as large as its request, which also sets strays that share our identifier apart.
fn classify(message: &Message, sent: &Sent) -> Option<(u16, Result<Answer, Failure>)> {
    let target = sent.target;
    match *message {
        Message::EchoReply {
            from,
            ident,
            seq,
            size,
        } if from == target && ident == sent.ident => {
            let sent_size = *sent.size_of.get(&seq)?;
            (size == sent_size).then_some((sent_size, Ok(Answer::Fits)))
        }
        Message::Error {
            from,
            error,
            quoted,
        } if quoted.dst == target => {
            let (ident, seq) = quoted.echo()?;
            if ident != sent.ident {
                return None;
            }
            let size = *sent.size_of.get(&seq)?;
            let answer = match error {
                IcmpError::TooBig { mtu } => Ok(Answer::TooBig {
                    reported: Some((mtu.max(floor(target)), from)),
                }),
                IcmpError::Unreachable { code } => Err(Failure::new(
                    Reason::Unreachable,
                    format!("{from} answered destination unreachable (code {code}) for {target}"),
                )),
                IcmpError::TimeExceeded => Err(Failure::new(
                    Reason::Unreachable,
                    format!("{from} answered time exceeded for {target}: a routing loop?"),
                )),
            };
            Some((size, answer))
        }
        _ => None,
    }
}

/// The `path_mtu` kind's own series.
pub struct PathMtuSeries {
    mtu: GaugeVec,
    blackhole: GaugeVec,
    tcp_mss: GaugeVec,
}

impl Probe for PathMtuSpec {
    type Measurements = PathMtuReport;
    type Series = PathMtuSeries;

    fn register(families: &mut dyn Families) -> PathMtuSeries {
        let labels = &CheckLabels::names(&[]);
        PathMtuSeries {
            mtu: families.gauges(
                "hybridprobe_path_mtu_bytes",
                "The largest IP packet that crossed the path without fragmentation.",
                labels,
            ),
            blackhole: families.gauges(
                "hybridprobe_path_mtu_blackhole",
                "1 when larger don't-fragment packets vanish without a fragmentation-needed \
                 (Packet Too Big) reply while smaller ones pass.",
                labels,
            ),
            tcp_mss: families.gauges(
                "hybridprobe_tcp_mss_bytes",
                "The TCP maximum segment size the kernel settled on for a test connection.",
                labels,
            ),
        }
    }

    fn describe(&self) -> String {
        format!("path MTU to {}{}", self.target, self.family.note())
    }

    async fn run(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        self.round(ctx, budget).await
    }

    fn observe(series: &PathMtuSeries, check: CheckLabels<'_>, measured: &PathMtuReport) {
        let labels = check.values();
        // Without a single reply nothing was measured: the last known values stand.
        if let Some(mtu) = measured.mtu {
            series.mtu.with_label_values(&labels).set(f64::from(mtu));
            series
                .blackhole
                .with_label_values(&labels)
                .set(flag(measured.blackhole));
        }
        if let Some(mss) = measured.tcp_mss {
            series
                .tcp_mss
                .with_label_values(&labels)
                .set(f64::from(mss));
        }
    }

    /// Any echo reply, at whatever size, crossed the path.
    fn family(&self) -> Option<(&Host, Family)> {
        Some((&self.target, self.family))
    }

    fn targets(&self, failure: Option<&Failure>) -> Vec<Target> {
        let replied = |m: &Measurements| match m {
            Measurements::PathMtu(report) if report.mtu.is_some() => Some(true),
            _ => None,
        };
        vec![Target::judged(
            &self.target,
            self.target.to_string(),
            failure,
            replied,
        )]
    }
}

impl PathMtuSpec {
    async fn round(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        let deadline = Instant::now() + budget;
        let target = raw::path_target(&self.target, ctx, &self.resolver, self.family).await?;
        let egress = route::lookup(target.into(), ctx).await?;
        let socket = RawIcmp::open(target, "path_mtu")?;
        socket.set_probe_pmtu().map_err(|e| {
            Failure::new(
                Reason::Error,
                format!("turn fragmentation off on the raw socket: {e}"),
            )
        })?;
        let ceiling = u16::try_from(egress.dev_mtu).unwrap_or(u16::MAX);
        let mut search = Search::new(floor(target), ceiling);
        let measure = async {
            let ident = raw::next_ident();
            let mut seq = 0u16;
            loop {
                let sizes = search.next_sizes();
                let left = deadline.saturating_duration_since(Instant::now());
                if sizes.is_empty() || left.is_zero() {
                    return Ok::<_, Failure>(());
                }
                let wait = (left / search.rounds_left()).min(MAX_ROUND_WAIT);
                let answers = round(
                    &socket,
                    target,
                    ident,
                    &mut seq,
                    &sizes,
                    Instant::now() + wait,
                )
                .await?;
                search.record(&answers);
            }
        };
        let mss = async {
            match &self.tcp_mss {
                Some(endpoint) => {
                    Some(tcp_mss(endpoint, ctx, (&self.resolver, self.family), deadline).await)
                }
                None => None,
            }
        };
        let (measured, mss) = tokio::join!(measure, mss);
        measured?;
        self.judge(target, &egress, &search, mss)
    }

    fn judge(
        &self,
        target: IpAddr,
        egress: &route::Route,
        search: &Search,
        mss: Option<Result<(SocketAddr, u32), Failure>>,
    ) -> Result<Outcome, Failure> {
        let (tcp_mss, mss_failure) = match mss {
            Some(Ok((addr, mss))) => (Some((addr, mss)), None),
            Some(Err(failure)) => (None, Some(failure)),
            None => (None, None),
        };
        let blackhole = search.blackhole();
        let measurements = Measurements::PathMtu(PathMtuReport {
            mtu: search.fits,
            blackhole,
            tcp_mss: tcp_mss.map(|(_, mss)| mss),
        });
        let egress_note = format!("egress {} MTU {}", egress.dev, egress.dev_mtu);
        let Some(mtu) = search.fits else {
            return Err(Failure {
                reason: Reason::Timeout,
                detail: format!(
                    "{target}: no echo reply even at {} bytes, so the path MTU cannot be \
                     measured ({egress_note})",
                    search.floor
                ),
                measurements,
                resolved: None,
            });
        };
        let too_big = too_big_name(target);
        let mut detail = if blackhole {
            format!(
                "{target}: black hole: don't-fragment packets over {mtu} bytes vanish without \
                 {too_big}; path MTU {mtu}"
            )
        } else {
            format!("{target}: path MTU {mtu}")
        };
        let _ = write!(detail, " ({egress_note}");
        if let Some((reported, from)) = search.reported {
            let _ = write!(detail, "; {too_big} from {from}: next-hop MTU {reported}");
        }
        if !search.converged() {
            let _ = write!(
                detail,
                "; the timeout cut the search short: at most {}",
                search.too_big - 1
            );
        }
        detail.push(')');
        if let Some((addr, mss)) = tcp_mss {
            let _ = write!(detail, ", TCP MSS {mss} to {addr}");
        }
        let failed = |reason, detail| {
            Err(Failure {
                reason,
                detail,
                measurements: measurements.clone(),
                resolved: None,
            })
        };
        if blackhole {
            return failed(Reason::Blackhole, detail);
        }
        if let Some(min) = self.min.filter(|min| mtu < *min) {
            return failed(Reason::MtuLow, format!("{detail}: below the minimum {min}"));
        }
        if let Some(failure) = mss_failure {
            return failed(failure.reason, format!("{detail}; {}", failure.detail));
        }
        Ok(Outcome {
            detail,
            measurements,
            resolved: None,
        })
    }
}

/// The smallest packet `target`'s family must carry: where the search starts.
fn floor(target: IpAddr) -> u16 {
    if target.is_ipv4() {
        FLOOR
    } else {
        FLOOR_V6
    }
}

/// What `target`'s family calls the error that says a packet is too big to forward.
fn too_big_name(target: IpAddr) -> &'static str {
    if target.is_ipv4() {
        "fragmentation-needed"
    } else {
        "Packet Too Big"
    }
}

/// Sends `COPIES` requests of every size, then collects answers until each size has one or
/// `until` passes; what never answered is lost.
async fn round(
    socket: &RawIcmp,
    target: IpAddr,
    ident: u16,
    next_seq: &mut u16,
    sizes: &[u16],
    until: Instant,
) -> Result<BTreeMap<u16, Answer>, Failure> {
    let mut answers = BTreeMap::new();
    let mut sent = Sent {
        target,
        ident,
        size_of: BTreeMap::new(),
    };
    for &size in sizes {
        for _ in 0..COPIES {
            let seq = *next_seq;
            *next_seq = next_seq.wrapping_add(1);
            sent.size_of.insert(seq, size);
            match socket
                .send_echo(target, ident, seq, usize::from(size))
                .await
            {
                Ok(()) => {}
                // Larger than the interface itself: refused before it left.
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    answers.insert(size, Answer::TooBig { reported: None });
                }
                Err(e) => {
                    return Err(Failure::new(
                        Reason::of_io(&e),
                        format!("send a {size}-byte echo request to {target}: {e}"),
                    ))
                }
            }
        }
    }
    while answers.len() < sizes.len() {
        let message = match tokio::time::timeout_at(until, socket.recv()).await {
            Ok(Ok(message)) => message,
            Ok(Err(e)) => {
                return Err(Failure::new(
                    Reason::of_io(&e),
                    format!("receive on the raw ICMP socket: {e}"),
                ))
            }
            Err(_elapsed) => break,
        };
        let Some((size, answer)) = classify(&message, &sent) else {
            continue;
        };
        let answer = answer?;
        // A reply outranks a too-big for the same size: the path answered after all.
        if answers.get(&size) != Some(&Answer::Fits) {
            answers.insert(size, answer);
        }
    }
    for &size in sizes {
        answers.entry(size).or_insert(Answer::Lost);
    }
    Ok(answers)
}

/// Connects to `endpoint` and reads the MSS the kernel settled on for the connection.
async fn tcp_mss(
    endpoint: &HostPort,
    ctx: &NetnsContext,
    (resolver, family): (&Resolver, Family),
    deadline: Instant,
) -> Result<(SocketAddr, u32), Failure> {
    let ip = endpoint.host.resolve_family(ctx, resolver, family).await?[0];
    let addr = SocketAddr::new(ip, endpoint.port);
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Err(Failure::new(
                Reason::of_io(&e),
                format!("TCP MSS: connect {addr}: {e}"),
            ))
        }
        Err(_) => {
            return Err(Failure::new(
                Reason::Timeout,
                format!("TCP MSS: connect {addr}: no answer"),
            ))
        }
    };
    socket2::SockRef::from(&stream)
        .tcp_mss()
        .map(|mss| (addr, mss))
        .map_err(|e| Failure::new(Reason::Error, format!("TCP MSS: read TCP_MAXSEG: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    use crate::probe::raw::tests::{echo6, icmp6_error, icmp_error, ip, ip6, ME, ME6, THEM, THEM6};
    use crate::probe::raw::{parse, parse_v6, PROTO_ICMP, PROTO_ICMPV6};

    const GW4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
    const GW: IpAddr = IpAddr::V4(GW4);
    const THEM_IP: IpAddr = IpAddr::V4(THEM);

    /// Runs the search against a simulated path: `path_mtu`, and whether routers on it send
    /// fragmentation-needed (from GW, saying `path_mtu`) or drop silently.
    fn simulate(ceiling: u16, path_mtu: u16, frag_needed: bool) -> (Search, usize) {
        simulate_from(FLOOR, ceiling, path_mtu, frag_needed)
    }

    fn simulate_from(
        floor: u16,
        ceiling: u16,
        path_mtu: u16,
        frag_needed: bool,
    ) -> (Search, usize) {
        let mut search = Search::new(floor, ceiling);
        let mut rounds = 0;
        loop {
            let sizes = search.next_sizes();
            if sizes.is_empty() {
                return (search, rounds);
            }
            rounds += 1;
            assert!(rounds < 20, "search does not end: {search:?}");
            assert!(sizes.len() <= SIZES_PER_ROUND, "{sizes:?}");
            let answers = sizes
                .iter()
                .map(|&size| {
                    let answer = if size <= path_mtu {
                        Answer::Fits
                    } else if frag_needed {
                        Answer::TooBig {
                            reported: Some((path_mtu, GW)),
                        }
                    } else {
                        Answer::Lost
                    };
                    (size, answer)
                })
                .collect();
            search.record(&answers);
        }
    }

    #[test]
    fn fragmentation_needed_lets_the_search_jump_to_the_reported_mtu() {
        let (search, rounds) = simulate(1500, 1400, true);
        assert_eq!(search.fits, Some(1400));
        assert!(search.converged());
        assert!(!search.blackhole());
        assert_eq!(search.reported, Some((1400, GW)));
        assert_eq!(rounds, 2, "one round to hear the MTU, one to confirm it");
    }

    #[test]
    fn silent_drops_above_the_mtu_are_a_black_hole_found_exactly() {
        let (search, rounds) = simulate(1500, 1400, false);
        assert_eq!(search.fits, Some(1400));
        assert!(search.converged());
        assert!(search.blackhole());
        assert!(rounds <= 6, "{rounds} rounds");
    }

    #[test]
    fn a_clean_path_at_the_interface_mtu_is_one_round() {
        let (search, rounds) = simulate(1500, 1500, true);
        assert_eq!((search.fits, rounds), (Some(1500), 1));
        assert!(!search.blackhole());
        for (ceiling, mtu) in [(9000, 1400), (1500, 577), (1500, 1499), (65535, 1500)] {
            for frag in [true, false] {
                let (search, _) = simulate(ceiling, mtu, frag);
                assert_eq!(search.fits, Some(mtu), "{ceiling}/{mtu}/{frag}");
                assert_eq!(search.blackhole(), !frag, "{ceiling}/{mtu}/{frag}");
            }
        }
    }

    #[test]
    fn a_target_that_never_answers_is_not_a_black_hole() {
        let mut search = Search::new(FLOOR, 1500);
        let answers = search
            .next_sizes()
            .into_iter()
            .map(|s| (s, Answer::Lost))
            .collect();
        search.record(&answers);
        assert_eq!(search.fits, None);
        assert!(!search.blackhole());
        assert!(search.next_sizes().is_empty());
    }

    #[test]
    fn a_lost_small_packet_next_to_a_larger_reply_is_just_loss() {
        let mut search = Search::new(FLOOR, 1500);
        let answers = [
            (576, Answer::Fits),
            (900, Answer::Lost),
            (1200, Answer::Fits),
            (
                1500,
                Answer::TooBig {
                    reported: Some((1400, GW)),
                },
            ),
        ]
        .into_iter()
        .collect();
        search.record(&answers);
        assert_eq!(search.fits, Some(1200));
        assert_eq!(search.next_sizes(), vec![1400]);
        assert!(!search.blackhole());
    }

    #[test]
    fn a_black_hole_behind_a_router_that_reports_is_still_found() {
        // The first router says 1400, but a later hop silently drops anything over 1300.
        let mut search = Search::new(FLOOR, 1500);
        for _ in 0..10 {
            let answers = search
                .next_sizes()
                .into_iter()
                .map(|size| {
                    let answer = match size {
                        0..=1300 => Answer::Fits,
                        1301..=1400 => Answer::Lost,
                        _ => Answer::TooBig {
                            reported: Some((1400, GW)),
                        },
                    };
                    (size, answer)
                })
                .collect();
            search.record(&answers);
        }
        assert_eq!(search.fits, Some(1300));
        assert!(search.blackhole());
    }

    #[test]
    fn rounds_left_shrinks_as_the_interval_does() {
        let search = Search::new(FLOOR, 1500);
        assert!(search.rounds_left() >= 5, "{}", search.rounds_left());
        let (done, _) = simulate(1500, 1400, true);
        assert_eq!(done.rounds_left(), 1);
    }

    #[test]
    fn icmp_messages_are_matched_to_our_requests_only() {
        let sent = Sent {
            target: THEM_IP,
            ident: 7,
            size_of: [(3, 28), (4, 1500)].into_iter().collect(),
        };
        let echo = |kind: u8, seq: u16| {
            let mut icmp = vec![kind, 0, 0, 0];
            icmp.extend_from_slice(&7u16.to_be_bytes());
            icmp.extend_from_slice(&seq.to_be_bytes());
            icmp
        };
        let reply = parse(&ip(THEM, ME, PROTO_ICMP, &echo(0, 3)));
        assert!(matches!(
            classify(&reply, &sent),
            Some((28, Ok(Answer::Fits)))
        ));
        let other = Sent { ident: 8, ..sent };
        assert!(classify(&reply, &other).is_none(), "another probe's ident");
        let sent = Sent { ident: 7, ..other };
        let wrong_size = parse(&ip(THEM, ME, PROTO_ICMP, &echo(0, 4)));
        assert!(
            classify(&wrong_size, &sent).is_none(),
            "28 bytes cannot answer 1500"
        );

        let original = ip(ME, THEM, PROTO_ICMP, &echo(8, 4));
        let frag = parse(&icmp_error(GW4, 3, 4, 1400, &original));
        assert!(matches!(
            classify(&frag, &sent),
            Some((
                1500,
                Ok(Answer::TooBig {
                    reported: Some((1400, GW))
                })
            ))
        ));
        let unreachable = parse(&icmp_error(GW4, 3, 1, 0, &original));
        let Some((1500, Err(failure))) = classify(&unreachable, &sent) else {
            panic!("unreachable not classified");
        };
        assert_eq!(failure.reason, Reason::Unreachable);
        let elsewhere = Sent {
            target: Ipv4Addr::new(198, 19, 10, 2).into(),
            ..sent
        };
        assert!(classify(&frag, &elsewhere).is_none());
    }

    #[test]
    fn judged_rounds_name_the_problem() {
        let spec = |min| PathMtuSpec {
            target: Host::Ip(THEM_IP),
            min,
            tcp_mss: None,
            resolver: Default::default(),
            family: Default::default(),
        };
        let egress = route::Route {
            destination: THEM_IP.into(),
            gateway: Some(GW),
            dev: "eth0".into(),
            src: None,
            dev_mtu: 1500,
            mtu: None,
        };
        let (clean, _) = simulate(1500, 1400, true);
        let ok = spec(Some(1400))
            .judge(THEM_IP, &egress, &clean, None)
            .unwrap();
        assert_eq!(
            ok.detail,
            "198.19.10.1: path MTU 1400 (egress eth0 MTU 1500; fragmentation-needed from \
             198.18.1.1: next-hop MTU 1400)"
        );
        let low = spec(Some(1500))
            .judge(THEM_IP, &egress, &clean, None)
            .unwrap_err();
        assert_eq!(low.reason, Reason::MtuLow);
        assert!(
            low.detail.ends_with(": below the minimum 1500"),
            "{}",
            low.detail
        );

        let (hole, _) = simulate(1500, 1400, false);
        let failure = spec(None).judge(THEM_IP, &egress, &hole, None).unwrap_err();
        assert_eq!(failure.reason, Reason::Blackhole);
        assert_eq!(
            failure.measurements,
            Measurements::PathMtu(PathMtuReport {
                mtu: Some(1400),
                blackhole: true,
                tcp_mss: None
            })
        );

        let mut cut_short = Search::new(FLOOR, 1500);
        let answers = [(576, Answer::Fits), (1500, Answer::Lost)]
            .into_iter()
            .collect();
        cut_short.record(&answers);
        let failure = spec(None)
            .judge(THEM_IP, &egress, &cut_short, None)
            .unwrap_err();
        assert!(
            failure
                .detail
                .contains("the timeout cut the search short: at most 1499"),
            "{}",
            failure.detail
        );

        let refused = Failure::new(Reason::Refused, "TCP MSS: connect refused");
        let failure = spec(None)
            .judge(THEM_IP, &egress, &clean, Some(Err(refused)))
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Refused);
        assert!(
            failure.detail.starts_with("198.19.10.1: path MTU 1400"),
            "{}",
            failure.detail
        );
    }

    #[test]
    fn spec_validation() {
        let parse = |s: &str| serde_norway::from_str::<PathMtuSpec>(s).map_err(|e| e.to_string());
        let ok = parse("{target: 198.19.10.1, min: 1400, tcp_mss: '198.19.10.1:389'}").unwrap();
        assert_eq!(ok.min, Some(1400));
        assert!(parse("{target: 198.19.10.1, min: 10}")
            .unwrap_err()
            .contains("at least 68"));
        assert!(parse("{target: 198.19.10.1, tcp_mss: 198.19.10.1}")
            .unwrap_err()
            .contains("expected HOST:PORT"));
    }

    #[test]
    fn ipv6_searches_from_the_minimum_mtu_and_finds_holes_the_same_way() {
        assert_eq!(floor(THEM6.into()), 1280);
        assert_eq!(floor(THEM_IP), FLOOR);
        let (search, _) = simulate_from(1280, 1500, 1400, true);
        assert_eq!(search.fits, Some(1400));
        assert!(search.next_sizes().is_empty());
        assert!(!search.blackhole());
        let (search, rounds) = simulate_from(1280, 1500, 1400, false);
        assert_eq!(search.fits, Some(1400));
        assert!(search.blackhole());
        assert!(rounds <= 5, "{rounds} rounds");
        let (search, _) = simulate_from(1280, 1500, 1280, false);
        assert_eq!((search.fits, search.blackhole()), (Some(1280), true));
        assert!(search.tried.iter().all(|size| *size >= 1280));
    }

    #[test]
    fn icmpv6_messages_are_matched_and_a_too_big_below_1280_counts_as_1280() {
        let sent = Sent {
            target: THEM6.into(),
            ident: 7,
            size_of: [(3, 1300), (4, 1500)].into_iter().collect(),
        };
        let reply = parse_v6(THEM6, &echo6(129, 7, 3, 1300 - 40));
        assert!(matches!(
            classify(&reply, &sent),
            Some((1300, Ok(Answer::Fits)))
        ));
        let short = parse_v6(THEM6, &echo6(129, 7, 4, 1300 - 40));
        assert!(classify(&short, &sent).is_none(), "1300 cannot answer 1500");
        let original = ip6(ME6, THEM6, PROTO_ICMPV6, &echo6(128, 7, 4, 1460));
        let gw6 = crate::probe::raw::tests::GW6;
        for (said, counted) in [(1400, 1400), (1000, 1280), (0, 1280)] {
            let too_big = parse_v6(gw6, &icmp6_error(2, 0, said, &original[..1232]));
            assert!(
                matches!(
                    classify(&too_big, &sent),
                    Some((1500, Ok(Answer::TooBig { reported: Some((mtu, from)) })))
                        if mtu == counted && from == IpAddr::from(gw6)
                ),
                "{said}"
            );
        }
        let v4 = Sent {
            target: THEM_IP,
            ..sent
        };
        let too_big = parse_v6(gw6, &icmp6_error(2, 0, 1400, &original[..1232]));
        assert!(classify(&too_big, &v4).is_none(), "another target");
    }

    #[test]
    fn ipv6_rounds_name_packet_too_big() {
        let them6 = IpAddr::from(THEM6);
        let spec = PathMtuSpec {
            target: Host::Ip(them6),
            min: None,
            tcp_mss: None,
            resolver: Default::default(),
            family: Default::default(),
        };
        let egress = route::Route {
            destination: them6.into(),
            gateway: Some(crate::probe::raw::tests::GW6.into()),
            dev: "eth0".into(),
            src: None,
            dev_mtu: 1500,
            mtu: None,
        };
        let mut clean = Search::new(FLOOR_V6, 1500);
        let too_big = Answer::TooBig {
            reported: Some((1400, crate::probe::raw::tests::GW6.into())),
        };
        clean.record(
            &[(1280, Answer::Fits), (1500, too_big)]
                .into_iter()
                .collect(),
        );
        clean.record(&[(1400, Answer::Fits)].into_iter().collect());
        let ok = spec.judge(them6, &egress, &clean, None).unwrap();
        assert_eq!(
            ok.detail,
            "2001:2:0:10::1: path MTU 1400 (egress eth0 MTU 1500; Packet Too Big from \
             2001:2:0:1::1: next-hop MTU 1400)"
        );
        let (hole, _) = simulate_from(FLOOR_V6, 1500, 1400, false);
        let failure = spec.judge(them6, &egress, &hole, None).unwrap_err();
        assert_eq!(failure.reason, Reason::Blackhole);
        assert!(
            failure.detail.starts_with(
                "2001:2:0:10::1: black hole: don't-fragment packets over 1400 bytes vanish \
                 without Packet Too Big"
            ),
            "{}",
            failure.detail
        );
    }
}
