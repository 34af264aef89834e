//! Renders a verdict for people: the `check` command's table and the plain text of `/healthz`.

use std::fmt::Write;

use crate::verdict::{Status, Verdict};

/// A fixed-width table: one line per check, failures first in each probe's pair, then the
/// namespaces that could not be entered and the diagnoses.
pub fn table(verdict: &Verdict) -> String {
    let mut out = String::new();
    let headline = match verdict.status {
        Status::Ok => format!("all {} checks pass", verdict.checks.len()),
        Status::Fail => format!(
            "{} of {} checks fail",
            verdict.failing(),
            verdict.checks.len()
        ),
        Status::Starting => "first round not finished".to_owned(),
    };
    let _ = writeln!(
        out,
        "{} on {}: {headline}",
        verdict.status.as_str().to_uppercase(),
        verdict.node
    );
    let rows: Vec<[String; 6]> = verdict
        .checks
        .iter()
        .map(|c| {
            [
                if c.ok { "ok" } else { "FAIL" }.to_owned(),
                c.probe.clone(),
                c.kind.to_owned(),
                c.netns.to_string(),
                c.result.to_owned(),
                c.duration_seconds.map(format_seconds).unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["", "PROBE", "KIND", "NETNS", "RESULT", "TIME"].map(str::to_owned);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for (row, check) in
        std::iter::once((&header, None)).chain(rows.iter().zip(verdict.checks.iter().map(Some)))
    {
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(out, "{cell:<w$}  ");
        }
        match check {
            Some(c) => {
                let _ = write!(out, "{}", c.detail);
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
        let reason = ns.reason.as_deref().unwrap_or("unknown");
        let _ = writeln!(out, "netns {}: unavailable: {reason}", ns.netns);
    }
    for d in &verdict.diagnoses {
        let _ = writeln!(
            out,
            "diagnosis {}: {}\n  hint: {}",
            d.code, d.summary, d.hint
        );
    }
    out
}

/// `1.234s` above a second, `12.3ms` below.
fn format_seconds(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.3}s")
    } else {
        format!("{:.1}ms", seconds * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::NetnsId;
    use crate::verdict::{CheckView, Diagnosis, NetnsView};

    fn check(
        probe: &str,
        netns: NetnsId,
        ok: bool,
        result: &'static str,
        detail: &str,
    ) -> CheckView {
        CheckView {
            probe: probe.into(),
            kind: "tcp",
            netns,
            ok,
            result,
            duration_seconds: Some(if ok { 0.0012 } else { 2.0 }),
            detail: detail.into(),
            since: Some("2026-11-26T03:00:00Z".into()),
            last_success: None,
        }
    }

    #[test]
    fn table_shows_each_check_and_why_it_fails() {
        let verdict = Verdict {
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
        };
        let text = table(&verdict);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "FAIL on node-1: 1 of 2 checks fail");
        assert_eq!(
            lines[1],
            "      PROBE     KIND  NETNS  RESULT   TIME    DETAIL"
        );
        assert_eq!(
            lines[2],
            "FAIL  dc1-ldap  tcp   pod    timeout  2.000s  tcp connect 198.19.10.1:389: no answer within 2s (since 2026-11-26T03:00:00Z)"
        );
        assert_eq!(
            lines[3],
            "ok    dc1-ldap  tcp   host   success  1.2ms   connected to 198.19.10.1:389"
        );
        assert_eq!(lines[4], "diagnosis x: y");
    }
}
