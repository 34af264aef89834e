//! The status page at `/`: the node verdict as one self-contained HTML page for people, with no
//! external assets, so it works from `kubectl port-forward` on a locked-down node. Its only
//! script is the agent's own `status.js`: it reloads the page, but not while an evidence view
//! is open, and drives the "Run now" buttons when runs on demand are on. Without it the page
//! reloads by itself and the buttons still post.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::agent::on_demand::OnDemand;
use crate::agent::state::AgentState;
use crate::diagnose::table::{format_seconds, headline};
use crate::diagnose::verdict::{CheckView, Status, Verdict};
use crate::evidence::{Body, Capture};
use crate::netns::NetnsId;
use crate::probe::resolver::Family;
use crate::results::{CheckKey, Sample, HISTORY};

/// Seconds between reloads of the page by the browser.
const REFRESH_SECONDS: u32 = 10;

/// Inline styles, inline SVG and the agent's own script, and no inline script: a string that
/// slipped past escaping still could not load or run anything.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src data:; script-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// With "Run now" buttons: its fetches and its forms too.
const CONTENT_SECURITY_POLICY_RUN_NOW: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src data:; script-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The page's script: its reloads and the "Run now" buttons.
const SCRIPT: &str = include_str!("status.js");

/// `GET /`: the status page.
pub async fn page(
    State(state): State<Arc<AgentState>>,
    State(on_demand): State<Arc<OnDemand>>,
) -> Response {
    let snapshot = Snapshot::take(&state, on_demand.enabled());
    let policy = if snapshot.run_now {
        CONTENT_SECURITY_POLICY_RUN_NOW
    } else {
        CONTENT_SECURITY_POLICY
    };
    let html = render(&snapshot);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    )
        .into_response()
}

/// `GET /status.js`: the page's script, a constant.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// What the page shows, read from the agent's state at one moment.
pub struct Snapshot {
    /// The published verdict.
    pub verdict: Arc<Verdict>,
    /// Each check's recent rounds, oldest first.
    pub history: BTreeMap<CheckKey, Vec<Sample>>,
    /// Why the newest config file was rejected, if it was.
    pub config_error: Option<String>,
    pub now: SystemTime,
    /// Whether runs on demand are on: each probe gets a "Run now" button.
    pub run_now: bool,
}

impl Snapshot {
    /// Reads the published verdict and each check's history; judges and writes nothing.
    pub fn take(state: &AgentState, run_now: bool) -> Snapshot {
        let verdict = state.verdict();
        let history = state
            .results()
            .in_order()
            .into_iter()
            .map(|(key, check)| (key.clone(), check.history.iter().collect()))
            .collect();
        Snapshot {
            verdict,
            history,
            config_error: state.config_error(),
            now: SystemTime::now(),
            run_now,
        }
    }
}

/// Text made safe for HTML element content and quoted attribute values.
pub struct Escaped<'a>(&'a str);

pub fn escape(text: &str) -> Escaped<'_> {
    Escaped(text)
}

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// The whole page. Every string that came from config, the network or the environment goes
/// through [`escape`].
pub fn render(snapshot: &Snapshot) -> String {
    let verdict = &snapshot.verdict;
    let mut out = String::with_capacity(16 * 1024);
    let (class, mark) = status_look(verdict.status);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}
