//! Faults injected with nftables, all in the `hplab` table of the namespace concerned (some
//! matching one address family only), one injected with a route and one with a link's MTU.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{check, run, Host, Lab, NFT_TABLE, ONPREM_NET, ONPREM_NET6, POD_IP};

impl Lab {
    /// Loads `ruleset` with `nft -f -` in the namespace; panics with nft's error otherwise.
    pub fn nft(&self, h: Host, ruleset: &str) {
        let out = run(self.ns_command(h, "nft", &["-f", "-"]), Some(ruleset));
        check(&out, &format!("nft -f - <<'EOF'\n{ruleset}\nEOF\n"), h);
    }

    /// A dead VPN: both gateways silently drop everything forwarded into or out of the tunnel,
    /// so connections time out instead of being refused. Idempotent either way.
    ///
    /// The gateway's MTU check runs before the forward hook, so an oversized DF packet still gets
    /// "frag needed" from vnetgw while the tunnel is down, as a real gateway would send.
    pub fn tunnel_drop(&self, on: bool) {
        self.tunnel_drop_matching("tunnel_drop", "", on);
    }

    /// The tunnel carries IPv4 only: both gateways drop every IPv6 packet forwarded into or out
    /// of it, as a VPN gateway without IPv6 traffic selectors or a UDR missing the IPv6 prefix
    /// does, while IPv4 passes. Packet Too Big still comes back, like frag-needed in
    /// [`Lab::tunnel_drop`]. Idempotent either way.
    pub fn tunnel_drop_ip6(&self, on: bool) {
        self.tunnel_drop_matching("tunnel_drop_ip6", "meta nfproto ipv6 ", on);
    }

    /// The reverse of [`Lab::tunnel_drop_ip6`]: IPv4 across the tunnel is dropped, IPv6 passes.
    pub fn tunnel_drop_ip4(&self, on: bool) {
        self.tunnel_drop_matching("tunnel_drop_ip4", "meta nfproto ipv4 ", on);
    }

    /// Both gateways drop what `matching` (an nft match, empty for everything) selects among
    /// the packets forwarded into or out of the tunnel, in their chain `chain`.
    fn tunnel_drop_matching(&self, chain: &str, matching: &str, on: bool) {
        let rules = [
            format!("{matching}oifname \"vpn\" drop"),
            format!("{matching}iifname \"vpn\" drop"),
        ];
        let rules: Vec<&str> = if on {
            rules.iter().map(String::as_str).collect()
        } else {
            Vec::new()
        };
        for h in [Host::VnetGw, Host::OnpremGw] {
            self.nft_chain(h, chain, "forward", &rules);
        }
    }

    /// A lossy tunnel: the VNET gateway drops about a third of what it forwards into the tunnel
    /// and a third of what comes out of it, at random, as a saturated gateway or a flaky ISP
    /// link does. Idempotent either way.
    pub fn tunnel_loss(&self, on: bool) {
        let rules: &[&str] = if on {
            &[
                "oifname \"vpn\" numgen random mod 3 == 0 drop",
                "iifname \"vpn\" numgen random mod 3 == 0 drop",
            ]
        } else {
            &[]
        };
        self.nft_chain(Host::VnetGw, "tunnel_loss", "forward", rules);
    }

    /// A PMTU black hole: the VNET gateway's "fragmentation needed" never leaves it, as where an
    /// NSG or firewall filters ICMP, so oversized don't-fragment packets vanish silently.
    pub fn frag_needed_drop(&self, on: bool) {
        let rules: &[&str] = if on {
            &["icmp type destination-unreachable icmp code frag-needed drop"]
        } else {
            &[]
        };
        self.nft_chain(Host::VnetGw, "frag_needed_drop", "output", rules);
    }

    /// TCP/53 dropped across the tunnel, as a firewall that allows only UDP DNS does: answers
    /// too large for UDP then fail.
    pub fn dns_tcp_drop(&self, on: bool) {
        let rules: &[&str] = if on { &["tcp dport 53 drop"] } else { &[] };
        self.nft_chain(Host::VnetGw, "dns_tcp_drop", "forward", rules);
    }

