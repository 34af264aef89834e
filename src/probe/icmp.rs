//! The `icmp` probe: several echo requests per round, with loss ratio, round-trip times,
//! jitter and the replies' hop limit.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use pnet_packet::icmp::IcmpTypes;
use pnet_packet::icmpv6::Icmpv6Types;
use prometheus::GaugeVec;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use surge_ping::{Client, Config, IcmpPacket, PingIdentifier, PingSequence, SurgeError, ICMP};
use tokio::time::Instant;

use super::histogram::Histograms;
use super::raw;
use super::resolver::{self, Family, Resolver};
use super::target::Host;
use super::{CheckLabels, Failure, Families, Measurements, Outcome, Probe, Reason, Target};
use crate::netns::NetnsContext;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpSpec {
    /// An address, a host name, or `gateway` for the namespace's default gateway.
    pub target: Host,
    /// Who resolves a host name: `system` (the namespace's resolv.conf) or a list of servers.
    #[serde(default)]
    pub resolver: Resolver,
    /// Which addresses of the host are probed: `any` (A first), `ipv4` or `ipv6`; for
    /// `gateway`, the IPv4 default route's or, with `ipv6`, the IPv6 one's.
    #[serde(default)]
    pub family: Family,
    /// Echo requests per round.
    #[serde(default = "default_count", deserialize_with = "count")]
    pub count: u16,
    /// Payload bytes per echo request (56 gives the classic 84-byte IPv4 packet).
    #[serde(default = "default_size")]
    pub size: u16,
    /// The round fails when more than this ratio of requests is lost; by default only when
    /// every request is lost, so one dropped packet shows in the loss ratio, not as an outage.
    #[serde(default = "default_max_loss", deserialize_with = "ratio")]
    pub max_loss: f64,
}

/// What a round measured, for the loss, RTT, jitter and hop-limit metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct IcmpReport {
    pub sent: u16,
    pub received: u16,
    /// The replies' RTTs in sequence order, lost requests left out.
    pub rtts: Vec<Duration>,
    /// The IPv4 TTL of the last echo reply. Only raw sockets see the IP header: with an
    /// unprivileged DGRAM socket, and for IPv6 (whose hop limit surge-ping does not read), it
    /// is `None`, and the series is absent rather than made up.
    pub hop_limit: Option<u8>,
}

impl IcmpReport {
    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        1.0 - f64::from(self.received) / f64::from(self.sent)
    }

    /// The mean absolute difference between consecutive replies' RTTs (the packet delay
    /// variation of RFC 3393 between neighbours, averaged); `None` with fewer than two replies.
    /// Neighbours, not the spread around the mean (ping's mdev), so a path whose RTT steps
    /// once within a round does not read as jittery throughout.
    pub fn jitter(&self) -> Option<Duration> {
        let steps = u32::try_from(self.rtts.len().checked_sub(1)?)
            .ok()
            .filter(|n| *n > 0)?;
        let total: Duration = self.rtts.windows(2).map(|w| w[0].abs_diff(w[1])).sum();
        Some(total / steps)
    }
}

fn default_count() -> u16 {
    3
}

fn default_size() -> u16 {
    56
}

fn default_max_loss() -> f64 {
    1.0
}

fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let n = u16::deserialize(d)?;
    if !(1..=100).contains(&n) {
        return Err(de::Error::custom("must be between 1 and 100"));
    }
    Ok(n)
}

fn ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let r = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&r) {
        return Err(de::Error::custom("must be a ratio between 0 and 1"));
    }
    Ok(r)
}

/// Spacing between the requests of one round, shrunk when the budget is tight.
const SPACING: Duration = Duration::from_millis(100);

/// The `icmp` kind's own series.
pub struct IcmpSeries {
    loss_ratio: GaugeVec,
    rtt: Histograms,
    jitter: GaugeVec,
    hop_limit: GaugeVec,
}

/// Round trips on a log scale, about threefold a step: each bucket is a series per check, and
/// the dashboard reads a median and a 95th percentile, for which a step of that size is enough.
/// Within a region under 1 ms or 3 ms, to on-prem over a tunnel 3 to 30 ms, across a continent
/// 30 to 100 ms; above 300 ms the path is in trouble, whatever the exact value.
const RTT_BUCKETS: &[f64] = &[0.001, 0.003, 0.01, 0.03, 0.1, 0.3];

