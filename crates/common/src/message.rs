//! The queue message, and why a message may be refused.
//!
//! On the wire it is the original stack's JSON, `{"voter_id": "<hex>", "vote": "a"}`,
//! so the original .NET worker can read ours and ours can read the original
//! Python vote app's. Ours adds `seq`, an order key taken from a Redis counter in
//! the same round trip as the `RPUSH`: one sequence for every vote replica, so
//! the worker can tell the newer of two votes of one voter even when messages
//! are replayed or handled by several workers at once. Messages without `seq`
//! (the original's) are applied in queue order.

use serde::{Deserialize, Serialize};

use crate::options::VoteOptions;

/// The longest voter id accepted: the `votes.id` column is `varchar(255)`.
pub const MAX_VOTER_ID_LEN: usize = 255;

/// One vote as it travels through the Redis list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteMessage {
    pub voter_id: String,
    pub vote: String,
    /// Order key: larger is newer. Absent in the original stack's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

/// Why a message cannot be applied; it goes to the dead-letter list with this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("not a vote message: {0}")]
    BadShape(String),
    #[error("empty voter_id")]
    EmptyVoterId,
    #[error("voter_id longer than {MAX_VOTER_ID_LEN} bytes ({0})")]
    VoterIdTooLong(usize),
    #[error("vote {0:?} is not one of the configured options")]
    UnknownOption(String),
}

impl VoteMessage {
    /// Parses and validates one raw message against the configured options.
    pub fn parse(raw: &[u8], options: &VoteOptions) -> Result<Self, Rejection> {
        let value: serde_json::Value =
            serde_json::from_slice(raw).map_err(|e| Rejection::NotJson(e.to_string()))?;
        let msg: VoteMessage =
            serde_json::from_value(value).map_err(|e| Rejection::BadShape(e.to_string()))?;
        if msg.voter_id.is_empty() {
            return Err(Rejection::EmptyVoterId);
        }
        if msg.voter_id.len() > MAX_VOTER_ID_LEN {
            return Err(Rejection::VoterIdTooLong(msg.voter_id.len()));
        }
        if !options.contains(&msg.vote) {
            return Err(Rejection::UnknownOption(msg.vote));
        }
        Ok(msg)
    }

    /// The JSON text pushed to the list.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of strings always serialises")
    }
}

/// What the dead-letter list holds: the reason and the original text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: String,
    /// The message as it was, lossily decoded if it was not UTF-8.
    pub raw: String,
    /// Unix time in milliseconds when it was set aside.
    pub at_ms: i64,
}

impl DeadLetter {
    pub fn new(raw: &[u8], reason: &Rejection) -> Self {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self {
            reason: reason.to_string(),
            raw: String::from_utf8_lossy(raw).into_owned(),
            at_ms,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of strings always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> VoteOptions {
        VoteOptions::default()
    }

    #[test]
    fn reads_the_original_format() {
        let m = VoteMessage::parse(br#"{"voter_id": "ab12", "vote": "a"}"#, &opts()).unwrap();
        assert_eq!(
            m,
            VoteMessage {
                voter_id: "ab12".into(),
                vote: "a".into(),
                seq: None
            }
        );
    }

    #[test]
    fn writes_what_the_original_worker_reads() {
        let m = VoteMessage {
            voter_id: "ab".into(),
            vote: "b".into(),
            seq: Some(7),
        };
        let v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(v["voter_id"], "ab");
        assert_eq!(v["vote"], "b");
        assert_eq!(v["seq"], 7);
        let plain = VoteMessage { seq: None, ..m };
        assert_eq!(plain.to_json(), r#"{"voter_id":"ab","vote":"b"}"#);
    }

    #[test]
    fn extra_fields_are_ignored() {
        let m =
            VoteMessage::parse(br#"{"voter_id":"x","vote":"b","seq":3,"ts":1}"#, &opts()).unwrap();
        assert_eq!(m.seq, Some(3));
    }

    #[test]
    fn rejects_with_a_reason() {
        let o = opts();
        assert!(matches!(
            VoteMessage::parse(b"nope", &o),
            Err(Rejection::NotJson(_))
        ));
        assert!(matches!(
            VoteMessage::parse(br#"{"vote":"a"}"#, &o),
            Err(Rejection::BadShape(_))
        ));
        assert!(matches!(
            VoteMessage::parse(br#"{"voter_id":1,"vote":"a"}"#, &o),
            Err(Rejection::BadShape(_))
        ));
        assert!(matches!(
            VoteMessage::parse(br#"[1,2]"#, &o),
            Err(Rejection::BadShape(_))
        ));
        assert_eq!(
            VoteMessage::parse(br#"{"voter_id":"","vote":"a"}"#, &o),
            Err(Rejection::EmptyVoterId)
        );
        assert_eq!(
            VoteMessage::parse(br#"{"voter_id":"x","vote":"z"}"#, &o),
            Err(Rejection::UnknownOption("z".into()))
        );
        let long = format!(r#"{{"voter_id":"{}","vote":"a"}}"#, "x".repeat(256));
        assert_eq!(
            VoteMessage::parse(long.as_bytes(), &o),
            Err(Rejection::VoterIdTooLong(256))
        );
    }

    #[test]
    fn dead_letters_keep_the_original_text() {
        let d = DeadLetter::new(b"\xffbad", &Rejection::EmptyVoterId);
        assert_eq!(d.reason, "empty voter_id");
        assert!(d.raw.ends_with("bad"));
    }
}
