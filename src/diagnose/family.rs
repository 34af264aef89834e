//! `onprem_family_unreachable`: one address family crosses the tunnel, the other does not.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::observed::{only_family, Family, Reach};
use super::{by_target, namespaces, Code, Diagnosis, Observed};

/// Silent on-prem addresses of the family it takes: one silent host while the other family
/// answers is that host's trouble (`onprem_service_down`), not the path's.
const SILENT_ADDRESSES: usize = 2;

/// The family over which no on-prem target answers from any namespace, at two addresses or
/// more, while targets of the other family answer; with its diagnosis.
pub(super) fn onprem_family_unreachable(reach: &[Reach]) -> Option<(Family, Diagnosis)> {
    [Family::Ipv6, Family::Ipv4].into_iter().find_map(|down| {
        let over = |family: Family| reach.iter().filter(move |r| r.family == Some(family));
        let addresses: BTreeSet<IpAddr> = over(down).filter_map(|r| r.address).collect();
        let silent = over(down).all(|r| !r.answered) && addresses.len() >= SILENT_ADDRESSES;
        let mut answers = over(down.other()).filter(|r| r.answered).peekable();
        if !silent || answers.peek().is_none() {
            return None;
        }
        let up = down.other();
        let summary = format!(
            "{down} across the tunnel is down while {up} works: no {down} on-prem target \
             answers from {}: {}; over {up} these answer: {}",
            namespaces(over(down).map(|r| r.netns)),
            by_target(over(down)),
            by_target(answers),
        );
        Some((down, Code::OnpremFamilyUnreachable.with(summary)))
    })
}

/// The checks left once `down`'s evidence is set aside: those that asked over it alone go.
pub(super) fn without<'a>(down: Family, checks: &[Observed<'a>]) -> Vec<Observed<'a>> {
    checks
        .iter()
        .copied()
        .filter(|check| !only_family(check, down))
        .collect()
}
