//! The rounds piece: the check's recent rounds from its results, newest first, as a log reads.

use std::fmt::Write;

use super::{rfc3339, Piece, What};
use crate::netns::NetnsId;
use crate::results::CheckState;

/// Rounds a piece lists: enough to see a flap or a slow decline, few enough to read.
const ROUNDS: usize = 10;

pub(super) fn piece(state: &CheckState, netns: NetnsId) -> Piece {
    let source = format!("the check's last {ROUNDS} rounds, from its results");
    let mut text = String::new();
    for sample in state.history.iter().rev().take(ROUNDS) {
        let _ = writeln!(
            text,
            "{} {} {:.3}s",
            rfc3339(sample.at),
            sample.result,
            sample.duration.as_secs_f64()
        );
    }
    match &state.last {
        Some(last) => {
            let _ = write!(text, "last: {}", last.detail);
        }
        None => return Piece::unavailable(What::Rounds, netns, source, "no round has finished"),
    }
    Piece::text(What::Rounds, netns, source, text)
}