<title>{status} · {node} · hybridprobe</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<header class="verdict {class}">
<div class="badge"><span aria-hidden="true">{mark}</span> {status}</div>
<div>
<h1>{node}</h1>
<p class="headline">{headline}{diagnosed}</p>
</div>
<p class="meta">updated {now}<br>refreshes every {REFRESH_SECONDS} s · hybridprobe {version}</p>
</header>
"#,
        refresh = refresh(),
        status = verdict.status.as_str().to_uppercase(),
        node = escape(&verdict.node),
        headline = escape(&headline(verdict)),
        diagnosed = match verdict.diagnoses.len() {
            0 => String::new(),
            1 => " · 1 diagnosis".to_owned(),
            n => format!(" · {n} diagnoses"),
        },
        now = humantime::format_rfc3339_seconds(snapshot.now),
        version = env!("CARGO_PKG_VERSION"),
    );
    diagnoses(&mut out, verdict);
    checks(&mut out, snapshot);
    agent(&mut out, snapshot);
    out.push_str(
        r#"<footer>Also: <a href="healthz">/healthz</a> · <a href="healthz?format=json">/healthz?format=json</a> · <a href="metrics">/metrics</a></footer>
</main>
</body>
</html>
"#,
    );
    out
}

/// The page reloads itself every [`REFRESH_SECONDS`]. The script does it, but not while an
/// evidence view is open or a run's result is new; the browser does it without script.
fn refresh() -> String {
    let meta = format!(r#"<meta http-equiv="refresh" content="{REFRESH_SECONDS}">"#);
    format!(
        r#"<noscript>{meta}</noscript>
<script src="status.js" defer data-refresh-seconds="{REFRESH_SECONDS}"></script>"#
    )
}

/// The CSS class and the symbol that go with a status; the word itself is always shown too.
fn status_look(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Ok => ("ok", "✓"),
        Status::Fail => ("fail", "✗"),
        Status::Starting => ("pending", "…"),
    }
}

