//! Whether this machine can host the lab: privileges and tools, checked before touching anything.

use std::path::Path;

/// Tools the lab itself runs; tests that spawn servers check their own.
const TOOLS: &[&str] = &["ip", "nft", "curl", "ping", "kill", "sysctl", "bash"];

/// Creating namespaces and links needs CAP_NET_ADMIN; `ip netns exec` and `setns` need
/// CAP_SYS_ADMIN. Checking capabilities rather than uid catches unprivileged "root" containers.
const CAPS: &[(u32, &str)] = &[(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN")];

pub(super) fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

pub(super) fn check() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or("no CapEff line in /proc/self/status")?;
    let missing: Vec<&str> = CAPS
        .iter()
        .filter(|(bit, _)| eff & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(format!("it needs root ({} missing)", missing.join(", ")));
    }
    if !Path::new("/proc/sys/net/ipv6").exists() {
        return Err("the kernel has IPv6 disabled, and the lab is dual-stack".to_owned());
    }
    let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| !in_path(t)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "tools not found in PATH: {} (see .ci/packages.txt)",
            missing.join(", ")
        ));
    }
    Ok(())
}

fn in_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(tool)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
