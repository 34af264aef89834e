//! `POST /checks/<name>/run`: the one handler that acts, running a configured check now.
//!
//! It is a write on an unauthenticated port, so it stays small: it takes the probe's name and
//! at most a namespace, refuses anything else the request carries, and leaves the switch, the
//! limit and the running to the agent's [`OnDemand`].

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::text;
use crate::agent::on_demand::{OnDemand, Refusal};
use crate::netns::NetnsId;

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
    let netns = match namespace(query.as_deref()) {
        Ok(netns) => netns,
        Err(why) => return text(StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    match on_demand.run(&name, netns).await {
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

/// The one parameter there is, `netns=pod|host`; any other is refused rather than ignored, so
/// a caller never believes it changed a target, port or setting.
fn namespace(query: Option<&str>) -> Result<Option<NetnsId>, String> {
    let mut netns = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "netns" {
            return Err(
                "the only query parameter is netns (pod or host); a check runs as configured"
                    .into(),
            );
        }
        if netns.is_some() {
            return Err("netns is given more than once".into());
        }
        netns = Some(match value {
            "pod" => NetnsId::Pod,
            "host" => NetnsId::Host,
            _ => return Err("netns must be pod or host".into()),
        });
    }
    Ok(netns)
}

fn refused(refusal: &Refusal) -> Response {
    let why = format!("{refusal}\n");
    match refusal {
        Refusal::Disabled => text(StatusCode::FORBIDDEN, why),
        Refusal::UnknownProbe | Refusal::NotInNamespace { .. } => text(StatusCode::NOT_FOUND, why),
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
    fn only_netns_is_accepted_and_only_once() {
        assert_eq!(namespace(None), Ok(None));
        assert_eq!(namespace(Some("")), Ok(None));
        assert_eq!(namespace(Some("netns=pod")), Ok(Some(NetnsId::Pod)));
        assert_eq!(namespace(Some("netns=host")), Ok(Some(NetnsId::Host)));
        for bad in [
            "netns=node",
            "netns=",
            "netns",
            "target=198.18.0.1",
            "netns=pod&port=22",
            "netns=pod&netns=host",
            "netns=POD",
        ] {
            assert!(namespace(Some(bad)).is_err(), "{bad} was accepted");
        }
    }
}