impl Probe for IcmpSpec {
    type Measurements = IcmpReport;
    type Series = IcmpSeries;

    fn register(families: &mut dyn Families) -> IcmpSeries {
        IcmpSeries {
            loss_ratio: families.gauges(
                "hybridprobe_icmp_loss_ratio",
                "Share of echo requests in the last round that got no reply (0 to 1).",
                &CheckLabels::names(&[]),
            ),
            rtt: families.histograms(
                "hybridprobe_icmp_rtt_seconds",
                "Round-trip time of each echo reply.",
                &CheckLabels::names(&[]),
                RTT_BUCKETS,
            ),
            jitter: families.gauges(
                "hybridprobe_icmp_jitter_seconds",
                "Mean absolute difference between consecutive echo replies' RTTs in the last \
                 round; absent with fewer than two replies.",
                &CheckLabels::names(&[]),
            ),
            hop_limit: families.gauges(
                "hybridprobe_icmp_reply_hop_limit",
                "IPv4 TTL of the last echo reply; absent where the socket does not see it \
                 (unprivileged DGRAM sockets, IPv6).",
                &CheckLabels::names(&[]),
            ),
        }
    }

    fn describe(&self) -> String {
        format!("icmp echo {}{}", self.target, self.family.note())
    }

    async fn run(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        self.round(ctx, budget).await
    }

    fn round_trip(measured: &IcmpReport) -> Option<Duration> {
        average_rtt(&measured.rtts)
    }

    fn loss(measured: &IcmpReport) -> Option<f64> {
        Some(measured.loss_ratio())
    }

    fn observe(series: &IcmpSeries, check: CheckLabels<'_>, measured: &IcmpReport) {
        let labels = check.values();
        series
            .loss_ratio
            .with_label_values(&labels)
            .set(measured.loss_ratio());
        let rtt = series.rtt.with_label_values(&labels);
        for sample in &measured.rtts {
            rtt.observe(sample.as_secs_f64());
        }
        set_or_remove(
            &series.jitter,
            &labels,
            measured.jitter().map(|j| j.as_secs_f64()),
        );
        set_or_remove(
            &series.hop_limit,
            &labels,
            measured.hop_limit.map(f64::from),
        );
    }

    fn targets(&self, failure: Option<&Failure>) -> Vec<Target> {
        vec![Target::by_reason(
            &self.target,
            self.target.to_string(),
            failure,
        )]
    }

    fn family(&self) -> Option<(&Host, Family)> {
        Some((&self.target, self.family))
    }
}

impl IcmpSpec {
    async fn round(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        let deadline = Instant::now() + budget;
        let ip = self
            .target
            .resolve_family(ctx, &self.resolver, self.family)
            .await?[0];
        let scope = resolver::scope_id(ip);
        let socket = ctx.kept.get::<Sockets>().of(ip)?;
        let ident = PingIdentifier(raw::next_ident());
        let first = socket.take_sequences(self.count);
        let spacing = SPACING.min(budget / (2 * u32::from(self.count)));
        let payload = vec![0u8; usize::from(self.size)];
        let pings = (0..self.count).map(|n| {
            let (client, payload) = (&socket.client, &payload);
            async move {
                tokio::time::sleep(spacing * u32::from(n)).await;
                let mut pinger = client.pinger(ip, ident).await;
                pinger.scope_id(scope);
                pinger.timeout(deadline.saturating_duration_since(Instant::now()));
                pinger
                    .ping(PingSequence(first.wrapping_add(n)), payload)
                    .await
            }
        });
        let replies = join_all(pings).await;
        self.judge(ip, replies)
    }

