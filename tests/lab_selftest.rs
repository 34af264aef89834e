//! Self-test of the network-namespace lab: topology, path MTU, faults, processes and teardown.

mod lab;

use lab::{Host, Lab, ONPREM_IP, ONPREM_IP6, POD_IP, POD_IP6, TUNNEL_MTU};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

fn onprem(port: u16) -> SocketAddr {
    SocketAddrV4::new(ONPREM_IP, port).into()
}

fn onprem6(port: u16) -> SocketAddr {
    SocketAddrV6::new(ONPREM_IP6, port, 0, 0).into()
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn namespaces() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pod pings `target` across the tunnel, whose MTU holds exactly a packet of 1400 bytes
/// (`headers` of them IP and ICMP) and says so for one byte more; and connects to it keeping its
/// own address `pod`: no NAT.
fn crosses_the_tunnel(lab: &Lab, target: IpAddr, pod: IpAddr) {
    let ip = target.to_string();
    let ping = |extra: &[&str]| {
        let mut args = vec!["-n", "-c1", "-W2"];
        args.extend(extra);
        args.push(&ip);
        lab.exec(Host::Pod, "ping", &args)
    };
    let out = ping(&[]);
    assert!(out.status.success(), "pod -> {ip} ping:\n{}", text(&out));

    // IPv4: 20 IP + 8 ICMP bytes; IPv6: 40 + 8.
    let headers = if target.is_ipv4() { 28 } else { 48 };
    let fits = (TUNNEL_MTU - headers).to_string();
    let out = ping(&["-M", "do", "-s", &fits]);
    assert!(
        out.status.success(),
        "DF ping of {fits} bytes:\n{}",
        text(&out)
    );
    // IPv4's frag-needed and IPv6's Packet Too Big both come from the VNET gateway.
    let too_big = (TUNNEL_MTU - headers + 1).to_string();
    let out = ping(&["-M", "do", "-s", &too_big]);
    let said = text(&out).replace(' ', "");
    assert!(
        !out.status.success() && said.contains("mtu=1400"),
        "DF ping of {too_big} bytes should be told mtu 1400:\n{}",
        text(&out)
    );

    let addr = SocketAddr::new(target, 8080);
    let seen = lab.tcp_listen(Host::Onprem, addr);
    lab.tcp_connect(Host::Pod, addr, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("pod -> {addr}: {e}"));
    let (_, peer) = seen.accept().expect("accept");
    assert_eq!(peer.ip(), pod);
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn pod_reaches_onprem_through_a_1400_byte_tunnel() {
    let Some(lab) = Lab::new("mtu") else { return };
    crosses_the_tunnel(&lab, ONPREM_IP.into(), POD_IP.into());
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn pod_reaches_onprem_over_ipv6_through_the_same_tunnel() {
    let Some(lab) = Lab::new("mtu6") else { return };
    crosses_the_tunnel(&lab, ONPREM_IP6.into(), POD_IP6.into());

    // Nothing is routed beyond 2001:2::/48: the gateways know no other IPv6 prefix, so
    // whatever a probe sends elsewhere dies inside the lab.
    for h in [Host::VnetGw, Host::OnpremGw] {
        let out = lab.exec(h, "ip", &["-6", "route", "get", "2001:db8::1"]);
        assert!(
            !out.status.success(),
            "{h:?} routes outside the lab:\n{}",
            text(&out)
        );
    }
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn tunnel_drop_makes_tcp_time_out_and_recovers() {
    let Some(lab) = Lab::new("tunnel-drop") else {
        return;
    };
    let ldap = onprem(389);
    lab.serve_tcp(Host::Onprem, ldap);
    let connect = || lab.tcp_connect(Host::Pod, ldap, Duration::from_secs(2));
    connect().expect("pod -> onprem:389 with the tunnel up");
    let out = lab.sh(Host::Pod, "echo > /dev/tcp/198.19.10.1/389");
    assert!(out.status.success(), "bash /dev/tcp:\n{}", text(&out));

    lab.tunnel_drop(true);
    lab.tunnel_drop(true);
    let err = connect().expect_err("connect must fail while the tunnel drops");
    assert_eq!(
        err.kind(),
        ErrorKind::TimedOut,
        "silent drop, not refusal: {err}"
    );
    let out = lab.exec(Host::Pod, "ping", &["-n", "-c1", "-W1", "198.19.10.1"]);
    assert!(!out.status.success(), "ping must be lost:\n{}", text(&out));
    let out = lab.must(Host::VnetGw, "nft", &["list", "table", "inet", "hplab"]);
    let rules = out
        .lines()
        .filter(|l| l.trim_end().ends_with(" drop"))
        .count();
    assert_eq!(rules, 2, "one rule per direction, not duplicated:\n{out}");

    lab.tunnel_drop(false);
    lab.tunnel_drop(false);
    connect().expect("pod -> onprem:389 after the tunnel is back");
}

/// Each family's tunnel drop silences that family across the tunnel and leaves the other one,
/// and the local, same-family path to the VNET gateway, alone.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_one_family_tunnel_drop_leaves_the_other_family_working() {
    let Some(lab) = Lab::new("family-drop") else {
        return;
    };
    let (v4, v6) = (onprem(389), onprem6(389));
    lab.serve_tcp(Host::Onprem, v4);
    lab.serve_tcp(Host::Onprem, v6);
    let t = Duration::from_secs(2);
    let connects = |addr| lab.tcp_connect(Host::Pod, addr, t).map(drop);
    connects(v4).expect("IPv4 with the tunnel up");
    connects(v6).expect("IPv6 with the tunnel up");

    lab.tunnel_drop_ip6(true);
    lab.tunnel_drop_ip6(true);
    let err = connects(v6).expect_err("IPv6 must be dropped");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "silent drop: {err}");
    connects(v4).expect("IPv4 must still pass");
    let gw = SocketAddr::from((lab::VNET_GW6, 22));
    let err = lab
        .tcp_connect(Host::Pod, gw, t)
        .expect_err("nothing listens");
    assert_eq!(
        err.kind(),
        ErrorKind::ConnectionRefused,
        "IPv6 up to the tunnel: {err}"
    );
    lab.tunnel_drop_ip6(false);
    connects(v6).expect("IPv6 after the drop is lifted");

    lab.tunnel_drop_ip4(true);
    let err = connects(v4).expect_err("IPv4 must be dropped");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "silent drop: {err}");
    connects(v6).expect("IPv6 must still pass");
    lab.tunnel_drop_ip4(false);
    connects(v4).expect("IPv4 after the drop is lifted");
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn http_get_reports_status_body_and_failure() {
    let Some(lab) = Lab::new("http") else { return };
    let listener = lab.tcp_listen(Host::Onprem, onprem(8080));
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = conn.read(&mut buf).expect("read request");
            assert!(n > 0, "request ended early");
            request.extend_from_slice(&buf[..n]);
        }
        let json = String::from_utf8_lossy(&request).contains("Accept: application/json");
        let body = format!("{{\"json\":{json}}}");
        let reply = format!(
            "HTTP/1.1 418 I'm a teapot\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(reply.as_bytes()).expect("write reply");
    });
    let got = lab.http_get(Host::Pod, "http://198.19.10.1:8080/x", true);
    server.join().expect("server thread");
    assert_eq!(got, (418, "{\"json\":true}".to_string()));

    assert_eq!(
        lab.http_get(Host::Pod, "http://198.19.10.1:8081/", false),
        (0, String::new())
    );
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn spawned_processes_log_and_stop_gracefully() {
    let Some(lab) = Lab::new("spawn") else { return };
    let script = "trap 'echo bye from $WHO; exit 3' TERM; ip -4 -o addr show eth0; \
                  while :; do sleep 0.1; done";
    let p = lab.spawn(Host::Onprem, "bash", &["-c", script], &[("WHO", "onprem")]);
    lab.wait_until(
        "the process to report its address",
        Duration::from_secs(5),
        || lab.logs(p).contains("198.19.10.1/24"),
    );
    assert!(lab.try_status(p).is_none(), "still running");
    let status = lab.stop(p);
    assert_eq!(status.code(), Some(3), "{}", lab.logs(p));
    assert!(lab.logs(p).contains("bye from onprem"), "{}", lab.logs(p));
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn dropping_the_lab_removes_everything() {
    let Some(lab) = Lab::new("teardown") else {
        return;
    };
    let names: Vec<String> = Host::ALL.iter().map(|&h| lab.ns_name(h)).collect();
    let listed = namespaces();
    for name in &names {
        assert!(
            listed.contains(name.as_str()),
            "{name} missing from:\n{listed}"
        );
    }
    let tmp = lab.tmpdir().to_path_buf();
    std::fs::write(tmp.join("config.yaml"), "x: 1").expect("write to tmpdir");
    lab.spawn(Host::Node, "sleep", &["600"], &[]);
    // A process the lab does not track, detached from its parent, still dies with the lab.
    let stray = lab.must_sh(
        Host::Pod,
        "setsid sleep 600 >/dev/null 2>&1 < /dev/null & echo $!",
    );
    let stray = format!("/proc/{}", stray.trim());
    lab.serve_tcp(Host::Onprem, onprem(389));
    lab.tunnel_drop(true);

    drop(lab);
    let listed = namespaces();
    for name in &names {
        assert!(
            !listed.contains(name.as_str()),
            "{name} left behind:\n{listed}"
        );
    }
    assert!(!tmp.exists(), "{} left behind", tmp.display());
    let dead = || {
        std::fs::read_to_string(format!("{stray}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    for _ in 0..50 {
        if dead() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("untracked process {stray} survived the lab");
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_panicking_test_still_cleans_up() {
    let mut names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(lab) = Lab::new("panics") else {
            return;
        };
        names = Host::ALL.iter().map(|&h| lab.ns_name(h)).collect();
        lab.must(Host::Pod, "false", &[]);
    }));
    if names.is_empty() {
        return; // skipped
    }
    assert!(result.is_err(), "`must` should have panicked");
    let listed = namespaces();
    for name in &names {
        assert!(
            !listed.contains(name.as_str()),
            "{name} left behind:\n{listed}"
        );
    }
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn concurrent_labs_do_not_interfere() {
    let ldap = onprem(389);
    std::thread::scope(|s| {
        let a = s.spawn(|| Lab::new("concurrent-a"));
        let b = s.spawn(|| Lab::new("concurrent-b"));
        let (Some(a), Some(b)) = (a.join().unwrap(), b.join().unwrap()) else {
            return;
        };
        assert_ne!(a.ns_name(Host::Pod), b.ns_name(Host::Pod));
        // Same addresses and port in both labs; only a's tunnel goes down.
        a.serve_tcp(Host::Onprem, ldap);
        b.serve_tcp(Host::Onprem, ldap);
        a.tunnel_drop(true);
        let t = Duration::from_secs(2);
        let (ra, rb) = std::thread::scope(|s| {
            let ra = s.spawn(|| a.tcp_connect(Host::Pod, ldap, t));
            let rb = s.spawn(|| b.tcp_connect(Host::Pod, ldap, t));
            (ra.join().unwrap(), rb.join().unwrap())
        });
        assert!(ra.is_err(), "lab a's tunnel is down");
        rb.expect("lab b is unaffected by lab a's fault");
    });
}
