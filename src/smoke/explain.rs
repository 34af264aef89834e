//! Why a red agent is red, as text for a CI log: its diagnoses, its failing checks with their
//! detail and the evidence the agent captured, bounded per agent.

use std::fmt::Write;

use super::{Evidence, Health, HealthCheck, Piece};

/// An agent's explanation is cut after this many lines: a gate's log should show every red
/// node, not one node's traceroutes.
pub const MAX_LINES: usize = 120;
/// Lines kept of one piece of evidence.
const MAX_PIECE_LINES: usize = 20;

/// Everything known about why `health` is red: its diagnoses, then each failing check with its
/// detail and, if `evidence`, the newest capture of evidence. Indented by two spaces, at most
/// [`MAX_LINES`] lines; empty for a green agent.
pub fn explain(health: &Health, evidence: bool) -> String {
    if health.is_ok() {
        return String::new();
    }
    let mut lines = Vec::new();
    if health.diagnoses.is_empty() {
        lines.push("no diagnosis".to_owned());
    }
    for diagnosis in &health.diagnoses {
        lines.push(format!(
            "diagnosis {}: {}",
            diagnosis.code, diagnosis.summary
        ));
        if !diagnosis.hint.is_empty() {
            lines.push(format!("  hint: {}", diagnosis.hint));
        }
    }
    for check in health.checks.iter().filter(|c| !c.ok) {
        failing_check(&mut lines, check, evidence);
    }
    bounded(&lines)
}

fn failing_check(lines: &mut Vec<String>, check: &HealthCheck, evidence: bool) {
    let mut line = format!("check {} {}", check.name(), check.result);
    if !check.detail.is_empty() {
        let _ = write!(line, ": {}", check.detail);
    }
    lines.push(line);
    if !evidence {
        return;
    }
    let Some(newest) = check.evidence.first() else {
        lines.push("  no evidence captured".to_owned());
        return;
    };
    capture(lines, newest);
    let older = check.evidence.len() - 1;
    if older > 0 {
        lines.push(format!(
            "  ({older} older capture{} in /healthz?format=json)",
            if older == 1 { "" } else { "s" }
        ));
    }
}

fn capture(lines: &mut Vec<String>, evidence: &Evidence) {
    lines.push(format!(
        "  evidence taken {} in the {} namespace, when a round failed with {}: {}",
        evidence.taken_at, evidence.netns, evidence.trigger.result, evidence.trigger.detail
    ));
    for piece in &evidence.pieces {
        self::piece(lines, piece);
    }
}

/// `what (netns, source, taken_at):`, then the text indented, or `unavailable: why`.
fn piece(lines: &mut Vec<String>, piece: &Piece) {
    lines.push(format!(
        "    {} ({}, {}, {}):",
        piece.what, piece.netns, piece.source, piece.taken_at
    ));
    match (&piece.text, &piece.unavailable) {
        (_, Some(why)) => lines.push(format!("      unavailable: {why}")),
        (Some(text), None) => {
            let all: Vec<&str> = text.lines().collect();
            for line in all.iter().take(MAX_PIECE_LINES) {
                lines.push(format!("      {line}"));
            }
            if all.len() > MAX_PIECE_LINES {
                lines.push(format!(
                    "      ({} more lines)",
                    all.len() - MAX_PIECE_LINES
                ));
            }
        }
        (None, None) => lines.push("      (empty)".to_owned()),
    }
}