    fn judge(
        &self,
        ip: IpAddr,
        replies: Vec<Result<(IcmpPacket, Duration), SurgeError>>,
    ) -> Result<Outcome, Failure> {
        let mut report = IcmpReport {
            sent: 0,
            received: 0,
            rtts: Vec::new(),
            hop_limit: None,
        };
        let mut worst: Option<Failure> = None;
        for reply in replies {
            match classify(reply) {
                Ok((rtt, hop_limit)) => {
                    report.sent += 1;
                    report.received += 1;
                    report.rtts.push(rtt);
                    report.hop_limit = hop_limit.or(report.hop_limit);
                }
                Err(Some(failure)) => {
                    report.sent += u16::from(failure.reason != Reason::Error);
                    if failure.reason != Reason::Timeout || worst.is_none() {
                        worst = Some(failure);
                    }
                }
                Err(None) => report.sent += 1,
            }
        }
        let loss = report.loss_ratio();
        // One string, written once: every round formats its detail, passing or failing.
        let mut summary = format!(
            "{ip}: {}/{} replies, loss {:.0}%",
            report.received,
            self.count,
            loss * 100.0
        );
        if let Some(rtt) = average_rtt(&report.rtts) {
            let _ = write!(summary, ", avg rtt {:.3} ms", rtt.as_secs_f64() * 1e3);
        }
        if report.received > 0 && loss <= self.max_loss {
            return Ok(Outcome {
                detail: summary,
                measurements: Measurements::Icmp(report),
                resolved: None,
            });
        }
        let (reason, why) = match worst {
            Some(f) if report.received == 0 => (f.reason, format!(" ({})", f.detail)),
            _ if report.received == 0 => (Reason::Timeout, String::new()),
            _ => (
                Reason::Loss,
                format!(" (more than {:.0}% allowed)", self.max_loss * 100.0),
            ),
        };
        Err(Failure {
            reason,
            detail: format!("{summary}{why}"),
            measurements: Measurements::Icmp(report),
            resolved: None,
        })
    }
}

/// A namespace's ICMP sockets, one per family, shared by every `icmp` check there and kept for
/// the executor's life (in its context's [`Kept`](crate::netns::Kept) slot): a round opens none.
/// Each is opened on first use, inside the namespace as every round runs; an attempt that fails
/// is not kept, so the next round tries again and says why.
#[derive(Default)]
struct Sockets {
    v4: Mutex<Option<Shared>>,
    v6: Mutex<Option<Shared>>,
}

/// One socket, the task that hands its replies to the pings waiting for them, and the next
/// sequence number its rounds take.
#[derive(Clone)]
struct Shared {
    client: Client,
    next_sequence: std::sync::Arc<AtomicU16>,
}

