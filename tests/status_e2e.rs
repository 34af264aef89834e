//! End to end: the status page at `/` served by an agent in the lab, with passing, failing and
//! recovered checks and a rejected config, fetched from the pod namespace and rendered in
//! headless Chromium; and the agent's JSON log lines.

mod lab;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use lab::{Host, Lab, NFT_TABLE, ONPREM_IP, POD_IP, VNET_GW};
use support::cdp::{Browser, CHROMIUM_FLAGS};
use support::{check, metric, pod_and_host_config, rounds, write_config, Agent, Resolv, PORT};

const LDAP: u16 = 389;
const KERBEROS: u16 = 88;
/// Nothing listens here: refused from both namespaces.
const LEGACY: u16 = 8443;
const NODE: &str = "aks-nodepool1-31415926-vmss000002";
const WIDTH: u32 = 1400;
const HEIGHT: u32 = 900;
/// Rounds of recent history the page draws at least, once that many have run.
const HISTORY_DRAWN: u32 = 8;
/// Where to copy the screenshot for docs/http.md: `docs/status-page.png` is made this way.
const KEEP_SCREENSHOT: &str = "HYBRIDPROBE_STATUS_SCREENSHOT";

fn config(lab: &Lab) -> String {
    pod_and_host_config(
        lab,
        Resolv::Own,
        "{ interval: 1s, timeout: 800ms }",
        &format!(
            r#"  - name: dc1-ldap
    tcp: {{ target: "{ONPREM_IP}:{LDAP}" }}
  - name: dc1-kerberos
    tcp: {{ target: "{ONPREM_IP}:{KERBEROS}" }}
  - name: dc1-ping
    icmp: {{ target: {ONPREM_IP}, count: 3 }}
  - name: legacy-app
    tcp: {{ target: "{ONPREM_IP}:{LEGACY}" }}
  - name: onprem-route
    netns: [host]
    route: {{ destination: 198.19.0.0/16, via: {VNET_GW} }}
"#
        ),
    )
}

/// The row of `probe` in the checks table: one line per probe.
fn row<'h>(html: &'h str, probe: &str) -> &'h str {
    let start = format!(r#"<tr><th scope="row"><span class="probe">{probe}</span>"#);
    html.lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no row for {probe} in:\n{html}"))
}

