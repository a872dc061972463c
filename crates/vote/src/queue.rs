//! Appending votes to the Redis list.
//!
//! One vote is one round trip: a Lua script (sent as `EVALSHA`, loaded on the
//! first `NOSCRIPT`) that takes the next order key from the `votes:seq` counter
//! and `RPUSH`es the message. Doing both in one script makes them atomic, so
//! the order of `seq` is the order of the list, across any number of vote
//! replicas; a wall-clock timestamp would not be.
//!
//! The message is the original app's JSON with `seq` added:
//! `{"voter_id":"<hex>","vote":"a","seq":N}`. The script only appends the
//! number and the closing brace to a prefix built here, because both values
//! in it are already safe JSON strings: the voter id is hex ([`VoterId`]) and
//! the vote a configured option key (`a`..`h`).

use redis::aio::ConnectionManager;
use redis::Script;

use common::queue::Keys;

use crate::voter::VoterId;

/// KEYS[1] = the seq counter, KEYS[2] = the queue, ARGV[1] = the message up to
/// the seq value. Returns the seq.
const PUSH_SCRIPT: &str = r#"
local seq = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], ARGV[1] .. seq .. '}')
return seq
"#;

/// The queue as vote sees it. Cheap to clone: the connection manager is a
/// handle to one shared, multiplexed, self-healing connection.
#[derive(Clone)]
pub struct VoteQueue {
    conn: ConnectionManager,
    script: Script,
    queue: String,
    seq: String,
}

impl VoteQueue {
    pub fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self {
            conn,
            script: Script::new(PUSH_SCRIPT),
            seq: keys.seq(),
            queue: keys.queue,
        }
    }

    /// Queues one vote; returns its order key.
    pub async fn push(&self, voter: &VoterId, vote: &'static str) -> redis::RedisResult<i64> {
        let mut conn = self.conn.clone();
        self.script
            .key(&self.seq)
            .key(&self.queue)
            .arg(message_prefix(voter, vote))
            .invoke_async(&mut conn)
            .await
    }

    /// `PING`, for `/readyz`.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }
}

/// `{"voter_id":"<id>","vote":"<key>","seq":` — the script appends `N}`.
fn message_prefix(voter: &VoterId, vote: &'static str) -> String {
    debug_assert!(common::options::KEYS.contains(&vote));
    let id = voter.as_str();
    let mut s = String::with_capacity(40 + id.len());
    s.push_str(r#"{"voter_id":""#);
    s.push_str(id);
    s.push_str(r#"","vote":""#);
    s.push_str(vote);
    s.push_str(r#"","seq":"#);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::message::VoteMessage;
    use common::options::VoteOptions;

    #[test]
    fn the_message_is_what_the_worker_parses() {
        let id = VoterId::parse("00ff00ff00ff00ff").unwrap();
        let text = format!("{}{}}}", message_prefix(&id, "b"), 42);
        assert_eq!(
            text,
            r#"{"voter_id":"00ff00ff00ff00ff","vote":"b","seq":42}"#
        );
        let msg = VoteMessage::parse(text.as_bytes(), &VoteOptions::default()).unwrap();
        assert_eq!(
            msg,
            VoteMessage {
                voter_id: "00ff00ff00ff00ff".into(),
                vote: "b".into(),
                seq: Some(42),
            }
        );
    }
}
