//! `POST /checks/<name>/run`: the one handler that acts, running a configured check now.
//!
//! It is a write on an unauthenticated port, so it stays small: it takes the probe's name and
//! at most a namespace and a family, refuses anything else the request carries, and leaves the switch, the
//! limit and the running to the agent's [`OnDemand`].

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::text;
use crate::agent::on_demand::{OnDemand, Only, Refusal};
use crate::netns::NetnsId;
use crate::probe::resolver::Family;

/// Runs the probe `name` now and answers with its rounds and its scheduled standing (200,
/// whether the rounds passed or not), or says why it did not run.
pub async fn run_check(
    State(on_demand): State<Arc<OnDemand>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if carries_body(&headers) {
        return text(
            StatusCode::BAD_REQUEST,
            "this endpoint takes no body: it runs a configured check as configured\n",
        );
    }
    let only = match only(query.as_deref()) {
        Ok(only) => only,
        Err(why) => return text(StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    match on_demand.run(&name, only).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(refusal) => refused(&refusal),
    }
}

/// Told from the headers: the body itself is never read, so it costs nothing (see
/// `server.rs`), like every other route's.
fn carries_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0");
    length || headers.contains_key(header::TRANSFER_ENCODING)
}

/// The parameters there are, `netns=pod|host` and `family=ipv4|ipv6` (the checks of a probe
/// split by `family: both`), each at most once; any other is refused rather than ignored, so a
/// caller never believes it changed a target, port or setting.
fn only(query: Option<&str>) -> Result<Only, String> {
    let mut only = Only::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "netns" => set(&mut only.netns, key, netns(value))?,
            "family" => set(&mut only.family, key, family(value))?,
            _ => {
                return Err(
                    "the query parameters are netns (pod or host) and family (ipv4 or \
                     ipv6); a check runs as configured"
                        .into(),
                )
            }
        }
    }
    Ok(only)
}

/// Fills a parameter's slot once.
fn set<T>(slot: &mut Option<T>, key: &str, value: Result<T, String>) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{key} is given more than once"));
    }
    *slot = Some(value?);
    Ok(())
}

fn netns(value: &str) -> Result<NetnsId, String> {
    match value {
        "pod" => Ok(NetnsId::Pod),
        "host" => Ok(NetnsId::Host),
        _ => Err("netns must be pod or host".into()),
    }
}

fn family(value: &str) -> Result<Family, String> {
    Family::SPLIT
        .into_iter()
        .find(|f| f.as_str() == value)
        .ok_or_else(|| "family must be ipv4 or ipv6".into())
}

fn refused(refusal: &Refusal) -> Response {
    let why = format!("{refusal}\n");
    match refusal {
        Refusal::Disabled => text(StatusCode::FORBIDDEN, why),
        Refusal::UnknownProbe | Refusal::NotInNamespace { .. } | Refusal::NotSplit { .. } => {
            text(StatusCode::NOT_FOUND, why)
        }
        Refusal::RateLimited { retry_after, .. } => {
            let mut response = text(StatusCode::TOO_MANY_REQUESTS, why);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after.as_secs().into());
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_netns_and_family_are_accepted_and_each_only_once() {
        let pod = Some(NetnsId::Pod);
        let only_ = |netns, family| Ok(Only { netns, family });
        assert_eq!(only(None), only_(None, None));
        assert_eq!(only(Some("")), only_(None, None));
        assert_eq!(only(Some("netns=pod")), only_(pod, None));
        assert_eq!(only(Some("netns=host")), only_(Some(NetnsId::Host), None));
        assert_eq!(
            only(Some("family=ipv6&netns=pod")),
            only_(pod, Some(Family::Ipv6))
        );
        assert_eq!(only(Some("family=ipv4")), only_(None, Some(Family::Ipv4)));
        for bad in [
            "netns=node",
            "netns=",
            "netns",
            "target=198.18.0.1",
            "netns=pod&port=22",
            "netns=pod&netns=host",
            "netns=POD",
            "family=both",
            "family=any",
            "family=ipv6&family=ipv4",
        ] {
            assert!(only(Some(bad)).is_err(), "{bad} was accepted");
        }
    }
}