/// The cells of a row, pod first: each from its `<td` to its `</td>`.
fn cells(row: &str) -> Vec<&str> {
    row.split("<td ")
        .skip(1)
        .map(|c| &c[..c.find("</td>").unwrap()])
        .collect()
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn status_page_shows_each_check_side_by_side_and_renders_in_chromium() {
    let Some(lab) = Lab::new("status-page") else {
        return;
    };
    for port in [LDAP, KERBEROS] {
        lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, port)));
    }
    // The node drops the pod's Kerberos traffic, as an NSG rule would: pod red, host green.
    lab.nft(
        Host::Node,
        &format!(
            "table inet {NFT_TABLE} {{\n  chain kerberos {{\n    type filter hook forward priority 0; policy accept;\n    ip saddr {POD_IP} tcp dport {KERBEROS} drop\n  }}\n}}\n"
        ),
    );
    let path = write_config(&lab, "agent.yaml", &config(&lab));
    let listen = format!("{POD_IP}:{PORT}");
    let agent = Agent::start_args(
        &lab,
        &[
            "--log-format",
            "json",
            "agent",
            "--config",
            &path,
            "--listen",
            &listen,
            "--node",
            NODE,
        ],
        &[],
    );
    agent.wait_ready();
    agent.wait_check("dc1-kerberos", "pod", "timeout", Duration::from_secs(10));

    // A short VPN outage leaves red marks in the recent history of the checks that recovered,
    // between green rounds before and after it.
    for netns in ["pod", "host"] {
        agent.wait_rounds("dc1-ldap", netns, 3, Duration::from_secs(10));
    }
    lab.tunnel_drop(true);
    agent.wait_check("dc1-ldap", "host", "timeout", Duration::from_secs(8));
    lab.tunnel_drop(false);
    agent.wait_check("dc1-ldap", "pod", "success", Duration::from_secs(8));
    agent.wait_check("dc1-ping", "host", "success", Duration::from_secs(8));
    for netns in ["pod", "host"] {
        let recovered = rounds(&agent.metrics(), "dc1-ldap", netns) as u32;
        let enough = (recovered + 3).max(HISTORY_DRAWN);
        agent.wait_rounds("dc1-ldap", netns, enough, Duration::from_secs(10));
    }

    // A broken config is rejected; the page says why while the last good one keeps running.
    write_config(
        &lab,
        "agent.yaml",
        &config(&lab).replace(&format!("{ONPREM_IP}:{LDAP}"), "198.19.10.300:389"),
    );
    lab.wait_until(
        "the rejected config in /healthz",
        Duration::from_secs(10),
        || {
            let (_, verdict) = agent.healthz_json();
            verdict["diagnoses"]
                .to_string()
                .contains("config_reload_failed")
        },
    );
    let (_, verdict) = agent.healthz_json();
    assert_eq!(check(&verdict, "dc1-ldap", "pod")["ok"], true, "{verdict}");
    // Kerberos failed in the pod from its first round: its evidence is in the verdict.
    lab.wait_until(
        "evidence for dc1-kerberos in pod",
        Duration::from_secs(10),
        || {
            let (_, verdict) = agent.healthz_json();
            check(&verdict, "dc1-kerberos", "pod")["evidence"].is_array()
        },
    );

    let (code, html) = agent.get("/");
    assert_eq!(code, 200, "{html}");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains(r#"<header class="verdict fail">"#), "{html}");
    assert!(html.contains(&format!("<h1>{NODE}</h1>")), "{html}");
    assert!(html.contains("3 of 9 checks fail"), "{html}");
    assert!(html.contains("<code>config_reload_failed</code>"), "{html}");
    assert!(
        html.contains(r#"<span class="tag fail">reload rejected</span>"#),
        "{html}"
    );
    assert!(
        html.contains("probes[0].tcp.target: &quot;198.19.10.300:389&quot; is not a valid address"),
        "the error is shown, escaped: {html}"
    );
    assert!(html.contains("<th>pod namespace</th><th>host namespace</th>"));
    assert!(
        !html.contains("<form"),
        "no Run now button while runs on demand are off: {html}"
    );

    let kerberos = cells(row(&html, "dc1-kerberos"));
    assert_eq!(kerberos.len(), 2);
    assert!(
        kerberos[0].starts_with(r#"class="cell fail">"#),
        "{}",
        kerberos[0]
    );
    assert!(kerberos[0].contains(r#"<span class="result">timeout</span>"#));
    assert!(kerberos[0].contains(&format!(
        "tcp connect {ONPREM_IP}:{KERBEROS}: no answer within 800ms"
    )));
    assert!(kerberos[0].contains("failing for "));
    // The failing cell folds its evidence away: pieces from both namespaces, the conntrack
    // entry of a flow like the pod's, read in the host's table.
    let folded = kerberos[0]
        .split_once(r#"<details class="evidence"><summary>Evidence · taken "#)
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("no evidence in {}", kerberos[0]));
    for piece in [
        r#"<dt>route <span class="tag">pod</span>"#,
        r#"<dt>route <span class="tag">host</span>"#,
        r#"<dt>traceroute <span class="tag">pod</span>"#,
        r#"<dt>conntrack <span class="tag">host</span>"#,
        r#"<dt>rounds <span class="tag">pod</span>"#,
    ] {
        assert!(folded.contains(piece), "no {piece} in {folded}");
    }
    assert!(
        !kerberos[1].contains("<details"),
        "a passing check has none: {}",
        kerberos[1]
    );
    assert!(
        kerberos[1].starts_with(r#"class="cell ok">"#),
        "{}",
        kerberos[1]
    );

    let ldap = cells(row(&html, "dc1-ldap"));
    for (cell, netns) in ldap.iter().zip(["pod", "host"]) {
        assert!(cell.starts_with(r#"class="cell ok">"#), "{netns}: {cell}");
        let bars = cell.matches("<g class=").count();
        assert!(
            bars >= HISTORY_DRAWN as usize,
            "{netns}: only {bars} rounds drawn: {cell}"
        );
        assert!(
            cell.contains(r#"<g class="fail"><title>"#) && cell.contains(" timeout "),
            "{netns}: the outage is in the history: {cell}"
        );
        assert!(
            cell.contains("failed</span><br>slowest "),
            "{netns}: {cell}"
        );
    }
    let legacy = cells(row(&html, "legacy-app"));
    for cell in &legacy {
        assert!(
            cell.contains(r#"<span class="result">refused</span>"#),
            "{cell}"
        );
    }
    let route = cells(row(&html, "onprem-route"));
    assert_eq!(route[0], r#"class="cell none">not checked here"#);
    assert!(route[1].starts_with(r#"class="cell ok">"#), "{}", route[1]);

    let headers = lab.must(
        Host::Pod,
        "curl",
        &[
            "-s",
            "--noproxy",
            "*",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("http://{POD_IP}:{PORT}/"),
        ],
    );
    let headers = headers.to_lowercase();
    assert!(
        headers.contains("content-type: text/html; charset=utf-8"),
        "{headers}"
    );
    assert!(
        headers.contains("content-security-policy: default-src 'none'"),
        "{headers}"
    );

    let png = screenshot(&lab);
    assert_not_blank(&png);
    evidence_in_dom(&lab);
    an_open_evidence_view_holds_the_reload(&lab);
    if let Some(keep) = std::env::var_os(KEEP_SCREENSHOT) {
        std::fs::copy(&png, &keep).unwrap();
    }

    json_logs(&lab.logs(agent.handle));
}

/// Clicks a probe's Run now button in headless Chromium, as a person would, and reads what
/// the page shows beside it once the agent answered.
#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn run_now_button_shows_the_rounds_in_chromium() {
    let Some(lab) = Lab::new("status-run") else {
        return;
    };
    lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, LDAP)));
    let config = pod_and_host_config(
        &lab,
        Resolv::Own,
        "{ interval: 5s, timeout: 1s }",
        &format!("  - name: dc1-ldap\n    tcp: {{ target: \"{ONPREM_IP}:{LDAP}\" }}\n"),
    );
    let agent = Agent::start(&lab, &format!("on_demand: {{ enabled: true }}\n{config}"));
    agent.wait_ready();
    let (_, html) = agent.get("/");
    assert!(
        row(&html, "dc1-ldap")
            .contains(r#"<form class="run" method="post" action="checks/dc1-ldap/run">"#),
        "{html}"
    );

    let browser = Browser::open(&lab, Host::Pod, &format!("http://{POD_IP}:{PORT}/"));
    let shown = browser.evaluate(
        r#"new Promise((resolve, reject) => {
            // The browser may still be on its first blank page: wait for the agent's.
            const started = Date.now();
            const find = setInterval(() => {
                const form = document.querySelector('form.run[action="checks/dc1-ldap/run"]');
                if (!form) {
                    if (Date.now() - started > 20000) reject(new Error("no Run now button"));
                    return;
                }
                clearInterval(find);
                const output = form.querySelector("output");
                form.querySelector("button").click();
                const poll = setInterval(() => {
                    if (output.textContent && output.textContent !== "running…") {
                        clearInterval(poll);
                        resolve({ text: output.textContent, class: output.className });
                    }
                }, 50);
            }, 100);
        })"#,
    );
    let text = shown["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("pod: ok success in ") && text.contains("\nhost: ok success in "),
        "{shown}"
    );
    assert!(text.contains(&format!("{ONPREM_IP}:{LDAP}")), "{shown}");
    assert_eq!(shown["class"], "run-result ok", "{shown}");
    let runs = metric(
        &agent.metrics(),
        "hybridprobe_on_demand_runs_total",
        &[("probe", "dc1-ldap"), ("outcome", "success")],
    );
    assert_eq!(runs, Some(1.0), "the click posted once");
}

/// Runs headless Chromium on the page inside the pod namespace with `args` (and its own
/// profile directory, `profile`), once it exits.
fn chromium(lab: &Lab, profile: &str, args: &[&str]) -> std::process::Output {
    let profile = format!("--user-data-dir={}", lab.tmpdir().join(profile).display());
    let url = format!("http://{POD_IP}:{PORT}/");
    let mut argv = vec!["120", "chromium"];
    argv.extend(CHROMIUM_FLAGS);
    argv.push(&profile);
    argv.extend(args);
    argv.push(&url);
    // `timeout`: a wedged browser fails the test instead of hanging it.
    let out = lab.exec(Host::Pod, "timeout", &argv);
    assert!(
        out.status.success(),
        "chromium {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Renders the page in headless Chromium; returns the PNG's path.
fn screenshot(lab: &Lab) -> std::path::PathBuf {
    let png = lab.tmpdir().join("status.png");
    let target = format!("--screenshot={}", png.display());
    let size = format!("--window-size={WIDTH},{HEIGHT}");
    chromium(lab, "chrome", &["--hide-scrollbars", &target, &size]);
    assert!(png.exists(), "chromium wrote no {}", png.display());
    png
}

/// The page reloads itself, but not under someone reading an evidence view: opened, it stays
/// open past the reload; closed, the page reloads.
fn an_open_evidence_view_holds_the_reload(lab: &Lab) {
    let browser = Browser::open(lab, Host::Pod, &format!("http://{POD_IP}:{PORT}/"));
    // Longer than the page's 10 s refresh: a reload would cut the evaluation off.
    let held = browser.evaluate(
        r#"new Promise((resolve) => {
            const view = document.querySelector("details.evidence");
            if (!view) return resolve("no evidence view");
            view.open = true;
            window.sameDocument = true;
            setTimeout(() => resolve(window.sameDocument && view.open ? "held" : "lost"), 13000);
        })"#,
    );
    assert_eq!(held, "held");
    browser.evaluate(
        r#"document.querySelector("details.evidence").open = false;
           window.sameDocument = true;"#,
    );
    std::thread::sleep(Duration::from_secs(14));
    assert_eq!(
        browser.evaluate("typeof window.sameDocument"),
        "undefined",
        "the page reloads once no view is open"
    );
}

/// The DOM Chromium builds from the page keeps each evidence view whole: a closed `<details>`
/// whose summary and pieces parsed as written, inside the failing cell.
fn evidence_in_dom(lab: &Lab) {
    let out = chromium(lab, "chrome-dom", &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let cell = dom
        .split(r#"<td class="cell fail">"#)
        .skip(1)
        .find(|cell| cell.contains(&format!("{ONPREM_IP}:{KERBEROS}")))
        .map(|cell| &cell[..cell.find("</td>").unwrap_or(cell.len())])
        .unwrap_or_else(|| panic!("no failing kerberos cell in the DOM:\n{dom}"));
    let details = cell
        .split_once(r#"<details class="evidence">"#)
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("no evidence view in the cell's DOM:\n{cell}"));
    assert!(
        details.starts_with("<summary>Evidence · taken "),
        "{details}"
    );
    assert!(details.contains(r#"<div class="capture">"#), "{details}");
    assert!(details.contains("<dd><pre>"), "{details}");
    assert!(details.contains("</dl></div></details>"), "{details}");
}

/// The screenshot has the window's size and shows the page: many colors, including the status
/// red and green, not a single blank color.
fn assert_not_blank(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap_or_else(|e| panic!("{} is not a PNG: {e}", path.display()));
    let mut pixels = vec![0; reader.output_buffer_size().expect("size fits in memory")];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (WIDTH, HEIGHT));
    let channels = frame.color_type.samples();
    assert!(channels >= 3, "{:?}", frame.color_type);
    let rgb: Vec<[u8; 3]> = pixels[..frame.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let mut distinct = rgb.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() > 50,
        "only {} colors: blank?",
        distinct.len()
    );
    let near = |want: [u8; 3]| {
        rgb.iter()
            .filter(|p| p.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 12))
            .count()
    };
    // The badge and pills: --fail #cf222e and --ok #1a7f37 in the page's style.
    assert!(near([0xcf, 0x22, 0x2e]) > 500, "no status red drawn");
    assert!(near([0x1a, 0x7f, 0x37]) > 200, "no status green drawn");
}

/// With `--log-format json` every line on stderr is a JSON object, and state changes are logged
/// with their fields.
fn json_logs(logs: &str) {
    let stderr = logs
        .split_once("---- stderr\n")
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no stderr section in:\n{logs}"));
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "agent started"),
        "{stderr}"
    );
    let logged = |message: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == message && l["fields"]["probe"] == "dc1-ldap")
            .unwrap_or_else(|| panic!("no `{message}` line for dc1-ldap:\n{stderr}"))
    };
    let failing = logged("check failing");
    assert_eq!(failing["level"], "WARN");
    assert_eq!(failing["fields"]["result"], "timeout");
    let recovered = logged("check recovered");
    assert_eq!(recovered["level"], "INFO");
    assert!(recovered["fields"]["outage_seconds"].as_f64().unwrap() > 0.0);
}
