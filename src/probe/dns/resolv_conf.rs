//! The resolv.conf parser: what a namespace's resolv.conf tells applications, as glibc reads it.

use std::net::IpAddr;
use std::path::Path;

/// What a namespace's resolv.conf tells applications, as glibc reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    /// From the last `search` or `domain` line.
    pub search: Vec<String>,
    pub ndots: usize,
}

impl ResolvConf {
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A link-local scope (`fe80::1%eth0`) cannot be carried over; the address
                    // is still worth asking.
                    let ip: Option<IpAddr> =
                        words.next().and_then(|w| w.split('%').next()?.parse().ok());
                    conf.nameservers.extend(ip);
                }
                Some("search" | "domain") => {
                    conf.search = words
                        .take_while(|w| !w.starts_with(['#', ';']))
                        .map(str::to_owned)
                        .collect();
                }
                Some("options") => {
                    for option in words {
                        if let Some(n) = option.strip_prefix("ndots:") {
                            conf.ndots = n.parse::<usize>().map_or(conf.ndots, |n| n.min(15));
                        }
                    }
                }
                _ => {}
            }
        }
        conf
    }

    pub async fn read(path: &Path) -> Result<ResolvConf, String> {
        tokio::fs::read_to_string(path)
            .await
            .map(|text| ResolvConf::parse(&text))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}
