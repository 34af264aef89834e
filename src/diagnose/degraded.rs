//! A degraded tunnel, read from each check's recent rounds: a share of the packets lost across
//! several checks (`tunnel_lossy`), or round trips well above the same checks' own baseline
//! (`path_slower`). Neither is an outage; loss explains the silent failures it causes.

use std::time::Duration;

use super::observed::{remote, Observed, Pair, Seen};
use super::{named, Code, Diagnosis};
use crate::netns::NetnsId;
use crate::probe::{ProbeKind, Reason};
use crate::results::{median_round_trip, History, Sample};

/// The rounds that count as recent: loss shows within a few, and is forgotten a few after it
/// ends.
const RECENT: usize = 5;
/// Rounds of partial echo loss among the recent ones that make an `icmp` check lossy: one lost
/// echo is noise. A check that has run only once (as in `hybridprobe check`) has only that
/// round to show it.
const LOSSY_ROUNDS: usize = 2;
/// Changes between passing and silent failing among the recent rounds that make any other
/// check lossy: one change is an outage starting or ending, two or more are a path that drops
/// some packets.
const FLIPS: usize = 2;
/// The rounds in which a pass makes a check's failure the loss's: more than [`RECENT`], since
/// under heavy loss a flaky check fails several rounds in a row by chance.
const PASSED_WITHIN: usize = 10;
/// Checks that must show loss or slowness: one alone may be its own target's trouble.
const WITNESSES: usize = 2;

/// The latest rounds that a round-trip jump is read from, all of which must have passed.
const SLOW_ROUNDS: usize = 3;
/// Passing rounds before those that make the baseline.
const BASELINE_ROUNDS: usize = 6;
/// How far above its baseline a check's median round trip must rise, as a factor and in
/// absolute terms (sub-millisecond round trips double without meaning anything).
const SLOWER_FACTOR: u32 = 2;
const SLOWER_BY: Duration = Duration::from_millis(10);

/// Checks across the tunnel that lose a share of their packets: some echoes of a round, or a
/// mix of passing and silent rounds. Witnesses are counted so that one flapping service is one:
/// each ping measures the path from its namespace, while a check that passes and times out by
/// turns from pod and host alike may be its own server's trouble.
pub(super) fn tunnel_lossy(checks: &[Observed]) -> Option<Diagnosis> {
    let mut witnesses: Vec<(&str, Option<NetnsId>)> = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    for check in checks.iter().filter(|c| crosses(c)) {
        let Some(loss) = shows_loss(check.history) else {
            continue;
        };
        let witness = match loss {
            Loss::Echoes(_) => (check.probe.name.as_str(), Some(check.netns)),
            Loss::Flips(_) => (check.probe.name.as_str(), None),
        };
        if !witnesses.contains(&witness) {
            witnesses.push(witness);
        }
        parts.push(format!("{}: {}", check.name(), loss.text()));
    }
    (witnesses.len() >= WITNESSES).then(|| {
        Code::TunnelLossy.with(format!(
            "packets across the tunnel are lost, not all: {}",
            named(parts)
        ))
    })
}

/// How a check shows loss, said for the summary.
#[derive(Debug, Clone, PartialEq)]
enum Loss {
    Echoes(String),
    Flips(String),
}

impl Loss {
    fn text(self) -> String {
        match self {
            Loss::Echoes(text) | Loss::Flips(text) => text,
        }
    }
}

/// While the tunnel is lossy, silence is the loss's: a check failing with a timeout or an
/// unreachable says nothing else (it is no evidence of a blocked pod path, a dead address or a
/// stalled handshake), nor does a failure that comes and goes with the loss (a check that
/// passed within its last [`PASSED_WITHIN`] rounds: a path MTU search whose larger probes happened to be lost
/// reads as a black hole).
pub(super) fn discount_loss<'a>(checks: &[Observed<'a>]) -> Vec<Observed<'a>> {
    checks
        .iter()
        .map(|check| match check.seen {
            Seen::Failing(failure)
                if failure.reason.answered() == Some(false) || passed_recently(check.history) =>
            {
                Observed {
                    seen: Seen::Pending,
                    ..*check
                }
            }
            _ => *check,
        })
        .collect()
}

fn passed_recently(history: &History) -> bool {
    history.last(PASSED_WITHIN).any(|s| s.ok)
}

