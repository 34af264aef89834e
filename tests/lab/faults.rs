//! Faults injected with nftables, all in the `hplab` table of the namespace concerned.

use super::{check, run, Host, Lab, NFT_TABLE};

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
        let rules = if on {
            format!(
                "add rule inet {NFT_TABLE} tunnel_drop oifname \"vpn\" drop\n\
                 add rule inet {NFT_TABLE} tunnel_drop iifname \"vpn\" drop\n"
            )
        } else {
            String::new()
        };
        // Declaring the chain is a no-op when it exists; flushing it makes the call idempotent.
        let ruleset = format!(
            "table inet {NFT_TABLE} {{\n\
             \x20 chain tunnel_drop {{\n\
             \x20   type filter hook forward priority 0; policy accept;\n\
             \x20 }}\n\
             }}\n\
             flush chain inet {NFT_TABLE} tunnel_drop\n\
             {rules}"
        );
        for h in [Host::VnetGw, Host::OnpremGw] {
            self.nft(h, &ruleset);
        }
    }
}