impl Sockets {
    fn of(&self, ip: IpAddr) -> Result<Shared, Failure> {
        let (slot, kind) = match ip {
            IpAddr::V4(_) => (&self.v4, ICMP::V4),
            IpAddr::V6(_) => (&self.v6, ICMP::V6),
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = &*slot {
            return Ok(shared.clone());
        }
        let shared = Shared {
            client: open(kind)?,
            next_sequence: Default::default(),
        };
        Ok(slot.insert(shared).clone())
    }
}

impl Shared {
    /// `count` sequence numbers no other round on this socket has in flight. On an unprivileged
    /// DGRAM socket the kernel sets every request's identifier to the socket's own, so surge-ping
    /// matches a reply by its source and sequence alone: fresh numbers keep two checks of one
    /// target apart, and a reply that comes after its round gave up finds no one waiting. On a
    /// raw socket the round's own identifier already keeps them apart.
    fn take_sequences(&self, count: u16) -> u16 {
        self.next_sequence.fetch_add(count, Ordering::Relaxed)
    }
}

/// Opens an ICMP socket: DGRAM first, which needs only net.ipv4.ping_group_range; surge-ping
/// falls back to RAW, which needs CAP_NET_RAW.
fn open(kind: ICMP) -> Result<Client, Failure> {
    Client::new(&Config::builder().kind(kind).build()).map_err(|e| {
        let reason = Reason::of_io(&e);
        let hint = if reason == Reason::PermissionDenied {
            " (allow unprivileged ICMP with net.ipv4.ping_group_range or grant CAP_NET_RAW)"
        } else {
            ""
        };
        let first_line = e.to_string().lines().next().unwrap_or_default().to_owned();
        Failure::new(reason, format!("open an ICMP socket: {first_line}{hint}"))
    })
}

/// `Ok((rtt, hop limit))` for an echo reply; `Err(None)` for a lost request; `Err(Some(_))`
/// when the network answered with an error (only raw sockets receive those) or the request was
/// not sent.
fn classify(
    reply: Result<(IcmpPacket, Duration), SurgeError>,
) -> Result<(Duration, Option<u8>), Option<Failure>> {
    match reply {
        Ok((IcmpPacket::V4(packet), rtt)) => {
            let kind = packet.get_icmp_type();
            if kind == IcmpTypes::EchoReply {
                Ok((rtt, packet.get_ttl()))
            } else {
                Err(Some(Failure::new(
                    Reason::Unreachable,
                    format!("{} answered ICMP type {}", packet.get_source(), kind.0),
                )))
            }
        }
        Ok((IcmpPacket::V6(packet), rtt)) => {
            if packet.get_icmpv6_type() == Icmpv6Types::EchoReply {
                Ok((rtt, None))
            } else {
                Err(Some(Failure::new(
                    Reason::Unreachable,
                    format!(
                        "{} answered ICMPv6 type {}",
                        packet.get_source(),
                        packet.get_icmpv6_type().0
                    ),
                )))
            }
        }
        Err(SurgeError::Timeout { .. }) => Err(None),
        Err(SurgeError::IOError(e)) => {
            Err(Some(Failure::new(Reason::of_io(&e), format!("send: {e}"))))
        }
        Err(e) => Err(Some(Failure::new(Reason::Error, e.to_string()))),
    }
}

/// A gauge that exists only while there is a value: no series beats a made-up one.
fn set_or_remove(gauge: &GaugeVec, labels: &[&str], value: Option<f64>) {
    match value {
        Some(value) => gauge.with_label_values(labels).set(value),
        None => {
            let _ = gauge.remove_label_values(labels);
        }
    }
}

fn average_rtt(rtts: &[Duration]) -> Option<Duration> {
    let n = u32::try_from(rtts.len()).ok().filter(|n| *n > 0)?;
    Some(rtts.iter().sum::<Duration>() / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(count: u16, max_loss: f64) -> IcmpSpec {
        IcmpSpec {
            target: Host::Ip("198.19.10.1".parse().unwrap()),
            count,
            size: 56,
            max_loss,
            resolver: Default::default(),
            family: Default::default(),
        }
    }

    fn lost() -> Result<(IcmpPacket, Duration), SurgeError> {
        Err(SurgeError::Timeout {
            seq: PingSequence(0),
        })
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 19, 10, 1));

    #[test]
    fn all_lost_is_a_timeout_with_full_loss() {
        let failure = spec(3, 1.0)
            .judge(IP, vec![lost(), lost(), lost()])
            .unwrap_err();
        assert_eq!(failure.reason, Reason::Timeout);
        assert!(
            failure.detail.contains("0/3 replies, loss 100%"),
            "{}",
            failure.detail
        );
        match failure.measurements {
            Measurements::Icmp(r) => assert_eq!((r.sent, r.received, r.loss_ratio()), (3, 0, 1.0)),
            other => panic!("expected an icmp report, got {other:?}"),
        }
    }

    #[test]
    fn a_send_error_names_its_cause() {
        let unreachable = Err(SurgeError::IOError(std::io::Error::from_raw_os_error(
            libc::ENETUNREACH,
        )));
        let failure = spec(1, 1.0).judge(IP, vec![unreachable]).unwrap_err();
        assert_eq!(failure.reason, Reason::Unreachable);
        assert!(failure.detail.contains("send:"), "{}", failure.detail);
    }

    fn report(rtts_ms: &[u64]) -> IcmpReport {
        IcmpReport {
            sent: 10,
            received: rtts_ms.len() as u16,
            rtts: rtts_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            hop_limit: None,
        }
    }

    #[test]
    fn jitter_is_the_mean_step_between_neighbouring_replies() {
        assert_eq!(report(&[]).jitter(), None);
        assert_eq!(report(&[10]).jitter(), None, "one reply has no neighbour");
        assert_eq!(report(&[10, 10, 10]).jitter(), Some(Duration::ZERO));
        // |14-10| + |8-14| + |10-8| = 12 over 3 steps
        assert_eq!(
            report(&[10, 14, 8, 10]).jitter(),
            Some(Duration::from_millis(4))
        );
        // one step up and staying there: one step in three, not a spread around the mean
        assert_eq!(
            report(&[10, 10, 40, 40]).jitter(),
            Some(Duration::from_millis(10))
        );
    }

    #[test]
    fn the_hop_limit_comes_from_replies_and_is_absent_without_one() {
        let reply = |ttl: Option<u8>| {
            let mut bytes = vec![0u8; 28];
            bytes[0] = 0x45;
            bytes[3] = 28;
            bytes[8] = ttl.unwrap_or(64);
            bytes[9] = 1;
            bytes[12..16].copy_from_slice(&[198, 19, 10, 1]);
            let decode = |buf: &[u8], kind| Icmpv4Packet::decode(buf, kind, IP4, IP4).unwrap();
            let packet = match ttl {
                Some(_) => decode(&bytes, socket2::Type::RAW),
                // As a DGRAM socket delivers it: the ICMP message without the IP header.
                None => decode(&bytes[20..], socket2::Type::DGRAM),
            };
            Ok((IcmpPacket::V4(packet), Duration::from_millis(3)))
        };
        let passed = spec(3, 1.0)
            .judge(IP, vec![reply(Some(61)), lost(), reply(Some(61))])
            .unwrap();
        let Measurements::Icmp(report) = passed.measurements else {
            panic!("expected an icmp report");
        };
        assert_eq!(report.hop_limit, Some(61));
        let dgram = spec(1, 1.0).judge(IP, vec![reply(None)]).unwrap();
        let Measurements::Icmp(report) = dgram.measurements else {
            panic!("expected an icmp report");
        };
        assert_eq!((report.received, report.hop_limit), (1, None));
        let all_lost = spec(2, 1.0).judge(IP, vec![lost(), lost()]).unwrap_err();
        let Measurements::Icmp(report) = all_lost.measurements else {
            panic!("expected an icmp report");
        };
        assert_eq!((report.hop_limit, report.jitter()), (None, None));
    }

    /// Rounds to several loopback targets at once, twice each, IPv4 and IPv6, from one
    /// namespace: each gets every one of its own replies from one socket per family, so
    /// none took another's (on a DGRAM socket, two rounds to one target differ by sequence
    /// alone). Without ICMP sockets allowed, the failure must say why.
    #[tokio::test]
    async fn concurrent_rounds_share_one_socket_per_family_and_keep_their_replies() {
        let ctx = NetnsContext {
            id: crate::netns::NetnsId::Pod,
            resolv_conf: "/etc/resolv.conf".into(),
            host: None,
            kept: Default::default(),
        };
        let mut targets = vec!["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1"];
        let loopback6 = std::net::UdpSocket::bind("[::1]:0").is_ok();
        if loopback6 {
            targets.extend(["::1", "::1"]);
        }
        let specs: Vec<IcmpSpec> = targets
            .iter()
            .map(|ip| IcmpSpec {
                target: Host::Ip(ip.parse().unwrap()),
                ..spec(5, 0.0)
            })
            .collect();
        let rounds = join_all(specs.iter().map(|s| s.run(&ctx, Duration::from_secs(2)))).await;
        for (target, round) in targets.iter().zip(rounds) {
            let outcome = match round {
                Ok(outcome) => outcome,
                Err(f) if f.reason == Reason::PermissionDenied => {
                    assert!(f.detail.contains("ping_group_range"), "{}", f.detail);
                    return;
                }
                Err(f) => panic!("{target}: {}", f.detail),
            };
            let Measurements::Icmp(report) = outcome.measurements else {
                panic!("expected an icmp report");
            };
            assert_eq!((report.sent, report.received), (5, 5), "{target}");
        }
        let sockets = ctx.kept.get::<Sockets>();
        let v4 = sockets
            .v4
            .lock()
            .unwrap()
            .clone()
            .expect("an IPv4 socket kept");
        assert_eq!(
            v4.take_sequences(0),
            20,
            "four rounds of five on one socket"
        );
        let v6 = sockets.v6.lock().unwrap().clone();
        assert_eq!(v6.map(|s| s.take_sequences(0)), loopback6.then_some(10));
    }

    const IP4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 19, 10, 1);
    use surge_ping::Icmpv4Packet;

    #[test]
    fn count_and_ratio_are_validated() {
        let parse = |s: &str| serde_norway::from_str::<IcmpSpec>(s).map_err(|e| e.to_string());
        assert!(parse("{target: 198.19.10.1, count: 101}")
            .unwrap_err()
            .contains("between 1 and 100"));
        assert!(parse("{target: 198.19.10.1, max_loss: 2}")
            .unwrap_err()
            .contains("ratio"));
        let ok = parse("{target: gateway}").unwrap();
        assert_eq!((ok.count, ok.size, ok.max_loss), (3, 56, 1.0));
    }
}
