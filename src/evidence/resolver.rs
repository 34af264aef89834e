//! The resolver pieces: the resolv.conf this namespace's applications read, and what the
//! check's name resolves to from here, through the probes' own per-namespace resolver, to the
//! family the check asks for.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{Piece, What};
use crate::netns::NetnsContext;
use crate::probe::resolver::{Family, Resolver};
use crate::probe::target::Host;

/// The most of a resolv.conf a piece holds: nameservers, search and options come first.
const RESOLV_CONF_BYTES: u64 = 2 * 1024;

pub(super) async fn resolv_conf(ctx: &NetnsContext) -> Piece {
    let path = ctx.resolv_conf.display().to_string();
    let source = format!("read {path} (first {RESOLV_CONF_BYTES} bytes)");
    let read = async {
        let file = tokio::fs::File::open(&ctx.resolv_conf).await?;
        let mut bytes = Vec::new();
        file.take(RESOLV_CONF_BYTES).read_to_end(&mut bytes).await?;
        Ok::<_, std::io::Error>(bytes)
    };
    match read.await {
        Ok(bytes) => Piece::text(
            What::ResolvConf,
            ctx.id,
            source,
            String::from_utf8_lossy(&bytes).into_owned(),
        ),
        Err(e) => Piece::unavailable(What::ResolvConf, ctx.id, source, format!("{path}: {e}")),
    }
}

/// What `name` resolved to, asked through `resolver` for the records of `family`; a failed
/// lookup is evidence too. Returns the addresses found.
pub(super) async fn resolved(
    ctx: &NetnsContext,
    name: &str,
    (resolver, family): (&Resolver, Family),
    budget: Duration,
) -> (Piece, Vec<IpAddr>) {
    let source = match resolver {
        Resolver::System => format!("system resolver ({})", ctx.resolv_conf.display()),
        Resolver::Servers(_) => format!("DNS query to {resolver}"),
    };
    let source = match family {
        Family::Ipv4 => format!("{source}, A records (family: ipv4)"),
        Family::Ipv6 => format!("{source}, AAAA records (family: ipv6)"),
        Family::Any | Family::Both => source,
    };
    let lookup = crate::probe::resolver::lookup(name, ctx, resolver, family);
    match tokio::time::timeout(budget, lookup).await {
        Ok(Ok(ips)) => {
            let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
            let text = format!("{name}: {}", list.join(", "));
            (Piece::text(What::Resolved, ctx.id, source, text), ips)
        }
        Ok(Err(failure)) => (
            Piece::text(What::Resolved, ctx.id, source, failure.detail),
            Vec::new(),
        ),
        Err(_) => {
            let text = format!(
                "resolve {name}: no answer within {}",
                humantime::format_duration(budget)
            );
            (
                Piece::text(What::Resolved, ctx.id, source, text),
                Vec::new(),
            )
        }
    }
}

/// The address the other pieces aim at: the target itself, the namespace's gateway of
/// `family`, or the first address of `family` its name resolves to here.
pub(super) async fn address(
    ctx: &NetnsContext,
    host: &Host,
    family: Family,
    budget: Duration,
) -> Result<IpAddr, String> {
    let resolve = host.resolve_family(ctx, &Resolver::System, family);
    match tokio::time::timeout(budget, resolve).await {
        Ok(Ok(ips)) => ips
            .first()
            .copied()
            .ok_or_else(|| format!("{host} resolved to no address")),
        Ok(Err(failure)) => Err(failure.detail),
        Err(_) => Err(format!(
            "resolving {host} took longer than {}",
            humantime::format_duration(budget)
        )),
    }
}