fn diagnoses(out: &mut String, verdict: &Verdict) {
    out.push_str("<section>\n<h2>Diagnoses</h2>\n");
    if verdict.diagnoses.is_empty() {
        out.push_str(r#"<p class="quiet">No diagnosis: nothing points to a known cause.</p>"#);
        out.push('\n');
    }
    for d in &verdict.diagnoses {
        let _ = writeln!(
            out,
            r#"<article class="diagnosis"><code>{}</code><p class="summary">{}</p><p class="hint"><strong>Likely fix:</strong> {}</p></article>"#,
            escape(d.code),
            escape(&d.summary),
            escape(d.hint),
        );
    }
    out.push_str("</section>\n");
}

/// One row per probe (per family for a probe split by `family: both`), one column per
/// namespace, in config order.
fn checks(out: &mut String, snapshot: &Snapshot) {
    let verdict = &snapshot.verdict;
    let mut columns: Vec<NetnsId> = verdict
        .checks
        .iter()
        .map(|c| c.netns)
        .chain(verdict.namespaces.iter().map(|ns| ns.netns))
        .collect();
    columns.sort();
    columns.dedup();
    let mut rows: Vec<(&CheckView, Vec<&CheckView>)> = Vec::new();
    for check in &verdict.checks {
        let same = |first: &CheckView| (&first.probe, first.family) == (&check.probe, check.family);
        match rows.iter_mut().find(|(first, _)| same(first)) {
            Some((_, cells)) => cells.push(check),
            None => rows.push((check, vec![check])),
        }
    }
    out.push_str("<section>\n<h2>Checks</h2>\n");
    if rows.is_empty() {
        out.push_str("<p class=\"quiet\">No checks are configured.</p>\n</section>\n");
        return;
    }
    out.push_str("<table class=\"checks\">\n<thead><tr><th>Probe</th>");
    for netns in &columns {
        let unavailable = verdict
            .namespaces
            .iter()
            .any(|ns| ns.netns == *netns && !ns.available);
        let _ = write!(
            out,
            "<th>{netns} namespace{}</th>",
            if unavailable {
                r#" <span class="tag fail">unavailable</span>"#
            } else {
                ""
            }
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (first, cells) in rows {
        let family = first.family.map(|f| format!(" · {f}")).unwrap_or_default();
        let _ = write!(
            out,
            r#"<tr><th scope="row"><span class="probe">{}</span><span class="kind">{}{family}</span>"#,
            escape(&first.probe),
            escape(first.kind)
        );
        if snapshot.run_now {
            run_button(out, &first.probe, first.family);
        }
        out.push_str("</th>");
        for netns in &columns {
            match cells.iter().find(|c| c.netns == *netns) {
                Some(check) => cell(out, snapshot, check),
                None => out.push_str(r#"<td class="cell none">not checked here</td>"#),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// A form that posts to the probe's run endpoint, for the row's family of a split probe: the
/// script shows the answer beside it, and without script the browser shows the JSON. Probe
/// names are URL-safe (`a-z 0-9 - _ .`).
fn run_button(out: &mut String, probe: &str, family: Option<Family>) {
    let only = family.map(|f| format!("?family={f}")).unwrap_or_default();
    let _ = write!(
        out,
        r#"<form class="run" method="post" action="checks/{}/run{only}"><button type="submit">Run now</button><output class="run-result" aria-live="polite"></output></form>"#,
        escape(probe)
    );
}

fn cell(out: &mut String, snapshot: &Snapshot, check: &CheckView) {
    // No duration means no finished round yet.
    let ran = check.duration_seconds.is_some();
    let (class, word) = match (ran, check.ok) {
        (false, _) => ("pending", "pending"),
        (true, true) => ("ok", "ok"),
        (true, false) => ("fail", "FAIL"),
    };
    let _ = write!(
        out,
        r#"<td class="cell {class}"><div class="top"><span class="pill {class}">{word}</span> <span class="result">{}</span>"#,
        escape(check.result),
    );
    if let Some(seconds) = check.duration_seconds {
        let _ = write!(
            out,
            r#" <span class="duration">{}</span>"#,
            format_seconds(seconds)
        );
    }
    let _ = write!(
        out,
        r#" <span class="state state-{0}" title="state over recent rounds">{0}</span>"#,
        check.state
    );
    if let (true, Some(since)) = (ran, &check.since) {
        let state = if check.ok { "passing" } else { "failing" };
        let _ = write!(out, r#"<span class="since">{state}"#);
        if let Some(held) = humantime::parse_rfc3339(since)
            .ok()
            .and_then(|at| snapshot.now.duration_since(at).ok())
        {
            let _ = write!(out, " for {}", short_duration(held));
        }
        let _ = write!(
            out,
            " · since {}</span>",
            escape(same_day_time(since, snapshot.now))
        );
    }
    out.push_str("</div>");
    if !check.detail.is_empty() {
        let _ = write!(
            out,
            r#"<div class="detail">{}</div>"#,
            escape(&check.detail)
        );
    }
    let key = CheckKey {
        probe: check.probe.to_string(),
        netns: check.netns,
        family: check.family,
    };
    let samples = snapshot.history.get(&key).map_or(&[][..], Vec::as_slice);
    sparkline(out, samples);
    evidence(out, &check.evidence, snapshot.now);
    out.push_str("</td>");
}

/// A failing check's captures, newest first, folded away until opened: each piece with how
/// and when it was taken, its text as it would print in a terminal, or why it is missing.
fn evidence(out: &mut String, captures: &[Arc<Capture>], now: SystemTime) {
    let Some(newest) = captures.first() else {
        return;
    };
    let _ = write!(
        out,
        r#"<details class="evidence"><summary>Evidence · taken {}{}</summary>"#,
        escape(same_day_time(&newest.taken_at, now)),
        match captures.len() {
            1 => String::new(),
            n => format!(" · {n} captures"),
        }
    );
    for capture in captures {
        let _ = write!(
            out,
            r#"<div class="capture"><p class="trigger">taken {} when the check failed in {}: <strong>{}</strong> {}</p><dl>"#,
            escape(&capture.taken_at),
            capture.netns,
            escape(&capture.trigger.result),
            escape(&capture.trigger.detail),
        );
        for piece in &capture.pieces {
            let _ = write!(
                out,
                r#"<dt>{} <span class="tag">{}</span> <span class="source">{} · {}</span></dt>"#,
                piece.what.as_str(),
                piece.netns,
                escape(&piece.source),
                escape(same_day_time(&piece.taken_at, now)),
            );
            let _ = match &piece.body {
                // Line breaks as character references keep each table row on one line of
                // the page's source; the `<pre>` still breaks there.
                Body::Text(text) => write!(
                    out,
                    "<dd><pre>{}</pre></dd>",
                    escape(text).to_string().replace('\n', "&#10;")
                ),
                Body::Unavailable(why) => write!(
                    out,
                    r#"<dd class="unavailable">unavailable: {}</dd>"#,
                    escape(why)
                ),
            };
        }
        out.push_str("</dl></div>");
    }
    out.push_str("</details>");
}

/// Bar geometry of the sparkline, in pixels.
const BAR_WIDTH: usize = 6;
const BAR_GAP: usize = 2;
const BARS_HEIGHT: f64 = 24.0;
const STRIP_HEIGHT: usize = 4;
const STRIP_GAP: usize = 2;

/// The last [`HISTORY`] rounds, newest on the right: a duration bar over a pass/fail strip for
/// each, scaled to the slowest round shown, with a text summary beside it.
fn sparkline(out: &mut String, samples: &[Sample]) {
    let samples = &samples[samples.len().saturating_sub(HISTORY)..];
    let failed = samples.iter().filter(|s| !s.ok).count();
    let slowest = samples.iter().map(|s| s.duration).max().unwrap_or_default();
    let width = HISTORY * (BAR_WIDTH + BAR_GAP) - BAR_GAP;
    let height = BARS_HEIGHT as usize + STRIP_GAP + STRIP_HEIGHT;
    let strip_y = height - STRIP_HEIGHT;
    let _ = write!(
        out,
        r#"<div class="history"><svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="last {n} rounds: {ok} passed, {failed} failed">"#,
        n = samples.len(),
        ok = samples.len() - failed,
    );
    let empty = HISTORY - samples.len();
    for slot in 0..empty {
        let x = slot * (BAR_WIDTH + BAR_GAP);
        let _ = write!(
            out,
            r#"<rect class="none" x="{x}" y="{strip_y}" width="{BAR_WIDTH}" height="{STRIP_HEIGHT}"/>"#
        );
    }
    for (i, sample) in samples.iter().enumerate() {
        let x = (empty + i) * (BAR_WIDTH + BAR_GAP);
        let class = if sample.ok { "ok" } else { "fail" };
        let share = if slowest.is_zero() {
            0.0
        } else {
            sample.duration.as_secs_f64() / slowest.as_secs_f64()
        };
        // At least a sliver, so a round that took no time still shows as a round.
        let bar = (share * BARS_HEIGHT).max(1.5);
        let _ = write!(
            out,
            r#"<g class="{class}"><title>{at} {result} {took}</title><rect class="bar" x="{x}" y="{y:.1}" width="{BAR_WIDTH}" height="{bar:.1}"/><rect x="{x}" y="{strip_y}" width="{BAR_WIDTH}" height="{STRIP_HEIGHT}"/></g>"#,
            at = humantime::format_rfc3339_seconds(sample.at),
            result = escape(sample.result),
            took = format_seconds(sample.duration.as_secs_f64()),
            y = BARS_HEIGHT - bar,
        );
    }
    out.push_str("</svg>");
    if samples.is_empty() {
        out.push_str(r#"<span class="legend">no rounds yet</span>"#);
    } else {
        let _ = write!(
            out,
            r#"<span class="legend">{passed} of {n} passed{failed_part}<br>slowest {slowest}</span>"#,
            passed = samples.len() - failed,
            n = samples.len(),
            failed_part = if failed > 0 {
                format!(r#" · <span class="bad">{failed} failed</span>"#)
            } else {
                String::new()
            },
            slowest = format_seconds(slowest.as_secs_f64()),
        );
    }
    out.push_str("</div>");
}

/// The namespaces the agent uses and the config it runs.
fn agent(out: &mut String, snapshot: &Snapshot) {
    out.push_str("<section>\n<h2>Agent</h2>\n<dl class=\"agent\">\n");
    for ns in &snapshot.verdict.namespaces {
        let _ = write!(out, "<dt>{} namespace</dt>", ns.netns);
        match (&ns.reason, ns.available) {
            (_, true) => out.push_str(r#"<dd><span class="tag ok">available</span></dd>"#),
            (reason, false) => {
                let _ = write!(
                    out,
                    r#"<dd><span class="tag fail">unavailable</span> <span class="why">{}</span></dd>"#,
                    escape(reason.as_deref().unwrap_or("no reason given"))
                );
            }
        }
        out.push('\n');
    }
    out.push_str("<dt>config</dt>");
    match &snapshot.config_error {
        None => out.push_str(r#"<dd><span class="tag ok">loaded</span></dd>"#),
        Some(error) => {
            let _ = write!(
                out,
                r#"<dd><span class="tag fail">reload rejected</span> the last good config keeps running<pre>{}</pre></dd>"#,
                escape(error)
            );
        }
    }
    out.push_str("\n</dl>\n</section>\n");
}

/// Just the time of an RFC 3339 timestamp (`03:00:00Z`) when it falls on the day of `now`.
fn same_day_time(at: &str, now: SystemTime) -> &str {
    let today = humantime::format_rfc3339_seconds(now).to_string();
    match (at.get(..11), at.get(11..)) {
        (Some(day), Some(time)) if today.starts_with(day) => time,
        _ => at,
    }
}

/// `45s`, `12m 5s`, `3h 20m`, `2d 4h`: the two largest units, enough to read at a glance.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// The page's only styles, inlined into it: the page loads nothing (see the CSP).
const STYLE: &str = include_str!("status.css");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::test_util::check;
    use crate::diagnose::verdict::{Diagnosis, NetnsView};

    const HOSTILE: &str = r#"<script>alert('x')</script> & "quoted" <img src=x onerror=alert(1)>"#;

    #[test]
    fn escape_neutralizes_markup_and_quotes() {
        assert_eq!(
            escape(HOSTILE).to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot; \
             &lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(escape("").to_string(), "");
        assert_eq!(escape("plain ünïcode ✓").to_string(), "plain ünïcode ✓");
        assert_eq!(
            escape("&amp;").to_string(),
            "&amp;amp;",
            "escapes once more"
        );
        assert_eq!(escape("<<>>").to_string(), "&lt;&lt;&gt;&gt;");
        assert_eq!(escape("\"'").to_string(), "&quot;&#39;");
        assert_eq!(escape("a\0b").to_string(), "a\0b");
    }

    fn view(probe: &str, netns: NetnsId, ok: bool, result: &'static str) -> CheckView {
        check(probe, netns, ok, result, &format!("{probe} {result}"))
    }

    fn samples(pattern: &str) -> Vec<Sample> {
        pattern
            .chars()
            .enumerate()
            .map(|(i, c)| Sample {
                ok: c == '+',
                result: if c == '+' { "success" } else { "timeout" },
                duration: Duration::from_millis(if c == '+' { 2 } else { 800 }),
                round_trip: Duration::from_millis(2),
                loss: None,
                at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64),
            })
            .collect()
    }

    fn snapshot() -> Snapshot {
        let mut history = BTreeMap::new();
        let key = |probe: &str, netns| CheckKey {
            probe: probe.into(),
            netns,
            family: None,
        };
        history.insert(key("dc1-ldap", NetnsId::Pod), samples("+++--"));
        history.insert(key("dc1-ldap", NetnsId::Host), samples("+++++"));
        Snapshot {
            verdict: Arc::new(Verdict {
                status: Status::Fail,
                node: "node-1".into(),
                checks: vec![
                    view("dc1-ldap", NetnsId::Pod, false, "timeout"),
                    view("dc1-ldap", NetnsId::Host, true, "success"),
                    view("host-only", NetnsId::Host, true, "success"),
                ],
                namespaces: vec![
                    NetnsView {
                        netns: NetnsId::Pod,
                        available: true,
                        reason: None,
                    },
                    NetnsView {
                        netns: NetnsId::Host,
                        available: true,
                        reason: None,
                    },
                ],
                diagnoses: vec![Diagnosis {
                    code: "pod_path_blocked",
                    summary: "pods cannot reach dc1-ldap but the node can".into(),
                    hint: "check the NSG rules for the pod range",
                }],
            }),
            history,
            config_error: None,
            now: humantime::parse_rfc3339("2026-11-26T03:02:05Z").unwrap(),
            run_now: false,
        }
    }

    #[test]
    fn page_shows_verdict_diagnoses_and_each_check_side_by_side() {
        let html = render(&snapshot());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains(r#"<header class="verdict fail">"#), "{html}");
        assert!(html.contains("✗</span> FAIL</div>"));
        assert!(html.contains("<h1>node-1</h1>"));
        assert!(html.contains("1 of 3 checks fail"));
        assert!(html.contains("<code>pod_path_blocked</code>"));
        assert!(html.contains("check the NSG rules for the pod range"));
        assert!(html.contains(
            "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>\n\
             <script src=\"status.js\" defer data-refresh-seconds=\"10\"></script>"
        ));
        assert_eq!(html.matches("<script").count(), 1, "no inline script");
        assert!(html.contains("<th>pod namespace</th><th>host namespace</th>"));

        let rows: Vec<&str> = html.lines().filter(|l| l.starts_with("<tr><th")).collect();
        assert_eq!(rows.len(), 2, "one row per probe: {rows:?}");
        let ldap = rows[0];
        let pod = ldap
            .find(r#"<td class="cell fail">"#)
            .expect("pod cell fails");
        let host = ldap
            .find(r#"<td class="cell ok">"#)
            .expect("host cell passes");
        assert!(pod < host, "pod column first");
        assert!(ldap.contains(r#"<span class="pill fail">FAIL</span> <span class="result">timeout</span> <span class="duration">2.000s</span>"#));
        assert!(ldap.contains("failing for 2m 5s · since 03:00:00Z"));
        assert!(ldap.contains("3 of 5 passed · <span class=\"bad\">2 failed</span>"));
        assert!(ldap.contains("5 of 5 passed<br>slowest 2.0ms"));
        assert!(rows[1].contains(r#"<td class="cell none">not checked here</td>"#));
        assert!(rows[1].contains("no rounds yet"), "no history kept for it");
        assert!(html.contains(r#"<dt>config</dt><dd><span class="tag ok">loaded</span>"#));
        // Relative, so they also work through `kubectl proxy`'s path prefix.
        for link in ["healthz", "metrics"] {
            assert!(html.contains(&format!("href=\"{link}\"")));
        }
    }

    #[test]
    fn run_now_buttons_only_when_runs_on_demand_are_on() {
        let off = render(&snapshot());
        assert!(!off.contains("<form"), "{off}");
        let on = render(&Snapshot {
            run_now: true,
            ..snapshot()
        });
        let rows: Vec<&str> = on.lines().filter(|l| l.starts_with("<tr><th")).collect();
        assert_eq!(rows.len(), 2);
        for (row, probe) in rows.iter().zip(["dc1-ldap", "host-only"]) {
            let form = format!(
                r#"<span class="kind">tcp</span><form class="run" method="post" action="checks/{probe}/run"><button type="submit">Run now</button><output class="run-result" aria-live="polite"></output></form></th>"#
            );
            assert!(row.contains(&form), "{row}");
        }
    }

    /// A probe split by `family: both` is a row per family, each with its own cells, history
    /// and "Run now" for its family alone.
    #[test]
    fn a_split_probe_is_a_row_per_family() {
        let mut s = Snapshot {
            run_now: true,
            ..snapshot()
        };
        let verdict = Arc::make_mut(&mut s.verdict);
        let half = |netns, family, ok, result| CheckView {
            family: Some(family),
            ..view("dual", netns, ok, result)
        };
        verdict.checks = vec![
            half(NetnsId::Pod, Family::Ipv4, true, "success"),
            half(NetnsId::Pod, Family::Ipv6, false, "timeout"),
            half(NetnsId::Host, Family::Ipv4, true, "success"),
            half(NetnsId::Host, Family::Ipv6, false, "timeout"),
        ];
        let key = CheckKey {
            probe: "dual".into(),
            netns: NetnsId::Pod,
            family: Some(Family::Ipv6),
        };
        s.history.insert(key, samples("+--"));
        let html = render(&s);
        let rows: Vec<&str> = html.lines().filter(|l| l.starts_with("<tr><th")).collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        for (row, family, cell) in [(rows[0], "ipv4", "ok"), (rows[1], "ipv6", "fail")] {
            let head = format!(
                r#"<span class="kind">tcp · {family}</span><form class="run" method="post" action="checks/dual/run?family={family}">"#
            );
            assert!(row.contains(&head), "{row}");
            assert_eq!(
                row.matches(&format!(r#"<td class="cell {cell}">"#)).count(),
                2
            );
        }
        assert!(
            rows[1].contains("1 of 3 passed"),
            "the IPv6 check's own history"
        );
        assert!(rows[0].contains("no rounds yet"), "{}", rows[0]);
    }

    #[test]
    fn sparkline_scales_bars_to_the_slowest_round_and_keeps_empty_slots() {
        let mut out = String::new();
        sparkline(&mut out, &samples("+-"));
        assert_eq!(out.matches("<g class=\"ok\">").count(), 1);
        assert_eq!(out.matches("<g class=\"fail\">").count(), 1);
        assert_eq!(out.matches(r#"<rect class="none""#).count(), HISTORY - 2);
        assert!(
            out.contains(r#"y="0.0" width="6" height="24.0""#),
            "the slowest is full height: {out}"
        );
        assert!(
            out.contains(r#"height="1.5""#),
            "2ms of 800ms is a sliver: {out}"
        );
        assert!(out.contains("<title>2023-11-14T22:13:21Z timeout 800.0ms</title>"));
        assert!(out.contains(r#"aria-label="last 2 rounds: 1 passed, 1 failed""#));

        let mut full = String::new();
        let many = samples(&"+".repeat(HISTORY + 5));
        sparkline(&mut full, &many);
        assert_eq!(full.matches("<g class=").count(), HISTORY);
        assert!(!full.contains("class=\"none\""));
    }

    fn hostile_capture() -> Arc<Capture> {
        use crate::evidence::{Piece, Trigger, What};
        let piece = |what, body| Piece {
            what,
            netns: NetnsId::Host,
            source: HOSTILE.into(),
            taken_at: "2023-11-14T22:13:21Z".into(),
            body,
        };
        Arc::new(Capture {
            taken_at: "2023-11-14T22:13:20Z".into(),
            trigger: Trigger {
                result: "timeout".into(),
                detail: HOSTILE.into(),
            },
            netns: NetnsId::Pod,
            pieces: vec![
                piece(What::Route, Body::Text(HOSTILE.into())),
                piece(What::Conntrack, Body::Unavailable(HOSTILE.into())),
            ],
        })
    }

    #[test]
    fn a_failing_checks_evidence_folds_into_its_cell() {
        let mut s = snapshot();
        let verdict = Arc::make_mut(&mut s.verdict);
        verdict.checks[0].evidence = vec![hostile_capture(), hostile_capture()];
        let html = render(&s);
        assert_eq!(
            html.matches(r#"<details class="evidence">"#).count(),
            1,
            "{html}"
        );
        let cell = &html[html.find(r#"<td class="cell fail">"#).unwrap()..];
        let cell = &cell[..cell.find("</td>").unwrap()];
        assert!(
            cell.contains("<summary>Evidence · taken 2023-11-14T22:13:20Z · 2 captures</summary>"),
            "{cell}"
        );
        assert_eq!(
            cell.matches(r#"<div class="capture">"#).count(),
            2,
            "{cell}"
        );
        assert!(
            cell.contains(r#"<dt>route <span class="tag">host</span>"#),
            "{cell}"
        );
        assert!(
            cell.contains(r#"<dd class="unavailable">unavailable: "#),
            "{cell}"
        );
    }

    #[test]
    fn every_outside_string_is_escaped() {
        let mut s = snapshot();
        let verdict = Arc::make_mut(&mut s.verdict);
        verdict.node = HOSTILE.into();
        verdict.checks[0].probe = HOSTILE.into();
        verdict.checks[0].detail = HOSTILE.into();
        verdict.checks[0].since = Some(HOSTILE.into());
        verdict.diagnoses[0].summary = HOSTILE.into();
        verdict.namespaces[1].available = false;
        verdict.namespaces[1].reason = Some(HOSTILE.into());
        verdict.checks[0].evidence = vec![hostile_capture()];
        s.config_error = Some(format!("line 1\n{HOSTILE}"));
        let html = render(&s);
        for raw in ["<script>", "<img", "onerror=alert(1)>", "'x'", "\"quoted\""] {
            assert!(!html.contains(raw), "{raw} leaked into:\n{html}");
        }
        assert_eq!(
            html.matches("<script").count(),
            1,
            "only the page's own script"
        );
        let escaped = escape(HOSTILE).to_string();
        // Title, heading, probe, detail, since, summary, namespace reason, config error, and the
        // evidence's trigger, source, text and reason.
        assert!(html.matches(escaped.as_str()).count() >= 12, "{html}");
        assert!(html.contains(r#"<span class="tag fail">reload rejected</span>"#));
        assert!(
            html.contains("<th>host namespace <span class=\"tag fail\">unavailable</span></th>")
        );
    }

    #[test]
    fn starting_and_pending_checks_say_so() {
        let mut s = snapshot();
        let verdict = Arc::make_mut(&mut s.verdict);
        verdict.status = Status::Starting;
        verdict.diagnoses.clear();
        verdict.checks[0] = CheckView {
            ok: false,
            result: "pending",
            duration_seconds: None,
            detail: "".into(),
            since: None,
            ..verdict.checks[0].clone()
        };
        s.history.clear();
        let html = render(&s);
        assert!(html.contains(r#"<header class="verdict pending">"#));
        assert!(html.contains("…</span> STARTING</div>"));
        assert!(html.contains("first round not finished"));
        assert!(html.contains(
            r#"<td class="cell pending"><div class="top"><span class="pill pending">pending</span>"#
        ));
        assert!(html.contains("No diagnosis"));
    }

    #[test]
    fn since_shows_only_the_time_on_the_same_day() {
        let now = humantime::parse_rfc3339("2026-11-26T03:02:05Z").unwrap();
        assert_eq!(same_day_time("2026-11-26T03:00:00Z", now), "03:00:00Z");
        assert_eq!(
            same_day_time("2026-11-25T23:59:59Z", now),
            "2026-11-25T23:59:59Z"
        );
        assert_eq!(same_day_time("short", now), "short");
        assert_eq!(same_day_time("2026-11-26Tü", now), "ü");
    }

    #[test]
    fn short_durations_read_at_a_glance() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m 0s"),
            (3599, "59m 59s"),
            (3600, "1h 0m"),
            (86_399, "23h 59m"),
            (90_000, "1d 1h"),
        ];
        for (secs, want) in cases {
            assert_eq!(short_duration(Duration::from_secs(secs)), want);
        }
    }
}
