//! From raw queue messages to what one transaction applies.
//!
//! A batch is parsed and validated ([`VoteMessage::parse`]); what fails becomes
//! a [`DeadLetter`]. The valid votes are collapsed to one per voter, because
//! a voter's earlier votes in the same batch would be overwritten within the
//! same transaction anyway, and because one `INSERT .. ON CONFLICT DO UPDATE`
//! may touch each row only once.
//!
//! Which of two votes of one voter is the newer ([`is_newer`]): when both carry
//! an order key (`seq`), the larger one; otherwise the later one in the queue.
//! The database applies the winner under the same rule (see [`crate::store`]).

use std::collections::HashMap;

use common::message::{DeadLetter, VoteMessage};
use common::options::VoteOptions;

/// What one transaction applies, and what goes to the dead-letter list.
#[derive(Debug, Default)]
pub struct Batch {
    /// Number of raw messages taken from the queue (the processing list holds
    /// exactly these, in order, at its head).
    pub taken: usize,
    /// Valid messages among them.
    pub valid: usize,
    /// One vote per voter, the newest, sorted by voter id: every worker then
    /// locks rows in the same order, so two workers cannot deadlock.
    pub votes: Vec<VoteMessage>,
    /// The refused messages, with the reason.
    pub dead: Vec<DeadLetter>,
}

/// Whether `later` (which came after `earlier` in the queue) replaces it.
pub fn is_newer(earlier: &VoteMessage, later: &VoteMessage) -> bool {
    match (earlier.seq, later.seq) {
        (Some(a), Some(b)) => b > a,
        // Without two order keys the queue order decides.
        _ => true,
    }
}

/// Parses, validates and collapses raw messages, given in queue order.
pub fn prepare<B: AsRef<[u8]>>(raw: &[B], options: &VoteOptions) -> Batch {
    let mut latest: HashMap<String, VoteMessage> = HashMap::with_capacity(raw.len());
    let mut dead = Vec::new();
    let mut valid = 0;
    for m in raw {
        match VoteMessage::parse(m.as_ref(), options) {
            Ok(vote) => {
                valid += 1;
                match latest.get_mut(&vote.voter_id) {
                    Some(kept) => {
                        if is_newer(kept, &vote) {
                            *kept = vote;
                        }
                    }
                    None => {
                        latest.insert(vote.voter_id.clone(), vote);
                    }
                }
            }
            Err(reason) => dead.push(DeadLetter::new(m.as_ref(), &reason)),
        }
    }
    let mut votes: Vec<VoteMessage> = latest.into_values().collect();
    votes.sort_unstable_by(|a, b| a.voter_id.cmp(&b.voter_id));
    Batch {
        taken: raw.len(),
        valid,
        votes,
        dead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(voter: &str, vote: &str, seq: Option<i64>) -> Vec<u8> {
        VoteMessage {
            voter_id: voter.into(),
            vote: vote.into(),
            seq,
        }
        .to_json()
        .into_bytes()
    }

    fn pairs(b: &Batch) -> Vec<(&str, &str)> {
        b.votes
            .iter()
            .map(|v| (v.voter_id.as_str(), v.vote.as_str()))
            .collect()
    }

    #[test]
    fn collapses_to_the_largest_seq_whatever_the_queue_order() {
        let raw = [
            msg("y", "a", Some(5)),
            msg("x", "b", Some(9)),
            msg("x", "a", Some(3)),
            msg("y", "b", Some(6)),
        ];
        let b = prepare(&raw, &VoteOptions::default());
        assert_eq!(pairs(&b), [("x", "b"), ("y", "b")]);
        assert_eq!((b.taken, b.valid, b.dead.len()), (4, 4, 0));
        assert_eq!(b.votes[0].seq, Some(9));
    }

    #[test]
    fn without_seq_the_queue_order_decides() {
        let raw = [
            msg("x", "a", None),
            msg("x", "b", None),
            msg("y", "b", Some(7)),
            msg("y", "a", None),
        ];
        let b = prepare(&raw, &VoteOptions::default());
        assert_eq!(pairs(&b), [("x", "b"), ("y", "a")]);
    }

    #[test]
    fn bad_messages_become_dead_letters_and_the_rest_goes_on() {
        let raw: Vec<Vec<u8>> = vec![
            b"not json".to_vec(),
            br#"{"vote":"a"}"#.to_vec(),
            br#"{"voter_id":"x","vote":"z"}"#.to_vec(),
            msg("ok", "a", None),
        ];
        let b = prepare(&raw, &VoteOptions::default());
        assert_eq!(pairs(&b), [("ok", "a")]);
        assert_eq!(b.dead.len(), 3);
        assert_eq!(b.dead[0].raw, "not json");
        assert!(b.dead[2].reason.contains("not one of the configured"));
    }
}
