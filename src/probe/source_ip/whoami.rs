//! The HTTP whoami client side: asking a reflector over HTTP which source it saw.

use std::net::{IpAddr, SocketAddr};

use serde::de::{self, Deserializer};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use super::{connect, io_failure};
use crate::net::conntrack::Flow;
use crate::probe::target::Host;
use crate::probe::{Failure, Reason};

/// A whoami answer is one address; anything much larger is not one.
const MAX_HTTP_RESPONSE: u64 = 16 * 1024;

pub(super) async fn http_whoami(
    url: &HttpUrl,
    json_field: &str,
    server: SocketAddr,
    deadline: Instant,
) -> Result<(SocketAddr, Flow), Failure> {
    let what = format!("GET {}", url.text);
    let (mut stream, flow) = connect(server, deadline, &what).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hybridprobe/{}\r\nAccept: application/json, text/plain\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION")
    );
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_HTTP_RESPONSE + 1)
            .read_to_end(&mut response)
            .await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = timeout_at(deadline, exchange)
        .await
        .map_err(|_| Failure::new(Reason::Timeout, format!("{what}: no answer")))?
        .map_err(io_failure(what.clone()))?;
    let address = parse_http_response(&response, json_field)
        .map_err(|why| Failure::new(Reason::Error, format!("{what}: {why}")))?;
    // The reflector may not say which port it saw; only the address is compared.
    Ok((SocketAddr::new(address, 0), flow))
}

/// The address in a whoami response: status 200, and a body that is the address (plain text)
/// or a JSON object with it in `json_field`.
pub(crate) fn parse_http_response(response: &[u8], json_field: &str) -> Result<IpAddr, String> {
    if response.len() as u64 > MAX_HTTP_RESPONSE {
        return Err(format!("response is over {MAX_HTTP_RESPONSE} bytes"));
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response has no end of headers")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP status line: {:.80}",
                format!("{status_line:?}")
            )
        })?;
    if status != 200 {
        return Err(format!("status {status}, want 200"));
    }
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body).ok_or("malformed chunked body")?
    } else {
        body.to_vec()
    };
    parse_address_body(&String::from_utf8_lossy(&body), json_field)
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
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