/// The lines indented by two spaces, cut to [`MAX_LINES`] with a note of how many were left.
fn bounded(lines: &[String]) -> String {
    let mut out = String::new();
    for line in lines.iter().take(MAX_LINES) {
        let _ = writeln!(out, "  {line}");
    }
    if lines.len() > MAX_LINES {
        let _ = writeln!(
            out,
            "  ({} more lines cut; the node's /healthz?format=json has them all)",
            lines.len() - MAX_LINES
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(json: &str) -> Health {
        serde_json::from_str(json).unwrap()
    }

    const RED: &str = r#"{"status":"fail","node":"n2","checks":[
        {"probe":"a","netns":"pod","ok":true,"result":"success","detail":"connected"},
        {"probe":"b","netns":"host","ok":false,"result":"timeout","detail":"no answer within 2s",
         "evidence":[
          {"taken_at":"2026-12-03T08:00:05Z","netns":"host",
           "trigger":{"result":"timeout","detail":"no answer within 2s"},
           "pieces":[
             {"what":"route","netns":"host","source":"ip route get","taken_at":"2026-12-03T08:00:05Z",
              "text":"198.19.10.1 via 198.18.1.1 dev eth0\n    cache"},
             {"what":"conntrack entry","netns":"host","source":"netlink","taken_at":"2026-12-03T08:00:06Z",
              "unavailable":"needs CAP_NET_ADMIN"}]},
          {"taken_at":"2026-12-03T07:00:00Z","netns":"host","pieces":[]}]}],
       "diagnoses":[{"code":"onprem_unreachable","summary":"b fails from host","hint":"check the tunnel"}]}"#;

    #[test]
    fn a_red_agent_says_its_diagnoses_checks_and_newest_evidence() {
        let red = health(RED);
        assert_eq!(
            explain(&red, true),
            "  diagnosis onprem_unreachable: b fails from host\n\
             \x20   hint: check the tunnel\n\
             \x20 check b/host timeout: no answer within 2s\n\
             \x20   evidence taken 2026-12-03T08:00:05Z in the host namespace, when a round failed with timeout: no answer within 2s\n\
             \x20     route (host, ip route get, 2026-12-03T08:00:05Z):\n\
             \x20       198.19.10.1 via 198.18.1.1 dev eth0\n\
             \x20           cache\n\
             \x20     conntrack entry (host, netlink, 2026-12-03T08:00:06Z):\n\
             \x20       unavailable: needs CAP_NET_ADMIN\n\
             \x20   (1 older capture in /healthz?format=json)\n"
        );
        let without = explain(&red, false);
        assert!(
            without.ends_with("  check b/host timeout: no answer within 2s\n"),
            "{without}"
        );
        assert!(!without.contains("evidence"), "{without}");
    }

    #[test]
    fn agents_without_evidence_or_diagnoses_still_explain() {
        let old = health(
            r#"{"status":"fail","node":"n2","checks":[{"probe":"b","netns":"pod","ok":false,"result":"refused"}]}"#,
        );
        assert_eq!(
            explain(&old, true),
            "  no diagnosis\n  check b/pod refused\n    no evidence captured\n"
        );
        let green = health(r#"{"status":"ok","node":"n1","checks":[]}"#);
        assert_eq!(explain(&green, true), "");
    }

    #[test]
    fn evidence_of_another_shape_costs_the_evidence_not_the_verdict() {
        let odd = health(
            r#"{"status":"fail","node":"n2","checks":[{"probe":"b","netns":"pod","ok":false,"result":"refused","evidence":{"v":2}}]}"#,
        );
        assert!(odd.checks[0].evidence.is_empty());
        assert_eq!(odd.status, "fail");
    }

    #[test]
    fn evidence_text_cannot_forge_report_lines_and_output_is_bounded() {
        let forged = RED.replace(
            r"dev eth0\n    cache",
            r"dev eth0\nsmoke ok: 9 of 9 agents answered\u001b[2J\r",
        );
        let text = explain(&health(&forged), true);
        assert!(
            text.contains("\n        smoke ok: 9 of 9 agents answered?[2J?\n"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.starts_with("  ")), "{text}");

        let long_text = "line\\n".repeat(500);
        let pieces: Vec<String> = (0..20)
            .map(|i| format!(r#"{{"what":"p{i}","text":"{long_text}"}}"#))
            .collect();
        let big = format!(
            r#"{{"status":"fail","node":"n","checks":[{{"probe":"b","netns":"pod","ok":false,"result":"timeout","evidence":[{{"pieces":[{}]}}]}}]}}"#,
            pieces.join(",")
        );
        let text = explain(&health(&big), true);
        assert_eq!(text.lines().count(), MAX_LINES + 1, "{text}");
        assert!(text.contains("      (480 more lines)\n"), "{text}");
        assert!(text.ends_with("more lines cut; the node's /healthz?format=json has them all)\n"));
    }
}