    /// The node drops what the pod sends on-prem while its own traffic passes, as an NSG rule or
    /// IPsec traffic selector that leaves out the pod range does.
    pub fn pod_forward_drop(&self, on: bool) {
        let rule = format!("ip saddr {POD_IP} ip daddr {ONPREM_NET} drop");
        let rules: &[&str] = if on { &[rule.as_str()] } else { &[] };
        self.nft_chain(Host::Node, "pod_forward_drop", "forward", rules);
    }

    /// The on-prem host's own firewall rejects TCP to `port` with a reset: that service stops
    /// answering while everything else on the host does.
    pub fn onprem_port_reject(&self, port: u16, on: bool) {
        let rule = format!("tcp dport {port} reject with tcp reset");
        let rules: &[&str] = if on { &[rule.as_str()] } else { &[] };
        self.nft_chain(Host::Onprem, "onprem_port_reject", "input", rules);
    }

    /// The on-prem host's own firewall drops TCP to `port` without a word: that service goes
    /// silent while everything else on the host answers.
    pub fn onprem_port_drop(&self, port: u16, on: bool) {
        let rule = format!("tcp dport {port} drop");
        let rules: &[&str] = if on { &[rule.as_str()] } else { &[] };
        self.nft_chain(Host::Onprem, "onprem_port_drop", "input", rules);
    }

    /// Segmentation at the node: what the pod sends to on-prem TCP `port` is dropped, as an
    /// NSG rule that keeps pods out of a management range does. Off, the rule is gone.
    pub fn pod_port_drop(&self, port: u16, on: bool) {
        let rule = format!("ip saddr {POD_IP} ip daddr {ONPREM_NET} tcp dport {port} drop");
        let rules: &[&str] = if on { &[rule.as_str()] } else { &[] };
        self.nft_chain(Host::Node, "pod_port_drop", "forward", rules);
    }

    /// What reaches the pod's TCP `port` is dropped silently, as by a network policy that does
    /// not admit the client: a connection there times out. Off, the rule is gone.
    pub fn pod_input_drop(&self, port: u16, on: bool) {
        let rule = format!("tcp dport {port} drop");
        let rules: &[&str] = if on { &[rule.as_str()] } else { &[] };
        self.nft_chain(Host::Pod, "pod_input_drop", "input", rules);
    }

    /// The VNET gateway's side of the tunnel carries `mtu`-byte packets at most, and says so
    /// with fragmentation-needed: a narrower path, no black hole. [`super::TUNNEL_MTU`]
    /// restores it.
    pub fn vnet_tunnel_mtu(&self, mtu: u32) {
        let mtu = mtu.to_string();
        self.must(Host::VnetGw, "ip", &["link", "set", "vpn", "mtu", &mtu]);
    }

    /// A wrong route on the node: on-prem goes via `via` (a gateway that is not there) instead of
    /// the VNET gateway; `None` removes it again.
    pub fn node_onprem_route(&self, via: Option<Ipv4Addr>) {
        self.node_route(ONPREM_NET, via.map(IpAddr::from));
    }

    /// [`Lab::node_onprem_route`] for the on-prem IPv6 prefix; IPv4 keeps its route.
    pub fn node_onprem_route6(&self, via: Option<Ipv6Addr>) {
        self.node_route(ONPREM_NET6, via.map(IpAddr::from));
    }

    /// Routes `net` on the node via `via`, or removes that route again for `None`.
    fn node_route(&self, net: &str, via: Option<IpAddr>) {
        match via {
            Some(via) => {
                let via = via.to_string();
                self.must(Host::Node, "ip", &["route", "replace", net, "via", &via]);
            }
            None => {
                self.must(Host::Node, "ip", &["route", "del", net]);
            }
        }
    }

    /// Makes `rules` the whole content of filter chain `chain` on `hook` in the lab's table.
    /// Declaring the chain is a no-op when it exists; flushing it makes every call idempotent.
    pub(super) fn nft_chain(&self, h: Host, chain: &str, hook: &str, rules: &[&str]) {
        let mut ruleset = format!(
            "table inet {NFT_TABLE} {{\n\
             \x20 chain {chain} {{\n\
             \x20   type filter hook {hook} priority 0; policy accept;\n\
             \x20 }}\n\
             }}\n\
             flush chain inet {NFT_TABLE} {chain}\n"
        );
        for rule in rules {
            ruleset.push_str(&format!("add rule inet {NFT_TABLE} {chain} {rule}\n"));
        }
        self.nft(h, &ruleset);
    }
}
