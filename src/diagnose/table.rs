//! Renders a verdict for people: the `check` command's table and the plain text of `/healthz`.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt::Write;
use std::io::IsTerminal;

use crate::diagnose::verdict::{Status, Verdict};
use crate::evidence::Body;

/// How text for people is written: plain for pipes, files and `/healthz`, with ANSI colors for
/// a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Color,
}

impl Style {
    /// `text` wrapped in the SGR `codes` when coloring, else as it is.
    fn paint<'a>(self, codes: &str, text: &'a str) -> Cow<'a, str> {
        match self {
            Style::Plain => Cow::Borrowed(text),
            Style::Color => Cow::Owned(format!("\x1b[{codes}m{text}\x1b[0m")),
        }
    }
}

/// When to color: the `--color` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Color a terminal, unless `NO_COLOR` is set (no-color.org) or `TERM` is `dumb`.
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// The style for text written to `stream`, under this process's environment.
    pub fn for_stream(self, stream: &impl IsTerminal) -> Style {
        self.style(stream.is_terminal(), |name| std::env::var_os(name))
    }

    /// The style for output to a `terminal` or not; `env` reads an environment variable. An
    /// explicit `always` wins over `NO_COLOR`, as no-color.org asks of command-line flags.
    pub fn style(self, terminal: bool, env: impl Fn(&str) -> Option<OsString>) -> Style {
        let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
        let color = match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                terminal && !set("NO_COLOR") && env("TERM").is_none_or(|t| t != "dumb")
            }
        };
        if color {
            Style::Color
        } else {
            Style::Plain
        }
    }
}

const GREEN: &str = "32";
const RED: &str = "31";
const BOLD: &str = "1";
const BOLD_GREEN: &str = "1;32";
const BOLD_RED: &str = "1;31";
const BOLD_YELLOW: &str = "1;33";

/// One line on the state of the node: `all 6 checks pass`, `2 of 6 checks fail`, ...
pub fn headline(verdict: &Verdict) -> String {
    match verdict.status {
        Status::Ok => format!("all {} checks pass", verdict.checks.len()),
        Status::Fail => format!(
            "{} of {} checks fail",
            verdict.failing(),
            verdict.checks.len()
        ),
        Status::Starting => "first round not finished".to_owned(),
    }
}

/// The table in plain text, for `/healthz` and pipes.
pub fn table(verdict: &Verdict) -> String {
    styled_table(verdict, Style::Plain)
}

