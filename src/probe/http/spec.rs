//! The `http:` config: the URL, the method, what counts as a good answer, TLS, pinning and the
//! proxy.

use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::proxy::{NoProxy, Proxy};
use crate::probe::resolver::{Family, Resolver};
use crate::probe::target::Host;
use crate::probe::tls::TlsSpec;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawSpec")]
pub struct HttpSpec {
    pub url: Url,
    pub method: Method,
    pub body: Option<String>,
    pub valid_status: StatusRanges,
    pub body_regex: Option<BodyRegex>,
    pub tls: TlsSpec,
    pub resolve_to: Option<IpAddr>,
    /// Who resolves the URL's host name: `system` (the namespace's resolv.conf) or servers.
    pub resolver: Resolver,
    /// Which addresses of the URL's host (or the proxy's) are used: `any`, `ipv4`, `ipv6`,
    /// or `both`, a check each.
    pub family: Family,
    pub max_redirects: u8,
    /// The forward proxy, with its `no_proxy` list.
    pub proxy: Option<Proxy>,
}

/// The most redirects a probe may follow.
pub const MAX_REDIRECTS: u8 = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    url: Url,
    #[serde(default)]
    method: Method,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    valid_status: StatusRanges,
    #[serde(default)]
    body_regex: Option<BodyRegex>,
    #[serde(default)]
    tls: Option<TlsSpec>,
    #[serde(default)]
    resolve_to: Option<IpAddr>,
    #[serde(default)]
    resolver: Resolver,
    #[serde(default)]
    family: Family,
    #[serde(default)]
    max_redirects: u8,
    #[serde(default)]
    proxy: Option<Proxy>,
    #[serde(default)]
    no_proxy: Option<Vec<NoProxy>>,
}

impl TryFrom<RawSpec> for HttpSpec {
    type Error = String;

    fn try_from(raw: RawSpec) -> Result<Self, String> {
        if raw.body.is_some() && raw.method != Method::Post {
            return Err("body: only a POST sends a body".into());
        }
        if raw.max_redirects > MAX_REDIRECTS {
            return Err(format!("max_redirects: at most {MAX_REDIRECTS}"));
        }
        if raw.tls.is_some() && !raw.url.https {
            return Err("tls: only for an https:// url".into());
        }
        if raw.body_regex.is_some() && raw.method == Method::Head {
            return Err("body_regex: a HEAD response has no body".into());
        }
        if let Some(ip) = raw.resolve_to.filter(|_| raw.family == Family::Both) {
            return Err(format!(
                "resolve_to: {ip} pins one address, but family: both probes one of each family; \
                 leave one of them out"
            ));
        }
        if let Some(ip) = raw.resolve_to.filter(|ip| !raw.family.admits(*ip)) {
            return Err(format!(
                "resolve_to: {ip} is not an address of family {}",
                raw.family
            ));
        }
        if let Some(tls) = &raw.tls {
            tls.validate()?;
        }
        let proxy = match (raw.proxy, raw.no_proxy) {
            (None, Some(_)) => return Err("no_proxy: only with a proxy".into()),
            (proxy, no_proxy) => proxy.map(|proxy| Proxy {
                no_proxy: no_proxy.unwrap_or_default(),
                ..proxy
            }),
        };
        Ok(HttpSpec {
            url: raw.url,
            method: raw.method,
            body: raw.body,
            valid_status: raw.valid_status,
            body_regex: raw.body_regex,
            tls: raw.tls.unwrap_or_default(),
            resolve_to: raw.resolve_to,
            resolver: raw.resolver,
            family: raw.family,
            max_redirects: raw.max_redirects,
            proxy,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Head,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
        }
    }
}

/// An `http://` or `https://` URL: its host is resolved in the probe's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: Host,
    pub port: u16,
    /// `/healthz?x=1`; `/` when the URL has no path.
    pub path_and_query: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let uri: hyper::Uri = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{text:?}: the scheme must be http or https")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{text:?}: no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "{text:?}: credentials in the URL are not supported"
            ));
        }
        let host_text = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let host = match Host::parse(host_text) {
            Some(Host::Gateway) | None => {
                return Err(format!("{text:?}: {host_text:?} is not a host"))
            }
            Some(host) => host,
        };
        let port = match authority.port_u16() {
            Some(0) => return Err(format!("{text:?}: port 0")),
            Some(port) => port,
            None if https => 443,
            None => 80,
        };
        let path_and_query = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_owned();
        Ok(Url {
            https,
            host,
            port,
            path_and_query,
        })
    }

    /// `host[:port]` as the Host header and the diagnoses say it, the port only when not the
    /// scheme's default.
    pub fn authority(&self) -> String {
        Authority(self).to_string()
    }

    /// Where a `Location` header leads from here: an absolute URL or an absolute path.
    pub fn join(&self, location: &str) -> Option<Url> {
        if location.starts_with('/') && !location.starts_with("//") {
            return Some(Url {
                path_and_query: location.to_owned(),
                ..self.clone()
            });
        }
        Url::parse(location).ok()
    }
}

/// A URL's `host[:port]`, written straight into whatever formats it: a round writes its URL
/// into its detail, and an intermediate string per round is an allocation for nothing.
struct Authority<'a>(&'a Url);

impl fmt::Display for Authority<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        match &url.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            host => write!(f, "{host}")?,
        }
        if url.port == if url.https { 443 } else { 80 } {
            Ok(())
        } else {
            write!(f, ":{}", url.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", Authority(self), self.path_and_query)
    }
}

impl<'de> Deserialize<'de> for Url {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Url::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// Status codes that pass: `2xx,301-304`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRanges(Vec<(u16, u16)>);

impl Default for StatusRanges {
    fn default() -> Self {
        StatusRanges(vec![(200, 299)])
    }
}

impl StatusRanges {
    pub fn parse(text: &str) -> Result<StatusRanges, String> {
        let code = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| format!("{s:?} is not a status code (100 to 599)"))
        };
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            let range = if let Some(class) = part.strip_suffix("xx") {
                let class = class
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (1..=5).contains(c))
                    .ok_or_else(|| format!("{part:?} is not a status class (1xx to 5xx)"))?;
                (class * 100, class * 100 + 99)
            } else if let Some((low, high)) = part.split_once('-') {
                let (low, high) = (code(low)?, code(high)?);
                if low > high {
                    return Err(format!("{part:?}: the range is empty"));
                }
                (low, high)
            } else {
                let c = code(part)?;
                (c, c)
            };
            ranges.push(range);
        }
        Ok(StatusRanges(ranges))
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&status))
    }
}

impl fmt::Display for StatusRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(low, high)| match (low, high) {
                (l, h) if l == h => l.to_string(),
                (l, h) if l % 100 == 0 && *h == l + 99 => format!("{}xx", l / 100),
                (l, h) => format!("{l}-{h}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl<'de> Deserialize<'de> for StatusRanges {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StatusRanges::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// A compiled `body_regex`, compared by its text.
#[derive(Debug, Clone)]
pub struct BodyRegex(regex::bytes::Regex);

impl BodyRegex {
    pub fn is_match(&self, body: &[u8]) -> bool {
        self.0.is_match(body)
    }
}

impl PartialEq for BodyRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl fmt::Display for BodyRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for BodyRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        regex::bytes::RegexBuilder::new(&text)
            .size_limit(1 << 20)
            .build()
            .map(BodyRegex)
            .map_err(|e| de::Error::custom(format!("body_regex: {e}")))
    }
}
