//! Judging a round's answers against the expectations, and rendering them in one line.

use std::collections::BTreeSet;
use std::fmt::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_net::proto::op::{Message, ResponseCode};

use super::udp::answer_to;
use super::{
    Answer, Asked, DnsPair, DnsReport, DnsSpec, DnsTransport, Followed, Rcode, Reply, Server,
};
use crate::probe::{conclude, Failure, Measurements, Outcome, Reason};

/// Only this many answers of one query appear in the detail; the rest are counted.
const SHOWN_ANSWERS: usize = 4;
/// Long TXT records are cut in the detail.
const SHOWN_CHARS: usize = 64;

impl DnsSpec {
    /// What a round makes of `response` when it is the one answer, from `at`: the path a
    /// server's bytes take through the probe once hickory has decoded them (for the fuzz target).
    pub(crate) fn judge_response(
        &self,
        response: &Message,
        at: SocketAddr,
        transport: DnsTransport,
    ) -> Result<Outcome, Failure> {
        self.judge_one(Reply::of(response, self.authoritative), at, transport)
    }

    /// What a round makes of `datagram` as the UDP answer from `at` to this spec's question, its
    /// ID taken for the question's so that the match goes on to the decoding: the path a UDP
    /// server's bytes take through the probe (for the fuzz target). `None` when the datagram
    /// answers another question, and the probe would wait on.
    pub(crate) fn judge_datagram(
        &self,
        datagram: &[u8],
        at: SocketAddr,
    ) -> Option<Result<Outcome, Failure>> {
        let mut name = self.query.name.clone();
        name.set_fqdn(true);
        let (mut query, _) = self.request(name).into_parts();
        query.metadata.id = u16::from_be_bytes(*datagram.first_chunk::<2>()?);
        let reply = match answer_to(&query, datagram)? {
            Ok(answer) => Reply::of(&answer, self.authoritative),
            Err(e) => Reply::failed(&e),
        };
        Some(self.judge_one(reply, at, DnsTransport::Udp))
    }

    fn judge_one(
        &self,
        reply: Reply,
        at: SocketAddr,
        transport: DnsTransport,
    ) -> Result<Outcome, Failure> {
        self.judge(&[Asked {
            server: Server::Addr(at),
            at: Some(at),
            transport,
            took: Some(Duration::ZERO),
            reply,
        }])
    }

    /// Judges every reply and sums the round up: it passes only if every pair did, and the
    /// failure reason is that of the first failing pair in config order.
    pub(super) fn judge(&self, asked: &[Asked]) -> Result<Outcome, Failure> {
        let verdicts: Vec<Verdict> = asked.iter().map(|a| self.verdict(&a.reply)).collect();
        let mut pairs: Vec<DnsPair> = Vec::new();
        // Per pair, the UDP legs' and the followed TCP legs' first failures, apart.
        let mut legs: Vec<(Option<Reason>, Option<Reason>, bool)> = Vec::new();
        for (a, verdict) in asked.iter().zip(&verdicts) {
            let server = a.server.to_string();
            let failure = failure_reason(verdict);
            // A followed answer's UDP leg answered; its TCP leg is the verdict.
            let (udp, tcp, followed) = match a.reply {
                Reply::OverTcp(_) => (None, failure, true),
                _ => (failure, None, false),
            };
            let i = match pairs
                .iter()
                .position(|p| p.server == server && p.transport == a.transport)
            {
                Some(i) => i,
                None => {
                    pairs.push(DnsPair {
                        server,
                        transport: a.transport,
                        failure: None,
                        durations: Vec::new(),
                        followed: None,
                        mismatch: None,
                    });
                    legs.push((None, None, false));
                    pairs.len() - 1
                }
            };
            pairs[i].failure = pairs[i].failure.or(failure);
            if let Err((Reason::Mismatch, text)) = verdict {
                pairs[i].mismatch.get_or_insert_with(|| text.clone());
            }
            pairs[i].durations.extend(a.took);
            let leg = &mut legs[i];
            *leg = (leg.0.or(udp), leg.1.or(tcp), leg.2 || followed);
        }
        for (pair, (udp, tcp, followed)) in pairs.iter_mut().zip(legs) {
            pair.followed = followed.then_some(Followed { udp, tcp });
        }
        let detail = self.render(asked, &verdicts);
        let measurements = Measurements::Dns(DnsReport { pairs });
        let failure = verdicts
            .iter()
            .find_map(|v| v.as_ref().err())
            .map(|(r, _)| *r);
        conclude(failure, detail, measurements)
    }

