//! The smoke run as JUnit XML, for CI systems that render test reports: one test suite per
//! run, one test case per agent, a failure for each agent that is red or unreachable.
//!
//! Written by hand: the document is a dozen elements with five escapes, and the one
//! well-kept crate for it (quick-junit) brings chrono, uuid, indexmap and quick-xml into an
//! agent image for that.

use std::fmt::{self, Write};

use super::explain::explain;
use super::{AgentReport, Answer, Summary};

/// The report for `summary`, named after `target` (the `--agents` value). With `evidence`, a
/// red agent's failure holds the evidence it captured too.
pub fn junit(summary: &Summary, target: &str, evidence: bool) -> String {
    let cases: Vec<Case> = summary
        .agents
        .iter()
        .map(|agent| agent_case(agent, evidence))
        .chain([expected_case(summary)])
        .collect();
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let name = format!("hybridprobe smoke {target}");
    let _ = writeln!(
        out,
        r#"<testsuites name="{}" tests="{}" failures="{failures}" errors="0">"#,
        Xml(&name),
        cases.len()
    );
    let _ = writeln!(
        out,
        r#"<testsuite name="{}" tests="{}" failures="{failures}" errors="0" skipped="0">"#,
        Xml(&name),
        cases.len()
    );
    for case in &cases {
        case.write(&mut out);
    }
    out.push_str("</testsuite>\n</testsuites>\n");
    out
}

/// One test case: an agent, or whether enough of them answered.
struct Case {
    name: String,
    failure: Option<Failure>,
}

struct Failure {
    kind: &'static str,
    message: String,
    body: String,
}

impl Case {
    fn write(&self, out: &mut String) {
        let _ = write!(
            out,
            r#"<testcase classname="hybridprobe.smoke" name="{}""#,
            Xml(&self.name)
        );
        let Some(failure) = &self.failure else {
            out.push_str("/>\n");
            return;
        };
        let _ = writeln!(
            out,
            r#"><failure type="{}" message="{}">{}</failure></testcase>"#,
            failure.kind,
            Xml(&failure.message),
            Xml(&failure.body)
        );
    }
}

fn agent_case(agent: &AgentReport, evidence: bool) -> Case {
    match &agent.answer {
        Answer::Unreachable(why) => Case {
            name: agent.addr.to_string(),
            failure: Some(Failure {
                kind: "unreachable",
                message: format!("no verdict: {why}"),
                body: String::new(),
            }),
        },
        Answer::Health(health) => Case {
            name: format!("{} ({})", health.node, agent.addr),
            failure: (!health.is_ok()).then(|| Failure {
                kind: "red",
                message: super::describe(health),
                body: explain(health, evidence),
            }),
        },
    }
}

/// Fewer agents than `--expect-nodes` fails the run even when all that answered are green;
/// a case of its own says so where the report is read.
fn expected_case(summary: &Summary) -> Case {
    let answered = summary.answered();
    Case {
        name: format!("at least {} agents answer", summary.expect_nodes),
        failure: (answered < summary.expect_nodes).then(|| Failure {
            kind: "too_few",
            message: format!(
                "{answered} of {} expected agents answered",
                summary.expect_nodes
            ),
            body: String::new(),
        }),
    }
}

/// Text made safe for XML 1.0 attribute values and element content: the five markup
/// characters escaped, and the characters XML 1.0 cannot hold at all (most control characters)
/// replaced, since an agent's answer may carry any of them.
struct Xml<'a>(&'a str);

impl fmt::Display for Xml<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&apos;")?,
                '\t' | '\n' | '\r' => f.write_char(c)?,
                c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => f.write_char('?')?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::smoke::Health;

    fn agent(last_octet: u8, answer: Answer) -> AgentReport {
        AgentReport {
            addr: SocketAddr::from(([198, 18, 2, last_octet], 9739)),
            answer,
        }
    }

    fn health(json: &str) -> Answer {
        Answer::Health(serde_json::from_str::<Health>(json).unwrap())
    }

    #[test]
    fn one_case_per_agent_and_a_failure_for_red_and_unreachable() {
        let summary = Summary {
            agents: vec![
                agent(10, health(r#"{"status":"ok","node":"n1","checks":[]}"#)),
                agent(
                    11,
                    health(
                        r#"{"status":"fail","node":"n2","checks":[{"probe":"b","netns":"pod","ok":false,"result":"refused","detail":"connection refused"}],"diagnoses":[{"code":"service_down","summary":"b refuses","hint":"start it"}]}"#,
                    ),
                ),
                agent(
                    12,
                    Answer::Unreachable("connect: Connection refused".into()),
                ),
            ],
            expect_nodes: 3,
        };
        assert_eq!(
            junit(&summary, "agents:9739", false),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="hybridprobe smoke agents:9739" tests="4" failures="3" errors="0">
<testsuite name="hybridprobe smoke agents:9739" tests="4" failures="3" errors="0" skipped="0">
<testcase classname="hybridprobe.smoke" name="n1 (198.18.2.10:9739)"/>
<testcase classname="hybridprobe.smoke" name="n2 (198.18.2.11:9739)"><failure type="red" message="1 of 1 checks fail: b/pod refused; diagnoses: service_down">  diagnosis service_down: b refuses
    hint: start it
  check b/pod refused: connection refused
</failure></testcase>
<testcase classname="hybridprobe.smoke" name="198.18.2.12:9739"><failure type="unreachable" message="no verdict: connect: Connection refused"></failure></testcase>
<testcase classname="hybridprobe.smoke" name="at least 3 agents answer"><failure type="too_few" message="2 of 3 expected agents answered"></failure></testcase>
</testsuite>
</testsuites>
"#
        );
    }

    #[test]
    fn markup_and_characters_xml_cannot_hold_are_escaped() {
        let hostile = "a<b>&\"c\"'d'\u{1b}[2J\u{0}\u{fffe}\nz";
        assert_eq!(
            Xml(hostile).to_string(),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;?[2J??\nz"
        );
        let summary = Summary {
            agents: vec![agent(10, Answer::Unreachable(hostile.into()))],
            expect_nodes: 0,
        };
        let xml = junit(&summary, "x:1", true);
        assert!(!xml.contains("<b>"), "{xml}");
        assert!(!xml.contains('\u{1b}'), "{xml}");
        assert!(
            xml.contains(r#"name="at least 0 agents answer"/>"#),
            "{xml}"
        );
    }
}
