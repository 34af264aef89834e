//! The HTTP whoami client side: asking a reflector over HTTP which source it saw.

use std::net::{IpAddr, SocketAddr};

use serde::de::{self, Deserializer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::connect;
use crate::net::conntrack::Flow;
use crate::net::http1::{self, HttpError};
use crate::probe::target::Host;
use crate::probe::{Failure, Reason};

/// A whoami answer is one address; anything much larger is not one.
const MAX_BODY: usize = 16 * 1024;

/// Why a whoami exchange named no address.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WhoamiError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A complete response, but not a whoami answer.
    #[error("{0}")]
    Answer(String),
}

pub(super) async fn http_whoami(
    url: &HttpUrl,
    json_field: &str,
    server: SocketAddr,
    deadline: Instant,
) -> Result<(SocketAddr, Flow), Failure> {
    let what = format!("GET {}", url.text);
    let (stream, flow) = connect(server, deadline, &what).await?;
    let address = ask(stream, url, json_field, deadline).await.map_err(|e| {
        let reason = match &e {
            WhoamiError::Http(HttpError::Timeout) => Reason::Timeout,
            WhoamiError::Http(HttpError::Io(io)) => Reason::of_io(io),
            _ => Reason::Error,
        };
        Failure::new(reason, format!("{what}: {e}"))
    })?;
    // The reflector may not say which port it saw; only the address is compared.
    Ok((SocketAddr::new(address, 0), flow))
}

/// Asks the reflector at the other end of `stream` which address it saw: status 200, and a
/// body that is the address (plain text) or a JSON object with it in `json_field`.
pub(crate) async fn ask<S>(
    stream: S,
    url: &HttpUrl,
    json_field: &str,
    deadline: Instant,
) -> Result<IpAddr, WhoamiError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let get = http1::Get {
        authority: &url.authority(),
        path: &url.path,
        accept: "application/json, text/plain",
        user_agent: concat!("hybridprobe/", env!("CARGO_PKG_VERSION")),
    };
    let response = http1::get(stream, &get, MAX_BODY, deadline).await?;
    if response.status != 200 {
        return Err(WhoamiError::Answer(format!(
            "status {}, want 200",
            response.status
        )));
    }
    parse_address_body(&String::from_utf8_lossy(&response.body), json_field)
        .map_err(WhoamiError::Answer)
}

fn parse_address_body(body: &str, json_field: &str) -> Result<IpAddr, String> {
    let body = body.trim();
    let text = if body.starts_with('{') {
        let json: serde_json::Value =
            serde_json::from_str(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
        match json.get(json_field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(format!("JSON field {json_field:?} is not a string")),
            None => return Err(format!("JSON body has no field {json_field:?}")),
        }
    } else {
        body.lines().next().unwrap_or_default().trim().to_owned()
    };
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
        .map_err(|_| format!("{:.80} is not an address", format!("{text:?}")))
}

/// An `http://HOST[:PORT]/PATH` URL. No TLS: reflectors sit on the private path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: Host,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// As written, for messages.
    pub text: String,
}

impl HttpUrl {
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let invalid = |why: &str| format!("{text:?} is not a valid URL ({why})");
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| invalid("only http:// is supported"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(invalid("whitespace in the path"));
        }
        if path.parse::<hyper::http::uri::PathAndQuery>().is_err() {
            return Err(invalid("not a valid request path"));
        }
        let port_of = |text: &str| {
            text.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("bad port"))
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed ["))?;
            match after.strip_prefix(':') {
                Some(port) => (host, port_of(port)?),
                None if after.is_empty() => (host, 80),
                None => return Err(invalid("bad port")),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, port_of(port)?),
                None => (authority, 80),
            }
        };
        let host = Host::parse(host).ok_or_else(|| invalid("bad host"))?;
        Ok(HttpUrl {
            host,
            port,
            path,
            text: text.to_owned(),
        })
    }

    /// The `Host` header.
    pub(super) fn authority(&self) -> String {
        let host = match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            host => host.to_string(),
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HttpUrl::parse(&text).map_err(de::Error::custom)
    }
}