/// The DNS pairs that still say something while the tunnel is lossy: a timeout, an unreachable
/// or a SERVFAIL (a resolver whose upstream did not answer) is the loss's, so a TCP/53 block, a
/// cluster DNS that does not forward and a silent DNS server are not told from it. An answer
/// (NXDOMAIN, a refused connection) still counts.
pub(super) fn discount_dns(pairs: &mut Vec<Pair>) {
    pairs.retain(|p| {
        !p.failure
            .is_some_and(|r| matches!(r, Reason::Timeout | Reason::Unreachable | Reason::Servfail))
    });
}

/// Checks of an `icmp` or `tcp` kind whose latest round trips rose well above their own
/// earlier ones, as when ExpressRoute fails over to the backup VPN. Other kinds' round trips
/// include the server's work.
pub(super) fn path_slower(checks: &[Observed]) -> Option<Diagnosis> {
    let parts: Vec<String> = checks
        .iter()
        .filter(|c| crosses(c) && matches!(c.probe.kind, ProbeKind::Icmp(_) | ProbeKind::Tcp(_)))
        .filter_map(|c| {
            let (baseline, now) = jump(c.history)?;
            Some(format!(
                "{}: {} -> {}",
                c.name(),
                millis(baseline),
                millis(now)
            ))
        })
        .collect();
    (parts.len() >= WITNESSES).then(|| {
        Code::PathSlower.with(format!(
            "round trips rose well above their own baseline, the path answers: {}",
            named(parts)
        ))
    })
}

/// A check with an on-prem target that has run.
fn crosses(check: &Observed) -> bool {
    !matches!(check.seen, Seen::Pending)
        && check
            .probe
            .kind
            .targets(None)
            .iter()
            .any(|t| remote(&t.host))
}

/// What the recent rounds show of loss, if they show it.
fn shows_loss(history: &History) -> Option<Loss> {
    // Read without collecting: this runs for every round of every check.
    let recent = history.last(RECENT);
    if recent.clone().any(|s| s.loss.is_some()) {
        let partial = || {
            recent
                .clone()
                .filter_map(|s| s.loss.filter(|l| *l > 0.0 && *l < 1.0))
        };
        let lossy = partial().count();
        return (lossy >= LOSSY_ROUNDS.min(recent.len())).then(|| {
            let mean = partial().sum::<f64>() / lossy as f64;
            Loss::Echoes(format!(
                "echo loss {:.0}% in {} of the last {} rounds",
                mean * 100.0,
                lossy,
                recent.len()
            ))
        });
    }
    let answers = || recent.clone().filter_map(|s| passed_or_silent(&s));
    let flips = answers()
        .zip(answers().skip(1))
        .filter(|(a, b)| a != b)
        .count();
    (flips >= FLIPS).then(|| {
        let passed = answers().filter(|ok| *ok).count();
        Loss::Flips(format!(
            "{passed} of the last {} rounds passed, the others timed out",
            recent.len()
        ))
    })
}

/// All the diagnoses read of a check's rounds: how they show loss, how far the round trips
/// rose, whether one passed lately. Histories that read alike diagnose alike, whatever else
/// differs between them (the newest round's time, a round trip that moved a little).
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    loss: Option<Loss>,
    jump: Option<(Duration, Duration)>,
    passed: bool,
}

pub(super) fn recent(history: &History) -> Recent {
    Recent {
        loss: shows_loss(history),
        jump: jump(history),
        passed: passed_recently(history),
    }
}

/// `Some(true)` for a pass, `Some(false)` for a round that got no answer, `None` for any other
/// failure (an answer, or local trouble).
fn passed_or_silent(sample: &Sample) -> Option<bool> {
    if sample.ok {
        return Some(true);
    }
    let reason = Reason::ALL.iter().find(|r| r.as_str() == sample.result)?;
    (reason.answered() == Some(false)).then_some(false)
}

/// The baseline and the latest median round trip, when the latest rose well above the
/// baseline.
fn jump(history: &History) -> Option<(Duration, Duration)> {
    let split = history.len().checked_sub(SLOW_ROUNDS)?;
    let (before, latest) = (history.iter().take(split), history.last(SLOW_ROUNDS));
    if !latest.clone().all(|s| s.ok) || before.clone().filter(|s| s.ok).count() < BASELINE_ROUNDS {
        return None;
    }
    let baseline = median_round_trip(before)?;
    let now = median_round_trip(latest)?;
    (now > baseline * SLOWER_FACTOR && now - baseline >= SLOWER_BY).then_some((baseline, now))
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