    /// What one reply means against the expectations, with the text people see for it.
    pub(super) fn verdict(&self, reply: &Reply) -> Verdict {
        let expect = &self.expect;
        let nx_wanted = expect.rcode == Rcode::NXDOMAIN;
        match reply {
            Reply::Failed(reason, why) => Err((*reason, why.clone())),
            Reply::Rcode(code) => {
                let reason = match code {
                    ResponseCode::ServFail => Reason::Servfail,
                    ResponseCode::Refused => Reason::DnsRefused,
                    _ => Reason::Error,
                };
                Err((reason, rcode_name(*code)))
            }
            Reply::Truncated => Err((Reason::Error, "truncated (the answer does not fit)".into())),
            Reply::OverTcp(over_tcp) => {
                let followed = |text| format!("truncated, followed over tcp: {text}");
                match self.verdict(over_tcp) {
                    Ok(text) => Ok(followed(text)),
                    Err((reason, text)) => Err((reason, followed(text))),
                }
            }
            Reply::NotAuthoritative(reply) => {
                let text = match self.verdict(reply) {
                    Ok(text) | Err((_, text)) => text,
                };
                Err((Reason::Mismatch, format!("{text} (not authoritative)")))
            }
            Reply::NxDomain if nx_wanted => Ok("NXDOMAIN".into()),
            Reply::NxDomain => Err((Reason::Nxdomain, "NXDOMAIN".into())),
            Reply::NoData if nx_wanted => {
                Err((Reason::Mismatch, "NODATA (expected NXDOMAIN)".into()))
            }
            Reply::NoData if expect.min_answers == 0 => Ok("NODATA".into()),
            Reply::NoData => Err((Reason::Nodata, "NODATA".into())),
            Reply::Answers(answers) => self.check_answers(answers),
        }
    }

    fn check_answers(&self, answers: &[Answer]) -> Verdict {
        let expect = &self.expect;
        let shown = show(answers, self.search);
        let mismatch = |why: String| Err((Reason::Mismatch, format!("{shown} ({why})")));
        if expect.rcode == Rcode::NXDOMAIN {
            return mismatch("expected NXDOMAIN".into());
        }
        let wanted = self.record_type.record_type();
        let matching: Vec<&Answer> = answers.iter().filter(|a| a.record_type == wanted).collect();
        if matching.is_empty() && expect.min_answers > 0 {
            // A CNAME that leads nowhere: the name exists, but not with this type.
            return Err((
                Reason::Nodata,
                format!("{shown} (no {} record)", self.record_type),
            ));
        }
        if matching.len() < expect.min_answers {
            return mismatch(format!(
                "{} {} records, expected at least {}",
                matching.len(),
                self.record_type,
                expect.min_answers
            ));
        }
        let ips: Vec<IpAddr> = matching.iter().filter_map(|a| a.ip).collect();
        if !expect.within.is_empty() {
            if let Some(outside) = ips
                .iter()
                .find(|ip| !expect.within.iter().any(|net| net.contains(*ip)))
            {
                return mismatch(format!("{outside} not within {}", list(&expect.within)));
            }
        }
        if !expect.equals.is_empty()
            && ips.iter().copied().collect::<BTreeSet<_>>() != expect.equals
        {
            return mismatch(format!("expected {}", list(&expect.equals)));
        }
        Ok(shown)
    }

    /// One line: `A db.corp.example: system 198.18.1.4 udp: A 198.19.10.5; tcp: timeout |
    /// 198.19.10.1 udp: A 198.19.10.5; tcp: A 198.19.10.5`.
    fn render(&self, asked: &[Asked], verdicts: &[Verdict]) -> String {
        let mut out = format!("{} {}:", self.record_type, self.query.text);
        let mut group = None;
        for (a, verdict) in asked.iter().zip(verdicts) {
            let text = match verdict {
                Ok(text) | Err((_, text)) => text,
            };
            // A server's pairs share a group whatever port each transport asks it on.
            let key = (a.server, a.at.map(|at| at.ip()));
            if group == Some(key) {
                let _ = write!(out, "; {}: {text}", a.transport.as_str());
                continue;
            }
            if group.is_some() {
                out.push_str(" |");
            }
            group = Some(key);
            let _ = match (a.server, a.at) {
                (Server::System, Some(at)) => write!(out, " system {}", at.ip()),
                (server, _) => write!(out, " {server}"),
            };
            let _ = write!(out, " {}: {text}", a.transport.as_str());
        }
        out
    }
}

/// `Ok(text)` for a reply that meets the expectations, else the reason and the text.
type Verdict = Result<String, (Reason, String)>;

fn failure_reason(verdict: &Verdict) -> Option<Reason> {
    verdict.as_ref().err().map(|(reason, _)| *reason)
}

/// `A 198.19.10.5 A 198.19.10.6`, at most [`SHOWN_ANSWERS`] records, then `(+3 more)`. With a
/// search list each record carries its name, which says which candidate answered.
pub(super) fn show(answers: &[Answer], with_owner: bool) -> String {
    if answers.is_empty() {
        return "NODATA".into();
    }
    let mut out = String::new();
    for a in answers.iter().take(SHOWN_ANSWERS) {
        if !out.is_empty() {
            out.push(' ');
        }
        if with_owner {
            let _ = write!(out, "{} ", a.owner);
        }
        let _ = write!(out, "{} {}", a.record_type, a.text);
    }
    if answers.len() > SHOWN_ANSWERS {
        let _ = write!(out, " (+{} more)", answers.len() - SHOWN_ANSWERS);
    }
    out
}

/// Response codes as dig prints them.
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        other => format!("RCODE {}", u16::from(other)),
    }
}

fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    items.join(", ")
}

/// Record data for a one-line report: control characters replaced, long text cut. Display of
/// some record types fails by design (OPT), which must not panic on a hostile answer.
pub(super) fn printable(data: &impl fmt::Display) -> String {
    let mut text = String::new();
    if write!(text, "{data}").is_err() {
        return "<unprintable>".into();
    }
    let mut out: String = text
        .chars()
        .take(SHOWN_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > SHOWN_CHARS {
        out.push('…');
    }
    out
}