/// A fixed-width table: one line per check, failures first in each probe's pair, then the
/// namespaces that could not be entered and the diagnoses. Colors never change the layout.
pub fn styled_table(verdict: &Verdict, style: Style) -> String {
    let mut out = String::new();
    let status_codes = match verdict.status {
        Status::Ok => BOLD_GREEN,
        Status::Fail => BOLD_RED,
        Status::Starting => BOLD_YELLOW,
    };
    let _ = writeln!(
        out,
        "{} {}",
        style.paint(status_codes, &verdict.status.as_str().to_uppercase()),
        style.paint(
            BOLD,
            &format!("on {}: {}", printable(&verdict.node), headline(verdict))
        )
    );
    let rows: Vec<[String; 7]> = verdict
        .checks
        .iter()
        .map(|c| {
            [
                match (c.ok, c.duration_seconds) {
                    (true, _) => "ok",
                    // Not run yet (the agent is starting, or a reload just added it).
                    (false, None) => "wait",
                    (false, Some(_)) => "FAIL",
                }
                .to_owned(),
                c.probe.to_string(),
                c.kind.to_owned(),
                c.place(),
                c.result.to_owned(),
                c.state.to_owned(),
                c.duration_seconds.map(format_seconds).unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["", "PROBE", "KIND", "NETNS", "RESULT", "STATE", "TIME"].map(str::to_owned);
    let mut widths = [0usize; 7];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for (row, check) in
        std::iter::once((&header, None)).chain(rows.iter().zip(verdict.checks.iter().map(Some)))
    {
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            let painted = match (i, check) {
                (0, Some(c)) if c.ok => style.paint(GREEN, cell),
                (0, Some(_)) => style.paint(BOLD_RED, cell),
                _ => Cow::Borrowed(cell.as_str()),
            };
            let pad = w - cell.len();
            let _ = write!(out, "{painted}{:pad$}  ", "");
        }
        match check {
            Some(c) => {
                let _ = write!(out, "{}", printable(&c.detail));
                if let (false, Some(since)) = (c.ok, &c.since) {
                    let _ = write!(out, " (since {since})");
                }
            }
            None => out.push_str("DETAIL"),
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    }
    for ns in verdict.namespaces.iter().filter(|ns| !ns.available) {
        let reason = printable(ns.reason.as_deref().unwrap_or("unknown"));
        let _ = writeln!(
            out,
            "netns {}: {}: {reason}",
            ns.netns,
            style.paint(RED, "unavailable")
        );
    }
    for d in &verdict.diagnoses {
        let _ = writeln!(
            out,
            "{}: {}\n  hint: {}",
            style.paint(BOLD, &format!("diagnosis {}", d.code)),
            printable(&d.summary),
            d.hint
        );
    }
    out
}

/// What `check --explain` prints after the table: for each failing check, the diagnoses that
/// name its probe and each piece of its newest evidence, indented, one line of text a line.
pub fn explain(verdict: &Verdict, style: Style) -> String {
    let mut out = String::new();
    for check in verdict
        .checks
        .iter()
        .filter(|c| !c.ok && c.duration_seconds.is_some())
    {
        let _ = writeln!(
            out,
            "\n{} {} in {}: {}: {}",
            style.paint(BOLD_RED, "explain"),
            style.paint(BOLD, &check.probe),
            check.place(),
            check.result,
            printable(&check.detail)
        );
        for d in verdict
            .diagnoses
            .iter()
            .filter(|d| names(&d.summary, &check.probe))
        {
            let _ = writeln!(out, "  diagnosis {}: {}", d.code, printable(&d.summary));
        }
        let Some(capture) = check.evidence.first() else {
            out.push_str("  no evidence captured\n");
            continue;
        };
        let _ = writeln!(
            out,
            "  evidence taken {} after {}: {}",
            capture.taken_at,
            capture.trigger.result,
            printable(&capture.trigger.detail)
        );
        for piece in &capture.pieces {
            let _ = writeln!(
                out,
                "  {} in {} ({}, {}):",
                style.paint(BOLD, piece.what.as_str()),
                piece.netns,
                printable(&piece.source),
                piece.taken_at
            );
            let (text, painted) = match &piece.body {
                Body::Text(text) => (text.as_str(), None),
                Body::Unavailable(why) => (why.as_str(), Some("unavailable: ")),
            };
            for line in text.lines() {
                let label = painted.map(|p| style.paint(RED, p)).unwrap_or_default();
                let _ = writeln!(out, "    {label}{}", printable(line));
            }
        }
    }
    out
}

/// Whether a diagnosis summary names `probe`: as a whole word, not inside a longer name.
fn names(summary: &str, probe: &str) -> bool {
    let part_of_name = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    summary
        .split(|c: char| !part_of_name(c))
        .any(|word| word == probe || word.trim_end_matches('.') == probe)
}

/// Text from the network or config with control characters shown escaped (`\u{1b}`), so a
/// crafted detail cannot move the cursor or recolor a terminal.
fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(
            text.chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// `1.234s` above a second, `12.3ms` below.
pub(crate) fn format_seconds(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.3}s")
    } else {
        format!("{:.1}ms", seconds * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::test_util::check;
    use crate::diagnose::verdict::{Diagnosis, NetnsView};
    use crate::netns::NetnsId;

    fn failing_verdict() -> Verdict {
        Verdict {
            status: Status::Fail,
            node: "node-1".into(),
            checks: vec![
                check(
                    "dc1-ldap",
                    NetnsId::Pod,
                    false,
                    "timeout",
                    "tcp connect 198.19.10.1:389: no answer within 2s",
                ),
                check(
                    "dc1-ldap",
                    NetnsId::Host,
                    true,
                    "success",
                    "connected to 198.19.10.1:389",
                ),
            ],
            namespaces: vec![NetnsView {
                netns: NetnsId::Host,
                available: true,
                reason: None,
            }],
            diagnoses: vec![Diagnosis {
                code: "x",
                summary: "y".into(),
                hint: "z",
            }],
        }
    }

    #[test]
    fn explain_lists_each_failing_checks_diagnoses_and_evidence() {
        use crate::evidence::{Capture, Piece, Trigger, What};
        let mut verdict = failing_verdict();
        verdict.diagnoses = vec![
            Diagnosis {
                code: "pod_path_blocked",
                summary: "dc1-ldap fails from pod but answers host".into(),
                hint: "h",
            },
            Diagnosis {
                code: "other",
                summary: "dc1-ldap-tls fails".into(),
                hint: "h",
            },
        ];
        let piece = |what, netns, body| Piece {
            what,
            netns,
            source: "how".into(),
            taken_at: "2026-11-26T03:00:01Z".into(),
            body,
        };
        let pieces = vec![
            piece(
                What::ResolvConf,
                NetnsId::Pod,
                Body::Text("nameserver 198.18.0.10\nsearch corp\x1b".into()),
            ),
            piece(
                What::Conntrack,
                NetnsId::Host,
                Body::Unavailable("needs CAP_NET_ADMIN".into()),
            ),
        ];
        verdict.checks[0].evidence = vec![std::sync::Arc::new(Capture {
            taken_at: "2026-11-26T03:00:00Z".into(),
            trigger: Trigger {
                result: "timeout".into(),
                detail: "no answer".into(),
            },
            netns: NetnsId::Pod,
            pieces,
        })];
        let text = explain(&verdict, Style::Plain);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1..],
            [
                "explain dc1-ldap in pod: timeout: tcp connect 198.19.10.1:389: no answer within 2s",
                "  diagnosis pod_path_blocked: dc1-ldap fails from pod but answers host",
                "  evidence taken 2026-11-26T03:00:00Z after timeout: no answer",
                "  resolv_conf in pod (how, 2026-11-26T03:00:01Z):",
                "    nameserver 198.18.0.10",
                "    search corp\\u{1b}",
                "  conntrack in host (how, 2026-11-26T03:00:01Z):",
                "    unavailable: needs CAP_NET_ADMIN",
            ]
        );
        verdict.checks[0].evidence.clear();
        assert!(explain(&verdict, Style::Plain).ends_with("  no evidence captured\n"));
    }

    #[test]
    fn table_shows_each_check_and_why_it_fails() {
        let text = table(&failing_verdict());
        assert!(
            !text.contains('\x1b'),
            "plain text has no escapes: {text:?}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "FAIL on node-1: 1 of 2 checks fail");
        assert_eq!(
            lines[1],
            "      PROBE     KIND  NETNS  RESULT   STATE  TIME    DETAIL"
        );
        assert_eq!(
            lines[2],
            "FAIL  dc1-ldap  tcp   pod    timeout  fail   2.000s  tcp connect 198.19.10.1:389: no answer within 2s (since 2026-11-26T03:00:00Z)"
        );
        assert_eq!(
            lines[3],
            "ok    dc1-ldap  tcp   host   success  pass   1.2ms   connected to 198.19.10.1:389"
        );
        assert_eq!(lines[4], "diagnosis x: y");
    }

    #[test]
    fn colored_table_marks_status_and_keeps_the_layout() {
        let verdict = failing_verdict();
        let text = styled_table(&verdict, Style::Color);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "\x1b[1;31mFAIL\x1b[0m \x1b[1mon node-1: 1 of 2 checks fail\x1b[0m"
        );
        assert!(
            lines[2].starts_with("\x1b[1;31mFAIL\x1b[0m  dc1-ldap  tcp   pod"),
            "{:?}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("\x1b[32mok\x1b[0m    dc1-ldap  tcp   host"),
            "{:?}",
            lines[3]
        );
        assert_eq!(lines[4], "\x1b[1mdiagnosis x\x1b[0m: y");
        assert_eq!(strip_sgr(&text), table(&verdict), "only colors differ");

        let mut ok = verdict;
        ok.status = Status::Ok;
        ok.checks.remove(0);
        ok.namespaces[0].available = false;
        ok.namespaces[0].reason = Some("cannot open /proc/1/ns/net".into());
        let text = styled_table(&ok, Style::Color);
        assert!(text.starts_with("\x1b[1;32mOK\x1b[0m"), "{text:?}");
        assert!(
            text.contains("netns host: \x1b[31munavailable\x1b[0m: cannot open"),
            "{text:?}"
        );
    }

    /// The text without SGR sequences (`ESC [ ... m`).
    fn strip_sgr(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("\x1b[") {
            out.push_str(&rest[..at]);
            let end = rest[at..].find('m').expect("SGR ends with m");
            rest = &rest[at + end + 1..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn control_characters_from_the_network_are_shown_escaped() {
        let mut verdict = failing_verdict();
        verdict.checks[0].detail = "evil \x1b[2J\x1b]0;title\x07 answer\nnext".into();
        verdict.node = "node\r-1".into();
        for style in [Style::Plain, Style::Color] {
            let text = styled_table(&verdict, style);
            assert!(
                text.contains(r"evil \u{1b}[2J\u{1b}]0;title\u{7} answer\nnext"),
                "{text:?}"
            );
            assert!(text.contains(r"on node\r-1:"), "{text:?}");
            assert_eq!(text.lines().count(), 6, "no injected lines: {text:?}");
        }
    }

    #[test]
    fn color_follows_the_flag_the_terminal_and_no_color() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        use ColorChoice::*;
        use Style::*;
        type Vars = &'static [(&'static str, &'static str)];
        let cases: &[(ColorChoice, bool, Vars, Style)] = &[
            (Auto, true, &[], Color),
            (Auto, false, &[], Plain),
            (Auto, true, &[("NO_COLOR", "1")], Plain),
            (Auto, true, &[("NO_COLOR", "")], Color),
            (Auto, true, &[("TERM", "dumb")], Plain),
            (Auto, true, &[("TERM", "xterm-256color")], Color),
            (Always, false, &[("NO_COLOR", "1")], Color),
            (Never, true, &[], Plain),
        ];
        for &(choice, terminal, vars, want) in cases {
            assert_eq!(
                choice.style(terminal, env(vars)),
                want,
                "{choice:?} terminal={terminal} {vars:?}"
            );
        }
    }
}
