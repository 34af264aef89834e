//! The `http` kind's explicit forward proxy settings: `proxy: http://HOST:PORT` and the
//! `no_proxy` list of hosts that bypass it, both checked once when the config is read.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::probe::target::Host;

/// An `http://HOST:PORT` forward proxy and the hosts it is not used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: Host,
    pub port: u16,
    pub no_proxy: Vec<NoProxy>,
}

impl Proxy {
    /// `proxy:` as written, without `no_proxy`.
    pub fn parse(text: &str) -> Result<Proxy, String> {
        let bad = |why: &str| format!("proxy: {text:?}: {why}");
        let uri: hyper::Uri = text.parse().map_err(|e| bad(&format!("{e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// proxies are supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the proxy URL are not supported"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(bad("a proxy URL has no path or query"));
        }
        let host_text = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let host = match Host::parse(host_text) {
            Some(Host::Gateway) | None => return Err(bad("not a host")),
            Some(host) => host,
        };
        let port = match authority.port_u16() {
            Some(0) => return Err(bad("port 0")),
            Some(port) => port,
            None => return Err(bad("the port is required (http://HOST:PORT)")),
        };
        Ok(Proxy {
            host,
            port,
            no_proxy: Vec::new(),
        })
    }

    /// Whether a request to `host` (connecting to `pinned` when `resolve_to` applies) goes
    /// direct: a `no_proxy` entry names the host, a domain above it, or its address.
    pub fn bypassed_by(&self, host: &Host, pinned: Option<IpAddr>) -> bool {
        self.no_proxy
            .iter()
            .any(|entry| entry.matches(host) || pinned.is_some_and(|ip| entry.covers(ip)))
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

/// One `no_proxy` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoProxy {
    /// `db.corp.example`: that host only.
    Name(String),
    /// `.corp.example`: every name under the domain, not the domain itself.
    Suffix(String),
    /// `198.19.10.5` or `198.19.0.0/16`: a URL host or `resolve_to` address inside it.
    Net(IpNet),
}

impl NoProxy {
    pub fn parse(text: &str) -> Result<NoProxy, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(NoProxy::Net(net.trunc()));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(NoProxy::Net(IpNet::from(ip)));
        }
        let bad = || format!("no_proxy: {text:?} is not a host name, .domain, address or CIDR");
        let (suffix, name) = match text.strip_prefix('.') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        match Host::parse(name) {
            Some(Host::Name(name)) => {
                let name = name.to_ascii_lowercase();
                Ok(if suffix {
                    NoProxy::Suffix(name)
                } else {
                    NoProxy::Name(name)
                })
            }
            _ => Err(bad()),
        }
    }

    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (NoProxy::Name(entry), Host::Name(name)) => name.eq_ignore_ascii_case(entry),
            (NoProxy::Suffix(domain), Host::Name(name)) => {
                let name = name.to_ascii_lowercase();
                name.strip_suffix(domain.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
            }
            (NoProxy::Net(_), Host::Ip(ip)) => self.covers(*ip),
            _ => false,
        }
    }

    fn covers(&self, ip: IpAddr) -> bool {
        matches!(self, NoProxy::Net(net) if net.contains(&ip))
    }
}

impl<'de> Deserialize<'de> for Proxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Proxy::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for NoProxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        NoProxy::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(no_proxy: &[&str]) -> Proxy {
        Proxy {
            no_proxy: no_proxy
                .iter()
                .map(|e| NoProxy::parse(e).unwrap())
                .collect(),
            ..Proxy::parse("http://proxy.corp.example:3128").unwrap()
        }
    }

    fn bypassed(proxy: &Proxy, url: &str, pinned: Option<&str>) -> bool {
        let url = crate::probe::http::Url::parse(url).unwrap();
        proxy.bypassed_by(&url.host, pinned.map(|ip| ip.parse().unwrap()))
    }

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("http://198.18.1.1:3128").unwrap();
        assert_eq!((p.to_string(), p.port), ("198.18.1.1:3128".into(), 3128));
        assert_eq!(
            Proxy::parse("http://[2001:2::1]:8080/")
                .unwrap()
                .to_string(),
            "[2001:2::1]:8080"
        );
        for (bad, why) in [
            ("https://proxy.corp.example:3128", "only http://"),
            ("socks5://proxy.corp.example:1080", "only http://"),
            ("http://user:pw@proxy.corp.example:3128", "credentials"),
            ("http://proxy.corp.example", "port is required"),
            ("http://proxy.corp.example:0", "port 0"),
            ("http://proxy.corp.example:3128/x", "no path"),
            ("http://gateway:3128", "not a host"),
            ("proxy.corp.example:3128", "only http://"),
        ] {
            let err = Proxy::parse(bad).unwrap_err();
            assert!(
                err.starts_with("proxy: ") && err.contains(why),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn names_match_exactly_and_domains_match_below() {
        let p = proxy(&["db.corp.example", ".lab.corp.example"]);
        assert!(bypassed(&p, "https://db.corp.example/", None));
        assert!(bypassed(&p, "https://DB.Corp.Example/", None));
        assert!(!bypassed(&p, "https://x.db.corp.example/", None));
        assert!(bypassed(&p, "https://api.lab.corp.example/", None));
        assert!(bypassed(&p, "https://a.b.lab.corp.example/", None));
        assert!(!bypassed(&p, "https://lab.corp.example/", None));
        assert!(!bypassed(&p, "https://xlab.corp.example/", None));
        assert!(!bypassed(&p, "https://api.corp.example/", None));
    }

    #[test]
    fn addresses_match_the_url_host_or_the_pinned_address() {
        let p = proxy(&["198.19.0.0/16", "2001:2::5", "198.18.1.9/24"]);
        assert!(bypassed(&p, "http://198.19.10.1/", None));
        assert!(bypassed(&p, "http://[2001:2::5]/", None));
        assert!(!bypassed(&p, "http://[2001:2::6]/", None));
        assert!(
            bypassed(&p, "http://198.18.1.200/", None),
            "the net, not the host bits"
        );
        assert!(!bypassed(&p, "http://198.20.0.1/", None));
        // A name is never resolved to be matched; its pinned address is.
        assert!(!bypassed(&p, "https://api.corp.example/", None));
        assert!(bypassed(
            &p,
            "https://api.corp.example/",
            Some("198.19.10.5")
        ));
        assert!(!bypassed(
            &p,
            "https://api.corp.example/",
            Some("198.20.0.1")
        ));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["", ".", "bad_name", "198.19.0.0/33", "*", "a..b"] {
            let err = NoProxy::parse(bad).unwrap_err();
            assert!(err.starts_with("no_proxy: "), "{bad}: {err}");
        }
    }
}
